"""Ports are built from endpoints.yml `ports:`; mistakes name the file, the key and the fix."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bot.feature import ProjectSettings
from bot.ports import OutboxPort, Ports, ProfilePort, load_configured_port, load_ports
from bot.shared.endpoints import load_endpoints
from bot.shared.exceptions import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]


def _settings(root: Path, endpoints: str | None = None) -> ProjectSettings:
    if endpoints is not None:
        (root / "endpoints.yml").write_text(endpoints, encoding="utf-8")
    return ProjectSettings(root=root, endpoints=load_endpoints(root / "endpoints.yml"))


def test_ports_of_the_repository_are_the_demo_shop() -> None:
    path_before = list(sys.path)
    ports = load_ports(_settings(REPO_ROOT))
    assert sys.path == path_before  # loaded like the custom actions: the project folder is not put on sys.path
    assert type(ports.profile).__qualname__ == "ShopProfilePort"
    assert type(ports.outbox).__module__ == "actions.shop.ports"
    assert isinstance(ports.profile, ProfilePort) and isinstance(ports.outbox, OutboxPort)


def test_ports_none_without_a_ports_section(tmp_path: Path) -> None:
    assert load_ports(_settings(tmp_path)) == Ports()
    assert load_configured_port(_settings(tmp_path, "tracker_store:\n  type: sql\n"), "outbox") is None


def test_ports_bad_type_names_the_file_the_key_and_the_fix(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "ports:\n  outbox:\n    type: actions.shop.ports.NoSuchPort\n")
    with pytest.raises(ConfigError) as e:
        load_ports(settings)
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'endpoints.yml'}:1: `ports: outbox` type `actions.shop.ports.NoSuchPort` "
                              "cannot be imported")
    assert "Fix: Point `type:` at a class `module.path.ClassName`" in message


def test_ports_missing_type_and_unknown_port_say_what_is_valid(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"`ports: profile` needs `type: module.path.ClassName`.*Fix:"):
        load_ports(_settings(tmp_path, "ports:\n  profile: {vip: 1}\n"))
    with pytest.raises(ConfigError, match=r"unknown port `orders`; valid ports: compensation, erasure, outbox, profile"):
        load_ports(_settings(tmp_path, "ports:\n  orders: {type: a.B}\n"))


PARTIAL_PORT = '''
class HalfOutbox:
    def __init__(self, project_root, **options):
        self.project_root = project_root

    def pending(self, limit):
        return []

    async def close(self):
        return None


class NoInterval:
    def __init__(self, project_root):
        pass

    async def pending(self, limit):
        return []

    async def mark_published(self, outbox_ids):
        return None

    async def close(self):
        return None
'''


def test_ports_class_that_lacks_members_lists_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "modules", dict(sys.modules))  # the test module's import stays in this test
    (tmp_path / "kefu_test_partial_ports.py").write_text(PARTIAL_PORT, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_ports(_settings(tmp_path, "ports:\n  outbox: {type: kefu_test_partial_ports.HalfOutbox}\n"))
    assert ("does not implement bot.ports.OutboxPort: it lacks async def pending() (it is not async), "
            "async def mark_published()." in str(e.value))
    with pytest.raises(ConfigError, match=r"NoInterval` does not implement bot.ports.OutboxPort: it lacks attribute "
                                          r"`interval`"):
        load_ports(_settings(tmp_path, "ports:\n  outbox: {type: kefu_test_partial_ports.NoInterval}\n"))
    with pytest.raises(ConfigError, match=r"does not accept the options \['colour'\]"):
        load_ports(_settings(tmp_path, "ports:\n  outbox: {type: kefu_test_partial_ports.NoInterval, colour: red}\n"))
