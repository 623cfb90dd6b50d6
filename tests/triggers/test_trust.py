"""Proactive messages only from trusted producers (issue #15 point 6).

The findings, reproduced: a backdated event carrying its own time zone made a message go
out during the customer's quiet hours; any producer could choose the channel, the openid
or the conversation a message goes to; a ``subscribed`` event reversed an opt-out the
shopper gave in chat. ``trusted=False`` is what ``POST /events`` passes for a caller
without ``events:trusted``.
"""
from __future__ import annotations

import time
from typing import Any

import pytest

from bot.shared.message import CollectingOutputChannel
from bot.shared.outputs import OutputRegistry
from bot.shared.exceptions import ConfigError
from bot.stores.event_broker import InProcessEventBroker
from bot.triggers import default_sender
from bot.triggers.events import BehaviourEvent
from bot.triggers.hooks import OptOutHook
from bot.triggers.journeys import load_triggers_text
from bot.triggers.report import build_report
from bot.triggers.trust import is_protected, screen
from connectors.socketio import SocketIOInput
from tests.connectors.wechat.conftest import fake_api  # noqa: F401
from tests.triggers.conftest import TEST_TRIGGERS, local_ts, make_engine
from tests.triggers.test_channel_sender import ScriptAgent, wechat_channel
from tests.triggers.test_hooks_cli import FakeTracker

pytestmark = pytest.mark.asyncio

QUIET_NIGHT = local_ts(2026, 11, 20, 23, 0)  # 23:00 in Shanghai (quiet), 16:00 in London
VICTIM_OPENID = "oVictim42"


def ev(event_id: str, kind: str, customer: str, ts: float, profile: dict[str, Any] | None = None,
       sender_id: str | None = None, **props: Any) -> BehaviourEvent:
    return BehaviourEvent(event_id, kind, customer, ts, dict(props), dict(profile or {}), sender_id)


# ---------------------------------------------------------------- time zone and event age
async def test_backdated_event_with_its_own_time_zone_sends_nothing_in_quiet_hours(store, sql_queue, sender, clock):
    """The finding: 48 h back, so the cart reminder is due now; London's afternoon, so not quiet."""
    engine = make_engine(store, sql_queue, sender, clock)
    clock.set(QUIET_NIGHT)
    (accepted,) = await engine.submit([ev("x", "cart_item_added", "c1", clock.now() - 48 * 3600 + 1,
                                          {"timezone": "Europe/London"}, product_name="跑鞋")], trusted=False)
    clock.advance(5)
    await engine.drain()
    assert sender.to("c1") == []
    assert accepted.too_old and accepted.not_started == ("abandoned_cart",)
    assert "profile.timezone" in accepted.ignored_fields
    assert [e.id for e in await store.events_for("c1")] == ["x"]  # kept for the record
    assert await store.instances_for("c1") == []
    assert "timezone" not in await store.get_profile("c1")


async def test_untrusted_time_zone_is_ignored_and_quiet_hours_use_the_stored_one(store, sql_queue, sender, clock):
    engine = make_engine(store, sql_queue, sender, clock)
    clock.set(QUIET_NIGHT)
    (accepted,) = await engine.submit([ev("d", "order_delivered", "uk", clock.now(), {"timezone": "Europe/London"})])
    assert accepted.ignored_fields == ("profile.timezone",) and not accepted.too_old
    clock.advance(5)
    results = await engine.drain()
    assert sender.to("uk") == [] and [(r.outcome, r.reason) for r in results] == [("hold", "quiet_hours")]
    clock.set(local_ts(2026, 11, 21, 9, 0, ))  # held to 09:00 in Shanghai, the settings' zone
    await engine.drain()
    assert len(sender.to("uk")) == 1


async def test_trusted_backdated_event_is_too_old_as_well(store, sql_queue, sender, clock):
    engine = make_engine(store, sql_queue, sender, clock)
    (accepted,) = await engine.submit([ev("x", "cart_item_added", "c1", clock.now() - 25 * 3600)], trusted=True)
    assert accepted.too_old and accepted.ignored_fields == ()
    assert await store.instances_for("c1") == []
    (fresh,) = await engine.submit([ev("y", "cart_item_added", "c1", clock.now() - 23 * 3600)], trusted=True)
    assert not fresh.too_old and len(await store.instances_for("c1")) == 1


BIRTHDAY = TEST_TRIGGERS.replace("  frequency_caps:", "  max_event_age: 2h\n  frequency_caps:", 1) + """
  birthday:
    max_event_age: 7d
    entry: {event: customer_birthday}
    steps:
      - {name: wish, delay: 1s, response: utter_birthday}
"""


async def test_max_event_age_from_settings_and_per_journey(store, sql_queue, sender, clock):
    engine = make_engine(store, sql_queue, sender, clock, BIRTHDAY)
    assert engine.settings.max_event_age == 7200 and engine.config.journey("birthday").max_event_age == 7 * 86400
    old = clock.now() - 3 * 86400
    (cart, birthday) = await engine.submit([ev("a", "cart_item_added", "c1", clock.now() - 3 * 3600),
                                            ev("b", "customer_birthday", "c1", old)])
    assert cart.too_old and cart.not_started == ("abandoned_cart",)
    assert birthday.too_old and birthday.not_started == ()  # older than 2h, but the journey allows 7d
    assert [i.journey for i in await store.instances_for("c1")] == ["birthday"]


def test_max_event_age_must_be_a_duration():
    with pytest.raises(ConfigError, match="max_event_age"):
        load_triggers_text("settings:\n  max_event_age: soon\njourneys: {}\n")


# ---------------------------------------------------------------- channel, openid, conversation
async def test_untrusted_channel_and_openid_are_ignored(store, sql_queue, clock, fake_api):  # noqa: F811
    """The finding: a producer sends customer c1's message to any WeChat user who chatted lately."""
    wechat = wechat_channel(fake_api)
    widget = SocketIOInput(session_persistence=True)
    try:
        await wechat.policy.record_inbound(VICTIM_OPENID, time.time())  # inside their 48 h window
        sender = default_sender(ScriptAgent(), OutputRegistry.from_channels([widget, wechat]))
        assert sender.contact_fields() == ("wechat_openid",)
        engine = make_engine(store, sql_queue, sender, clock)
        (accepted,) = await engine.submit([ev("d", "order_delivered", "c1", clock.now(),
                                              {"channel": "wechat", "wechat_openid": VICTIM_OPENID, "name": "张三"})])
        assert accepted.ignored_fields == ("profile.channel", "profile.wechat_openid")
        clock.advance(5)
        assert [r.outcome for r in await engine.drain()] == ["sent"]
        assert fake_api.custom_sent == [] and fake_api.template_sent == []
        assert [m["text"] for m in await widget.history("c1")] == ["text of utter_delivery_survey"]
        profile = await store.get_profile("c1")
        assert profile["name"] == "张三" and "channel" not in profile and "wechat_openid" not in profile
    finally:
        await wechat.close()


async def test_trusted_producer_sets_channel_and_openid(store, sql_queue, clock, fake_api):  # noqa: F811
    wechat = wechat_channel(fake_api)
    try:
        await wechat.policy.record_inbound(VICTIM_OPENID, time.time())
        sender = default_sender(ScriptAgent(), OutputRegistry.from_channels([wechat]))
        engine = make_engine(store, sql_queue, sender, clock)
        await engine.submit([ev("d", "order_delivered", "c1", clock.now(),
                                {"channel": "wechat", "wechat_openid": VICTIM_OPENID})], trusted=True)
        clock.advance(5)
        await engine.drain()
        assert [m["touser"] for m in fake_api.custom_sent] == [VICTIM_OPENID]
    finally:
        await wechat.close()


async def test_untrusted_sender_id_and_properties_are_ignored(store, sql_queue, sender, clock):
    engine = make_engine(store, sql_queue, sender, clock)
    (accepted,) = await engine.submit([ev("d", "order_delivered", "c1", clock.now(), sender_id="someone-else",
                                          channel="wechat", mp_openid="o1", order_id="O1")])
    assert accepted.ignored_fields == ("properties.channel", "properties.mp_openid", "sender_id")
    clock.advance(5)
    await engine.drain()
    (sent,) = sender.to("c1")
    assert sent.sender_id == "c1"
    (stored,) = await store.events_for("c1")
    assert stored.properties == {"order_id": "O1"} and stored.sender_id is None


def test_protected_names():
    for name in ("channel", "Channel", "wechat_openid", "mp_openid", "timezone", "tz", "subscribed", "opted_in",
                 "marketing_consent", "sms_consent", "opt_in_sms"):
        assert is_protected(name), name
    for name in ("name", "sku", "order_id", "vip", "points"):
        assert not is_protected(name), name
    assert is_protected("line_user_id", extra=("line_user_id",))


def test_trusted_producer_cannot_write_kefus_consent_bookkeeping():
    event = ev("e", "order_paid", "c1", 0.0, {"opted_out_reason": "unsubscribed", "timezone": "Asia/Tokyo"})
    screened = screen(event, trusted=True)
    assert screened.event.profile == {"timezone": "Asia/Tokyo"} and screened.ignored == ("profile.opted_out_reason",)


# ---------------------------------------------------------------- consent
async def test_subscribed_event_does_not_reverse_a_chat_opt_out(store, sql_queue, sender, clock):
    """The finding: the shopper wrote 别再发了; a `subscribed` event (even the shop's own) turned messages back on."""
    engine = make_engine(store, sql_queue, sender, clock)
    hook = OptOutHook(engine)
    assert await hook.after_user_message(object(), FakeTracker("c1", "别再发了"), CollectingOutputChannel())
    await engine.submit([ev("s1", "subscribed", "c1", clock.now())], trusted=True)
    await engine.submit([ev("s2", "subscribed", "c1", clock.now())], trusted=False)
    await engine.submit([ev("o", "order_delivered", "c1", clock.now())])
    clock.advance(5)
    assert [(r.outcome, r.reason) for r in await engine.drain()] == [("skip", "opted_out")]
    profile = await store.get_profile("c1")
    assert profile["opted_out"] is True and profile["opted_out_reason"] == "chat"
    reasons = [d["reason"] for d in await store.decisions_for("c1") if d["kind"] == "consent"]
    assert reasons == ["opted_out:chat", "refused:opted_out_by_chat", "refused:untrusted_producer"]
    report = build_report(await store.report_counts(), engine.config)
    assert report["consent"]["refused:opted_out_by_chat"] == 1

    # Only the shopper undoes it, in chat.
    channel = CollectingOutputChannel()
    assert await hook.after_user_message(object(), FakeTracker("c1", "订阅"), channel)
    assert "恢复订阅" in channel.messages[0]["text"]
    assert (await store.get_profile("c1"))["opted_out"] is False
    await engine.submit([ev("o2", "order_delivered", "c1", clock.now(), order_id="O2")])
    clock.advance(5)
    await engine.drain()
    assert len(sender.to("c1")) == 1


async def test_later_unsubscribed_event_keeps_a_chat_opt_out_sticky(store, sql_queue, sender, clock):
    engine = make_engine(store, sql_queue, sender, clock)
    await engine.opt_out("c1", "admin")
    await engine.submit([ev("u", "unsubscribed", "c1", clock.now())], trusted=True)
    await engine.submit([ev("s", "subscribed", "c1", clock.now())], trusted=True)
    profile = await store.get_profile("c1")
    assert profile["opted_out"] is True and profile["opted_out_reason"] == "admin"


async def test_subscribed_event_reverses_an_event_opt_out(store, sql_queue, sender, clock):
    engine = make_engine(store, sql_queue, sender, clock)
    await engine.submit([ev("u", "unsubscribed", "c1", clock.now())], trusted=True)
    assert (await store.get_profile("c1"))["opted_out"] is True
    await engine.submit([ev("s", "subscribed", "c1", clock.now())], trusted=True)
    assert (await store.get_profile("c1"))["opted_out"] is False


async def test_untrusted_consent_events_change_nothing(store, sql_queue, sender, clock):
    engine = make_engine(store, sql_queue, sender, clock)
    (accepted,) = await engine.submit([ev("u", "unsubscribed", "c1", clock.now(), {"opted_in": False})])
    assert accepted.ignored_fields == ("profile.opted_in", "consent")
    assert (await store.get_profile("c1"))["opted_out"] is False


async def test_opt_in_word_is_an_ordinary_message_when_not_opted_out(store, sql_queue, sender, clock):
    hook = OptOutHook(make_engine(store, sql_queue, sender, clock))
    assert await hook.after_user_message(object(), FakeTracker("c1", "订阅"), CollectingOutputChannel()) is False
    assert await hook.after_user_message(object(), FakeTracker("c2", "取消订阅"), CollectingOutputChannel()) is True
    assert (await store.get_profile("c2"))["opted_out"] is True


# ---------------------------------------------------------------- the broker path
async def test_trust_travels_over_the_broker(store, sql_queue, sender, clock):
    """POST /events bodies carry the caller's trust; the shop outbox relay's bodies are trusted."""
    engine = make_engine(store, sql_queue, sender, clock)
    engine.attach(InProcessEventBroker())
    await engine.opt_out("c1", "chat")
    await engine.submit([ev("s", "subscribed", "c1", clock.now(), {"timezone": "Europe/London"})])
    assert (await store.get_profile("c1")).get("timezone") is None
    # A POST /events body without kefu_trusted (e.g. from an older worker) is untrusted.
    await engine.handle_broker_message({"event": "unsubscribed", "event_id": "u2", "customer_id": "c2",
                                        "timestamp": clock.now(), "kefu_behaviour": True})
    assert (await store.get_profile("c2"))["opted_out"] is False
    # The relay: the shop's own database, through the operator's ports: outbox.
    await engine.handle_broker_message({"event": "order_delivered", "event_id": "r1", "customer_id": "c3",
                                        "timestamp": clock.now(), "profile": {"timezone": "Europe/London"}})
    assert (await store.get_profile("c3"))["timezone"] == "Europe/London"
