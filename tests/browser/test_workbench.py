"""The trainer workbench page in real Chromium (zh and en): inbox → mark an entity → save an
intent, conversations with NLU results, train a candidate and read the gate's comparison.

The server runs the tiny workbench shop (a copy in tmp: the page writes into its files) in a
thread, as tests/browser/conftest.py does for the widget. Screenshots: test-artifacts/workbench-*.png.
"""
from __future__ import annotations

import asyncio
import shutil
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Iterator

import jwt
import pytest

from tests.browser.conftest import _free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SHOP = REPO_ROOT / "tests" / "workbench" / "data" / "shop"
SECRET = "browser-workbench-" + "s" * 32
TRAFFIC = {"b1": "do you sell gift cards", "b2": "can i buy a gift card", "b3": "gift card for my brother",
           "b4": "my jacket is too small"}


class WorkbenchServer:
    def __init__(self, root: Path, model: Path) -> None:
        self.root, self.model = root, model
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self._ready: Future = Future()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as e:
            self._ready.set_exception(e)
            return
        self._ready.set_result(True)
        self.loop.run_forever()

    async def _start(self) -> None:
        from bot.agent import Agent
        from bot.server.app import create_app
        from connectors.rest import RestInput

        self.agent = await Agent.create(self.model, None, project_root=self.root)
        for sender, text in TRAFFIC.items():
            await self.agent.handle_text(text, sender_id=sender)
        app = create_app(self.agent, input_channels=[RestInput()], project_root=self.root, jwt_secret=SECRET)
        app.config.TOUCHUP = False
        self.server = await app.create_server(host="127.0.0.1", port=self.port, return_asyncio_server=True,
                                              access_log=False)
        await self.server.startup()
        await self.server.before_start()  # the features start here (the workbench's service)
        await self.server.after_start()
        self.loop.create_task(self.server.serve_forever())

    def start(self) -> "WorkbenchServer":
        self._thread.start()
        self._ready.result(timeout=120)
        return self

    def stop(self) -> None:
        async def close() -> None:
            await self.server.before_stop()
            self.server.close()
            await self.server.wait_closed()
            await self.agent.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def workbench_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkbenchServer]:
    from bot.model.training import train

    root = tmp_path_factory.mktemp("wb") / "shop"
    shutil.copytree(SHOP, root)
    model = train(root=SHOP, out=tmp_path_factory.mktemp("wb-model")).model_path
    server = WorkbenchServer(root, model).start()
    yield server
    server.stop()


def token(role: str) -> str:
    return jwt.encode({"user": {"username": "tina", "role": role}, "exp": int(time.time()) + 900}, SECRET,
                      algorithm="HS256")


def test_workbench_page_inbox_annotate_conversations_models(browser: Any, workbench_server: WorkbenchServer,
                                                            artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(workbench_server.url + "/workbench")
        page.fill("#token", "not-a-token")
        page.click("#login-button")
        page.wait_for_selector("#login-error:has-text('refused')")

        page.fill("#token", token("trainer"))
        page.click("#login-button")
        page.wait_for_selector(".group")
        gift = page.locator(".group", has_text="gift card").first
        assert gift.locator(".count").inner_text() == "3"

        # mark "jacket" as a product entity (a real selection in the message), save under an intent
        row = page.locator("li[data-text='my jacket is too small']")
        row.locator(".msg-text").evaluate("""node => {
            const text = node.firstChild; const start = text.textContent.indexOf('jacket');
            const range = document.createRange(); range.setStart(text, start); range.setEnd(text, start + 6);
            const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range); }""")
        row.locator(".entity-select").select_option("product")
        row.locator(".mark-entity").click()
        assert row.locator("mark").inner_text() == "jacket"
        row.locator(".intent-select").select_option("return_request")
        page.screenshot(path=str(artifacts / "workbench-inbox-en.png"), full_page=True)
        row.locator(".save-intent").click()
        page.wait_for_selector("#notice:has-text('data/nlu.yml')")
        assert "- my [jacket](product) is too small" in (workbench_server.root / "data" / "nlu.yml").read_text()

        # a new intent for the whole group, one message after another
        for text in ("do you sell gift cards", "can i buy a gift card", "gift card for my brother"):
            r = page.locator(f"li[data-text='{text}']")
            r.locator(".new-intent").fill("gift_card")
            r.locator(".save-intent").click()
            page.wait_for_selector(f"li[data-text='{text}']", state="detached")
        assert "gift_card" in (workbench_server.root / "domain.yml").read_text()

        # Chinese
        page.click("header [data-lang-toggle]")
        page.wait_for_selector("header:has-text('训练师工作台')")
        page.click("[data-tab='conversations']")
        page.fill("#conv-filter input[name='q']", "gift")
        page.click("#conv-filter button[type='submit']")
        page.wait_for_selector("#conv-list li")
        assert page.locator("#conv-list li").count() == 3
        page.locator("#conv-list li").first.click()
        page.wait_for_selector("#transcript .turn.user .nlu")
        page.screenshot(path=str(artifacts / "workbench-conversations-zh.png"), full_page=True)

        page.click("[data-tab='models']")
        page.click("#train")
        page.wait_for_selector("#train-status:has-text('候选模型已训练')", timeout=180_000)
        page.wait_for_selector("#comparison table tbody tr")
        assert page.locator("#model-table tbody tr").count() == 1
        assert page.locator("#comparison h3 .pass, #comparison h3 .fail").count() == 1
        page.screenshot(path=str(artifacts / "workbench-models-zh.png"), full_page=True)
        # a trainer may not activate: the page shows the server's refusal
        page.locator("#model-table .activate").first.click()
        page.wait_for_selector("#notice.bad:has-text('model:write')")
        assert not errors, errors
    finally:
        context.close()
