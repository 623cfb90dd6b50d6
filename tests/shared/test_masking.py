"""Masking of personal data in text, tracker JSON and log records."""
from __future__ import annotations

import io
import logging

from bot.shared.masking import MaskingFilter, install_log_masking, mask_text, mask_tracker_state

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


def test_mask_text_phones_openids_emails_but_not_order_ids() -> None:
    text = f"电话13812345678 或 +86 139-0000-1111, {OPENID}, zhang.san@qq.com, 订单E20261101001"
    masked = mask_text(text)
    assert "13812345678" not in masked and "*******5678" in masked
    assert "1390000" not in masked and "*******1111" in masked
    assert OPENID not in masked and "oUpF8u…" in masked
    assert "zhang.san" not in masked and "@qq.com" in masked
    assert "E20261101001" in masked  # an order id names a transaction, not a person


def test_mask_tracker_state_masks_texts_slots_entities_and_openid_sender() -> None:
    state = {
        "sender_id": OPENID,
        "slots": {"phone": "13812345678", "name": "张三", "ship_address": "上海市浦东新区世纪大道100号", "size": "42"},
        "latest_message": {"text": "我是张三 13812345678", "entities": [{"entity": "name", "value": "张三"}]},
        "events": [{"event": "user", "text": "13812345678", "metadata": {"customer_id": "42", "phone": "13812345678"}},
                   {"event": "slot", "name": "name", "value": "张三"},
                   {"event": "bot", "text": "好的"}],
    }
    out = mask_tracker_state(state)
    flat = repr(out)
    assert "13812345678" not in flat and OPENID not in flat and "张三" not in flat and "世纪大道" not in flat
    assert out["slots"]["size"] == "42" and out["events"][2]["text"] == "好的"
    assert state["slots"]["name"] == "张三"  # the input is not changed


def test_filter_masks_info_and_above_but_not_debug() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log = logging.getLogger("tests.masking")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        assert install_log_masking(log) == 1 and install_log_masking(log) == 0  # once per handler
        log.info("Conversation %s phone %s took %d ms", OPENID, "13812345678", 5)
        try:
            raise ValueError(f"no order for 13812345678 of {OPENID}")
        except ValueError:
            log.exception("failed")
        log.debug("Message: %r", "13812345678")
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    info, debug = out.split("Message:")
    assert "13812345678" not in info and OPENID not in info and "took 5 ms" in info
    assert "13812345678" in debug  # DEBUG is the developer's own level
    assert any(isinstance(f, MaskingFilter) for f in handler.filters)
