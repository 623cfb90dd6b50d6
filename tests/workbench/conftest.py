"""A copy of the tiny workbench shop per test (the workbench writes into it), trained once per session."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

SHOP = Path(__file__).resolve().parent / "data" / "shop"
SECRET = "workbench-test-secret-" + "x" * 32
API_TOKEN = "workbench-admin-token"


def role_headers(role: str, username: str = "tina") -> dict[str, str]:
    payload = {"user": {"username": username, "role": role}, "exp": int(time.time()) + 600}
    return {"Authorization": f"Bearer {jwt.encode(payload, SECRET, algorithm='HS256')}"}


ADMIN = {"Authorization": f"Bearer {API_TOKEN}"}


def copy_shop(target: Path, git: bool = False) -> Path:
    shutil.copytree(SHOP, target, ignore=shutil.ignore_patterns("models", ".kefu"))
    if git:
        run = dict(cwd=target, check=True, capture_output=True)
        subprocess.run(["git", "init", "-q"], **run)
        subprocess.run(["git", "add", "-A"], **run)
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "shop"], **run)
    return target


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    return copy_shop(tmp_path / "shop", git=True)


@pytest.fixture(scope="session")
def shop_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model of the unchanged shop, trained with all its data (as `python -m bot train` does)."""
    from bot.model.training import train

    return train(root=SHOP, out=tmp_path_factory.mktemp("workbench-models")).model_path


async def make_app(root: Path, model: Path) -> tuple[Any, Any]:
    from bot.agent import Agent
    from bot.server.app import create_app
    from connectors.rest import RestInput

    agent = await Agent.create(model, None, project_root=root)
    app = create_app(agent, input_channels=[RestInput()], project_root=root, auth_token=API_TOKEN,
                     jwt_secret=SECRET)
    return app, agent
