"""The `privacy:` section: off by default, errors that name the key and the fix."""
from __future__ import annotations

import pytest

from bot.privacy.config import PrivacyConfig
from bot.shared.exceptions import ConfigError


def test_privacy_config_off_by_default_and_read() -> None:
    assert PrivacyConfig.from_section(None).retention_s is None
    config = PrivacyConfig.from_section({"retention_days": 30, "batch": 100})
    assert config.retention_s == 30 * 86400.0 and config.batch == 100


@pytest.mark.parametrize("raw, match", [
    ({"retention": 30}, r"Unknown key\(s\) under `privacy:`: retention.*Use only: retention_days"),
    ({"retention_days": 0}, r"`privacy: retention_days` must be a positive number"),
    ({"retention_days": "soon"}, r"positive number, got 'soon'"),
    ([1], r"`privacy:` must be a mapping"),
])
def test_privacy_config_errors_name_the_key_and_fix(raw: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PrivacyConfig.from_section(raw)
