"""The processor hook that decides when a human takes over and relays while one does.

``after_user_message`` (before the bot predicts): a pending CSAT rating is
recorded; a conversation with an open handoff relays the message to the agent
(the bot stays silent); otherwise the message rules may escalate. ``after_turn``
checks what the bot did (fallbacks, unanswered KB questions, failed actions).
Follows the hook rule of :mod:`bot.dialogue.hooks` (tracker in hand, no
``append_events`` for the conversation being processed).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bot.handoff.rules import check_bot_turn, check_user_message
from bot.handoff.service import HandoffService

if TYPE_CHECKING:  # pragma: no cover
    from bot.shared.message import OutputChannel
    from bot.shared.tracker import DialogueStateTracker

logger = logging.getLogger(__name__)


class HandoffHook:
    """The handoff feature's :class:`~bot.dialogue.hooks.ProcessorHook`."""

    def __init__(self, service: HandoffService) -> None:
        self.service = service

    async def _profile(self, tracker: "DialogueStateTracker") -> dict[str, Any] | None:
        channel = tracker.get_latest_input_channel() if hasattr(tracker, "get_latest_input_channel") else None
        return await self.service.profile_for(channel, tracker.sender_id)

    async def after_user_message(self, processor: Any, tracker: "DialogueStateTracker",
                                 output_channel: "OutputChannel") -> bool:
        service = self.service
        if not service.config.enabled:
            return False
        await service.start()
        current = await service.current_for(tracker.sender_id)
        if current is not None and current.is_active:
            await service.relay_user_message(current, tracker, output_channel)
            return True
        if current is not None and current.csat_pending and await service.handle_csat(current, tracker, output_channel):
            return True
        if tracker.is_paused():
            return False  # paused by someone else (HTTP API): the processor records, stays silent
        profile = await self._profile(tracker)
        escalation = check_user_message(tracker, service.config, vip=bool(profile and profile.get("vip")))
        if escalation is None:
            return False
        await service.escalate(tracker, escalation, output_channel, profile)
        return True

    async def after_turn(self, processor: Any, tracker: "DialogueStateTracker",
                         output_channel: "OutputChannel") -> None:
        service = self.service
        if not service.config.enabled or tracker.is_paused():
            return
        escalation = check_bot_turn(tracker, service.config)
        if escalation is None:
            return
        if await service.active_for(tracker.sender_id) is not None:
            return
        await service.escalate(tracker, escalation, output_channel, await self._profile(tracker))
