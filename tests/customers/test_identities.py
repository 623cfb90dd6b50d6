"""Identities: what links automatically, what never does, manual merge and unmerge."""
from __future__ import annotations

from typing import Any

import pytest

from bot.customers.ingress import from_broker, turn_items
from bot.customers.profile import CustomerEvent
from bot.customers.service import CustomerError, CustomerService
from bot.shared.events import ActionExecuted, SessionStarted, SlotSet, UserUttered
from bot.shared.tracker import DialogueStateTracker
from tests.customers.conftest import DAY, T0


def tracker(sender: str, channel: str, *, metadata: dict[str, Any] | None = None, slots: list[SlotSet] = (),
            text: str = "hi", sentiment: float | None = None, intent: str = "greet") -> DialogueStateTracker:
    parse = {"intent": {"name": intent, "confidence": 1.0}, "entities": [], "text": text}
    if sentiment is not None:
        parse["sentiment"] = {"label": "x", "score": sentiment}
    t = DialogueStateTracker(sender, [])
    t.update(ActionExecuted("action_session_start", timestamp=T0))
    t.update(SessionStarted(timestamp=T0))
    t.update(UserUttered(text, parse_data=parse, input_channel=channel, metadata=metadata or {}, timestamp=T0 + 1,
                         message_id=f"m-{sender}"))
    for slot in slots:
        t.update(slot)
    return t


async def run_turn(service: CustomerService, t: DialogueStateTracker) -> str:
    cid = ""
    for item in turn_items(t):
        cid = await service.ingest(item.event, item.links, item.proof)
    return cid


async def order_owner(service: CustomerService, customer: str = "42", order: str = "E20261101001") -> str:
    body = {"event": "order_paid", "customer_id": customer, "order_id": order, "timestamp": T0 - DAY,
            "data": {"total_cents": 5000}, "outbox_id": f"{customer}-{order}", "sender_id": None}
    item = from_broker(body)
    return await service.ingest(item.event, item.links, item.proof)


@pytest.mark.asyncio
async def test_widget_token_links_widget_and_shop_customer_and_the_conversation(service: CustomerService) -> None:
    owner = await order_owner(service)
    identity = {"customer_id": "42", "source": "widget_token", "verified": True, "phone": "13812345678"}
    cid = await run_turn(service, tracker("sid-1", "socketio", metadata={"identity": identity}))
    assert cid == owner
    kinds = {(i["kind"], i["value"], i["proof"]) for i in (await service.get(cid))["identities"]}
    assert ("widget", "42", "widget_token") in kinds
    assert ("conversation", "sid-1", "conversation") in kinds
    assert ("phone", "13812345678", "widget_token") in kinds
    assert (await service.get(cid))["profile"]["contacts"] == 1


@pytest.mark.asyncio
async def test_wechat_openid_links_only_on_the_wechat_channel(service: CustomerService) -> None:
    cid = await run_turn(service, tracker("oWECHAT1", "wechat"))
    assert await service.find("wechat_openid", "oWECHAT1") == cid
    # The REST channel takes any sender id: a REST sender that looks like an openid links nothing.
    rest = await run_turn(service, tracker("oWECHAT2", "rest"))
    assert await service.find("wechat_openid", "oWECHAT2") is None
    assert {i["kind"] for i in (await service.get(rest))["identities"]} == {"conversation"}


@pytest.mark.asyncio
async def test_identity_metadata_on_a_non_widget_channel_or_unverified_never_links(service: CustomerService) -> None:
    owner = await order_owner(service)
    claim = {"customer_id": "42", "verified": True}
    cid = await run_turn(service, tracker("rest-1", "rest", metadata={"identity": claim}))
    assert cid != owner and await service.find("conversation", "rest-1") == cid
    cid2 = await run_turn(service, tracker("sid-2", "socketio", metadata={"identity": {"customer_id": "42"}}))
    assert cid2 != owner
    assert await service.find("widget", "42") is None


@pytest.mark.asyncio
async def test_order_verification_attaches_the_anonymous_chat_to_the_order_owner(service: CustomerService) -> None:
    owner = await order_owner(service)
    anon = await run_turn(service, tracker("sid-3", "socketio", text="where is my order", sentiment=-0.5))
    assert anon != owner
    verified = tracker("sid-3", "socketio", slots=[SlotSet("verified_order", "E20261101001")])
    verified.events[-2].message_id = "m-2"  # a second message of the same chat
    cid = await run_turn(service, verified)
    assert cid == owner
    record = await service.get(owner)
    assert ("conversation", "sid-3") in {(i["kind"], i["value"]) for i in record["identities"]}
    assert record["profile"]["contacts"] == 1 and record["profile"]["recent_sentiment"] is not None
    assert [m["kind"] for m in record["merges"]] == ["auto"]
    with pytest.raises(CustomerError):
        await service.get(anon)  # the anonymous record was absorbed


@pytest.mark.asyncio
async def test_phone_look_up_links_the_verified_phone(service: CustomerService) -> None:
    owner = await order_owner(service)
    t = tracker("sid-4", "socketio", slots=[SlotSet("phone", "138 1234 5678"),
                                             SlotSet("verified_orders", ["E20261101001"])])
    cid = await run_turn(service, t)
    assert cid == owner and await service.find("phone", "13812345678") == owner


@pytest.mark.asyncio
async def test_a_phone_typed_in_chat_without_verification_links_nothing(service: CustomerService) -> None:
    await order_owner(service)
    await run_turn(service, tracker("sid-5", "socketio", slots=[SlotSet("phone", "13812345678")]))
    assert await service.find("phone", "13812345678") is None


@pytest.mark.asyncio
async def test_untrusted_event_claims_link_nothing_trusted_ones_do(service: CustomerService) -> None:
    anon = await run_turn(service, tracker("sid-6", "socketio"))
    untrusted = {"event": "product_viewed", "customer_id": "77", "sender_id": "sid-6", "timestamp": T0,
                 "data": {}, "profile": {"wechat_openid": "oX", "phone": "13900000000"}, "event_id": "pv1",
                 "kefu_behaviour": True, "kefu_trusted": False}
    item = from_broker(untrusted)
    assert item.links == ()
    cid = await service.ingest(item.event, item.links, item.proof)
    assert cid != anon and await service.find("conversation", "sid-6") == anon
    assert await service.find("wechat_openid", "oX") is None
    trusted = dict(untrusted, event_id="pv2", kefu_trusted=True)
    item = from_broker(trusted)
    cid = await service.ingest(item.event, item.links, item.proof)
    assert await service.find("conversation", "sid-6") == cid
    assert await service.find("wechat_openid", "oX") == cid


@pytest.mark.asyncio
async def test_two_known_customers_never_merge_automatically(service: CustomerService) -> None:
    a = await order_owner(service, "42", "E1")
    b = await order_owner(service, "43", "E2")
    ident = {"customer_id": "43", "verified": True}
    chat = await run_turn(service, tracker("sid-7", "socketio", metadata={"identity": ident}))
    assert chat == b
    # the same chat then verifies customer 42's order: a second account, recorded, not merged
    t = tracker("sid-7", "socketio", slots=[SlotSet("verified_order", "E1")])
    t.events[-2].message_id = "m-3"
    await run_turn(service, t)
    assert await service.find("conversation", "sid-7") == b
    assert (await service.get(a))["profile"]["order_count"] == 1
    assert [(c["kind"], c["value"]) for c in (await service.get(b))["conflicts"]] == [("order", "E1")]


@pytest.mark.asyncio
async def test_manual_merge_and_unmerge_restore_both_customers(service: CustomerService) -> None:
    a = await order_owner(service, "42", "E1")
    b = await order_owner(service, "43", "E2")
    await service.ingest(CustomerEvent("o9", "order_paid", T0, {"total_cents": 7000}, ("shop_customer", "43")),
                         proof="shop_event")
    merged = await service.merge(a, b, actor="sam")
    record = await service.get(a)
    assert record["profile"]["order_count"] == 3 and record["profile"]["lifetime_value"] == 17000
    assert await service.find("shop_customer", "43") == a
    assert (await service.get(b))["merged_into"] == a
    with pytest.raises(CustomerError):
        await service.merge(a, b, actor="sam")
    undone = await service.unmerge(merged["merge_id"], actor="sam")
    assert undone["restored"] == b
    assert (await service.get(a))["profile"]["order_count"] == 1
    assert (await service.get(b))["profile"]["lifetime_value"] == 12000
    assert await service.find("shop_customer", "43") == b
    kinds = [i["type"] for i in (await service.timeline(a))["items"]]
    assert "merged" in kinds and "unmerged" in kinds
    with pytest.raises(CustomerError) as e:
        await service.unmerge(merged["merge_id"], actor="sam")
    assert e.value.status == 409
