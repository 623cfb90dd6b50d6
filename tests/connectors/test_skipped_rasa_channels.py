"""`rasa init` writes `rasa:` (Rasa X's channel) into credentials.yml: kefu serves the project
without it, with a warning, as Rasa serves it (issue #16 point 2)."""
from __future__ import annotations

import logging

import pytest

from bot.shared.exceptions import UnknownComponentError
from connectors.base import create_input_channels
from connectors.rest import RestInput


def test_rasa_x_channel_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        channels = create_input_channels({"rest": None, "rasa": {"url": "http://localhost:5002/api"}})
    assert [type(c) for c in channels] == [RestInput]
    assert any("'rasa' is skipped" in r.getMessage() for r in caplog.records)


def test_other_unknown_channels_still_fail() -> None:
    with pytest.raises(UnknownComponentError):
        create_input_channels({"nonsense": None})
