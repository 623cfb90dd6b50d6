"""Retrieval quality of the demo KB on held-out colloquial queries (zh and en separately).

Variants (each a KnowledgeConfig): dense only, lexical only, the previous hybrid (best phrasing
per entry, no adapter), + entry score mixing (best + mean of top-3 phrasings), + the embedding
adapter (bot/knowledge/adapter.py), the default without the pinyin signal, the default (all of it).
Every variant but the default pins pinyin_weight 0 (the pinyin signal came last). Every variant is measured on
  * leave-phrasings-out on the KB itself (5 folds: the fold's phrasings are removed from the KB,
    the adapter is trained without them, and they are the queries) - what settings are chosen on;
  * benchmarks/data/kb_heldout_queries.yml and kb_heldout_queries_2.yml (written before tuning),
    each alone and both as one set (heldout_all).
``--compare-kb DIR`` adds the same figures for another KB folder (e.g. the KB before new phrasings).
``--afqmc`` adds FAQ retrieval on ../shared/benchmarks/faq_pairs_afqmc (eval only, not shipped).
Writes benchmarks/results/kb_quality.json.
``--pinyin-sweep`` adds leave-phrasings-out figures for pinyin weights / n-gram ranges (how they were chosen).
Usage: python benchmarks/kb_quality.py [--variants default,hybrid_max] [--loo] [--afqmc 2000] [--pinyin-sweep]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HELDOUT = {
    "heldout_1": ROOT / "benchmarks/data/kb_heldout_queries.yml",
    "heldout_2": ROOT / "benchmarks/data/kb_heldout_queries_2.yml",
}
VARIANTS = {
    "previous_default": dict(dense_weight=0.8, lexical_weight=0.2, lexical_ngram_min=1, entry_max_weight=1.0,
                             adapter=False, pinyin_weight=0.0),  # the defaults before the adapter / entry-score change
    "dense_only": dict(dense_weight=1.0, lexical_weight=0.0, entry_max_weight=1.0, adapter=False, pinyin_weight=0.0),
    "lexical_only": dict(dense_weight=0.0, lexical_weight=1.0, entry_max_weight=1.0, adapter=False, pinyin_weight=0.0),
    "hybrid_max": dict(entry_max_weight=1.0, adapter=False, pinyin_weight=0.0),
    "hybrid_maxmean": dict(adapter=False, pinyin_weight=0.0),
    "dense_adapter": dict(dense_weight=1.0, lexical_weight=0.0, entry_max_weight=1.0, pinyin_weight=0.0),
    "hybrid_max_adapter": dict(entry_max_weight=1.0, pinyin_weight=0.0),
    "default_no_pinyin": dict(pinyin_weight=0.0),  # the defaults before the pinyin signal
    "default": {},  # adapter + best/top-3 entry score + 0.7 dense / 0.3 lexical (char 2-3-grams + pinyin 3-5-grams)
}
AFQMC_NOTE = (
    "AFQMC FAQ view: 16,764 one-phrasing entries incl. 5,000 distractors, Alipay domain. Positive pairs are not "
    "transitively closed, so the same meaning often sits under several faq_ids and the top hit is frequently a true "
    "paraphrase with another id (brute-force check on 300 queries: recall@10 0.257, median gold rank 30). A lower "
    "bound on paraphrase retrieval, not comparable with the demo-KB figures; no adapter (one phrasing per entry)."
)
KEYS = ("recall@1", "recall@3", "mrr", "answer_rate", "clarify_rate", "no_answer_rate", "answer_correct_rate",
        "answer_wrong_rate")


def summary(report: dict) -> dict:
    return {"overall": {k: report[k] for k in KEYS},
            "by_language": {lang: {k: m[k] for k in ("queries", *KEYS)} for lang, m in report["by_language"].items()}}


def leave_phrasings_out(entries, cfg, encoder, cache, folds: int = 5) -> dict:
    """Remove a fold of phrasings from the KB (and from the adapter's training), query with them."""
    from bot.knowledge.base import KnowledgeBase
    from bot.knowledge.evaluate import evaluate

    rows = []
    for kept, queries in _lpo_folds(entries, folds):
        kb = KnowledgeBase.build(kept, cfg, encoder, vector_cache=cache)
        rows.append(evaluate(kb, queries))
    out = {}
    for lang in ("zh", "en"):
        per = [r["by_language"][lang] for r in rows if lang in r["by_language"]]
        n = sum(m["queries"] for m in per)
        out[lang] = {"queries": n, **{k: round(sum(m[k] * m["queries"] for m in per) / n, 4)
                                      for k in ("recall@1", "recall@3", "mrr")}}
    return out


def _lpo_folds(entries, folds: int = 5):
    """(kept entries, held-out phrasing queries) per fold, the same split as ``leave_phrasings_out``."""
    rng = random.Random(0)
    assignment = {(e.id, lang, q): rng.randrange(folds) for e in entries for lang, q in e.phrasings()}
    for f in range(folds):
        kept, queries = [], []
        for e in entries:
            qs = {}
            for lang, texts in e.questions.items():
                keep = tuple(q for q in texts if assignment[(e.id, lang, q)] != f)
                out = [q for q in texts if assignment[(e.id, lang, q)] == f]
                if not keep and out:  # an entry keeps at least one phrasing per language
                    keep, out = (out[0],), out[1:]
                qs[lang] = keep
                queries += [{"topic": e.id, "text": q, "language": lang} for q in out]
            kept.append(replace(e, questions=qs))
        yield kept, queries


def homophone_typos(queries, entries, seed: int = 0) -> list[dict]:
    """Each Chinese query with one character swapped for a homophone (same toneless pinyin).

    The noise model of a pinyin IME slip, built from the KB alone: substitutes are characters
    that occur in the KB's own phrasings (common characters), so no held-out text is involved.
    """
    from pypinyin import Style, lazy_pinyin

    chars = sorted({c for e in entries for lang, q in e.phrasings() for c in q if "\u4e00" <= c <= "\u9fff"})
    by_sound: dict[str, list[str]] = {}
    for c in chars:
        by_sound.setdefault(lazy_pinyin(c, style=Style.NORMAL)[0], []).append(c)
    rng = random.Random(seed)
    out = []
    for q in queries:
        if q["language"] != "zh":
            continue
        text = q["text"]
        spots = [i for i, c in enumerate(text) if len(by_sound.get(lazy_pinyin(c, style=Style.NORMAL)[0] if
                                                                      "\u4e00" <= c <= "\u9fff" else "", [])) > 1]
        if not spots:
            continue
        i = rng.choice(spots)
        alts = [c for c in by_sound[lazy_pinyin(text[i], style=Style.NORMAL)[0]] if c != text[i]]
        out.append({**q, "text": text[:i] + rng.choice(alts) + text[i + 1:]})
    return out


def pinyin_sweep(entries, encoder, cache, settings: list[tuple[float, int, int]]) -> dict:
    """Leave-phrasings-out recall for pinyin settings (weight, n-gram min, max) on clean and typo'd queries.

    Per fold the KB (index, adapter) is built once; each setting only swaps the lexical signal, since
    it changes nothing else. Calibration is fixed: it does not change rankings.
    """
    from bot.knowledge.base import KnowledgeBase
    from bot.knowledge.config import KnowledgeConfig
    from bot.knowledge.evaluate import evaluate
    from bot.knowledge.lexical import LexicalSignal

    base_cfg = KnowledgeConfig(calibration=(4.6, 6.6, -3.4))
    acc: dict = {}
    confusions: dict = {}
    for kept, queries in _lpo_folds(entries):
        kb0 = KnowledgeBase.build(kept, base_cfg, encoder, vector_cache=cache)
        typos = homophone_typos(queries, entries)
        for w, lo, hi in settings:
            cfg = base_cfg.with_updates(pinyin_weight=w, pinyin_ngram_min=lo, pinyin_ngram_max=hi)
            kb = KnowledgeBase(kb0.entries, cfg, encoder, kb0.index, LexicalSignal.from_config(cfg).fit(kb0.phrase_text),
                               kb0.phrase_entry, kb0.phrase_text, kb0.phrase_lang, kb0.calibration, kb0.metadata,
                               kb0.adapter)
            key = f"w{w}_n{lo}-{hi}"
            for split, qs in (("clean", queries), ("zh_homophone_typos", typos)):
                report = evaluate(kb, qs)
                for lang, m in report["by_language"].items():
                    slot = acc.setdefault(key, {}).setdefault(f"{split}_{lang}", {"queries": 0, "r1": 0.0, "r3": 0.0})
                    slot["queries"] += m["queries"]
                    slot["r1"] += m["recall@1"] * m["queries"]
                    slot["r3"] += m["recall@3"] * m["queries"]
                if split == "clean" and w == settings[0][0]:
                    for miss in report["misses"]:
                        pair = f"{miss['topic']} -> {miss['predicted'][0] if miss['predicted'] else '-'}"
                        confusions[pair] = confusions.get(pair, 0) + 1
    out = {key: {name: {"queries": v["queries"], "recall@1": round(v["r1"] / v["queries"], 4),
                        "recall@3": round(v["r3"] / v["queries"], 4)} for name, v in splits.items()}
           for key, splits in acc.items()}
    for key, splits in out.items():
        print(key, " ".join(f"{n} {m['recall@1']:.3f}/{m['recall@3']:.3f}" for n, m in sorted(splits.items())),
              flush=True)
    top = dict(sorted(confusions.items(), key=lambda kv: -kv[1])[:15])
    print("confusions (first setting, clean):", top, flush=True)
    return {"settings": out, "confusions_first_setting": top}


def afqmc(encoder, n_queries: int, dense_weight: float) -> dict:
    """FAQ retrieval on the AFQMC view: 16.8k one-phrasing entries (incl. 5k distractors)."""
    from bot.knowledge.base import KnowledgeBase
    from bot.knowledge.config import KnowledgeConfig
    from bot.knowledge.entries import Answer, Entry
    from bot.knowledge.evaluate import evaluate

    folder = ROOT.parent / "shared/benchmarks/faq_pairs_afqmc"
    kb_rows = [json.loads(line) for line in (folder / "faq_kb.jsonl").read_text(encoding="utf-8").splitlines()]
    q_rows = [json.loads(line) for line in (folder / "faq_queries.jsonl").read_text(encoding="utf-8").splitlines()]
    q_rows = random.Random(0).sample(q_rows, min(n_queries, len(q_rows)))
    entries = [Entry(r["faq_id"], "afqmc", {"zh": (r["question"],)}, {"zh": Answer("-")}) for r in kb_rows]
    queries = [{"topic": r["faq_id"], "text": r["query"], "language": "zh"} for r in q_rows]
    out = {"kb_entries": len(entries), "queries": len(queries), "note": AFQMC_NOTE}
    cache: dict = {}
    for name, dw in (("dense_only", 1.0), ("hybrid", dense_weight)):
        cfg = KnowledgeConfig(dense_weight=dw, lexical_weight=round(1 - dw, 3), calibration=(4.6, 6.6, -3.4))
        t = time.perf_counter()
        kb = KnowledgeBase.build(entries, cfg, encoder, vector_cache=cache)
        cache = kb.vector_cache
        build_s = time.perf_counter() - t
        report = evaluate(kb, queries)
        out[name] = {k: report[k] for k in ("recall@1", "recall@3", "mrr")} | {"build_seconds": round(build_s, 1)}
        print(f"afqmc {name:10s} r@1 {report['recall@1']:.3f} r@3 {report['recall@3']:.3f} mrr {report['mrr']:.3f}",
              flush=True)
    return out


def main() -> int:
    from bot.embeddings import get_encoder
    from bot.knowledge.base import KnowledgeBase
    from bot.knowledge.config import KnowledgeConfig
    from bot.knowledge.evaluate import evaluate, load_queries
    from bot.knowledge.loader import load_entries

    ap = argparse.ArgumentParser()
    ap.add_argument("--kb", default=str(ROOT / "knowledge_base"))
    ap.add_argument("--compare-kb", default=None, help="another KB folder measured the same way (e.g. before)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--pinyin-sweep", action="store_true",
                    help="leave-phrasings-out sweep of pinyin_weight / n-gram range (clean + homophone-typo queries)")
    ap.add_argument("--loo", default="previous_default,hybrid_maxmean,default_no_pinyin,default", help="variants also measured leave-phrasings-out")
    ap.add_argument("--afqmc", type=int, default=0, help="also measure AFQMC FAQ retrieval with N sampled queries")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/kb_quality.json"))
    ap.add_argument("--afqmc-only", action="store_true", help="only (re)measure AFQMC, keep the rest of --out")
    args = ap.parse_args()
    encoder = get_encoder()
    if args.afqmc_only:
        results = json.loads(Path(args.out).read_text(encoding="utf-8"))
        results["afqmc"] = afqmc(encoder, args.afqmc or 2000, KnowledgeConfig().dense_weight)
        Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
        return 0
    queries = {name: load_queries(path) for name, path in HELDOUT.items()}
    queries["heldout_all"] = [q for name in HELDOUT for q in queries[name]]  # both files as one set
    previous = {}
    if Path(args.out).exists():
        previous = json.loads(Path(args.out).read_text(encoding="utf-8"))
    results: dict = {"note": __doc__.split("Usage:")[0].strip(), "kbs": {}}
    kbs = {"current": args.kb} | ({"compare": args.compare_kb} if args.compare_kb else {})
    for kb_name, kb_path in kbs.items():
        entries = load_entries(kb_path).entries
        cache: dict = {}
        block: dict = {"path": str(kb_path), "entries": len(entries),
                       "phrasings": {lang: sum(len(e.questions.get(lang, ())) for e in entries) for lang in ("zh", "en")},
                       "variants": {}}
        names = args.variants.split(",") if kb_name == "current" else ["previous_default", "default"]
        for name in names:
            cfg = KnowledgeConfig(**VARIANTS[name])
            t = time.perf_counter()
            kb = KnowledgeBase.build(entries, cfg, encoder, vector_cache=cache)
            cache = kb.vector_cache
            row: dict = {"config": VARIANTS[name], "build_seconds": round(time.perf_counter() - t, 1),
                         "adapter": kb.metadata.get("adapter")}
            for qname, qs in queries.items():
                report = evaluate(kb, qs)
                row[qname] = summary(report)
                if name == "default":
                    row[qname]["misses"] = report["misses"]
            if name in args.loo.split(","):
                row["leave_phrasings_out"] = leave_phrasings_out(entries, cfg, encoder, cache)
            block["variants"][name] = row
            line = [f"{kb_name:8s} {name:18s}"]
            for qname in queries:
                bl = row[qname]["by_language"]
                line.append(f"{qname}: zh {bl['zh']['recall@1']:.3f}/{bl['zh']['recall@3']:.3f}/{bl['zh']['mrr']:.3f} "
                            f"en {bl['en']['recall@1']:.3f}/{bl['en']['recall@3']:.3f}/{bl['en']['mrr']:.3f}")
            if "leave_phrasings_out" in row:
                lo = row["leave_phrasings_out"]
                line.append(f"LPO: zh {lo['zh']['recall@1']:.3f}/{lo['zh']['recall@3']:.3f} "
                            f"en {lo['en']['recall@1']:.3f}/{lo['en']['recall@3']:.3f}")
            print(" | ".join(line), flush=True)
        results["kbs"][kb_name] = block
    if args.pinyin_sweep:
        entries = load_entries(args.kb).entries
        settings = [(0.0, 3, 5)] + [(w, lo, hi) for lo, hi in ((2, 4), (3, 5), (2, 5), (3, 4))
                                    for w in (0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)]
        results["pinyin_sweep"] = {"note": "leave-phrasings-out on the KB (5 folds); zh_homophone_typos: each zh "
                                           "held-out phrasing with one character swapped for a KB character of the "
                                           "same toneless pinyin. Chosen: the best clean + typo zh recall@1.",
                                   **pinyin_sweep(entries, encoder, {}, settings)}
    elif "pinyin_sweep" in previous:
        results["pinyin_sweep"] = previous["pinyin_sweep"]
    if args.afqmc:
        results["afqmc"] = afqmc(encoder, args.afqmc, KnowledgeConfig().dense_weight)
    elif "afqmc" in previous:
        results["afqmc"] = previous["afqmc"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
