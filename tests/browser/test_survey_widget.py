"""The widget renders the conversation-end survey's prompts (the same ``csat`` payload as the handoff's):
stars for CSAT, numbered buttons for NPS 0-10, a comment box with Send/Skip; each sends its payload."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.analytics.config import AnalyticsConfig, SurveyConfig
from bot.analytics.survey import SurveyService
from tests.browser.test_widget import TIMEOUT, open_chat, send, user_texts

pytestmark = pytest.mark.browser


def test_widget_survey_stars_nps_and_comment(shop_server: Any, phone: Any, artifacts: Path) -> None:
    service = SurveyService(AnalyticsConfig(survey=SurveyConfig(nps=True)).survey, None, None)  # type: ignore[arg-type]
    page = open_chat(phone, shop_server)
    send(page, "hi")
    page.locator(".kefu-bot").first.wait_for(timeout=TIMEOUT)
    session_id = page.evaluate("KefuWidget.sessionId()")

    shop_server.push(session_id, service.prompt("csat", "en", "s1"))
    box = page.locator(".kefu-csat").last
    box.locator(".kefu-star").first.wait_for(timeout=TIMEOUT)
    assert box.locator(".kefu-star").count() == 5 and box.locator(".kefu-score").count() == 0
    assert box.locator(".kefu-csat-text").inner_text() == "How would you rate this conversation? Reply 1-5 stars."
    box.locator(".kefu-star").nth(4).click()
    page.wait_for_function("[...document.querySelectorAll('.kefu-user .kefu-bubble')].some(b => b.innerText === '★★★★★')",
                           timeout=TIMEOUT)

    shop_server.push(session_id, service.prompt("nps", "en", "s1"))
    nps = page.locator(".kefu-csat").last
    nps.locator(".kefu-score").first.wait_for(timeout=TIMEOUT)
    assert nps.locator(".kefu-score").all_inner_texts() == [str(i) for i in range(11)]
    nps.locator(".kefu-score").nth(9).click()
    page.wait_for_function("[...document.querySelectorAll('.kefu-user .kefu-bubble')].some(b => b.innerText === '9')",
                           timeout=TIMEOUT)
    assert nps.locator(".kefu-star-on").all_inner_texts() == ["9"]  # one chosen number, not a bar of stars

    shop_server.push(session_id, service.prompt("comment", "en", "s1"))
    comment = page.locator(".kefu-survey-comment").last
    comment.locator(".kefu-comment").wait_for(timeout=TIMEOUT)
    comment.locator(".kefu-comment").fill("Quick and \"friendly\"")
    page.screenshot(path=str(artifacts / "widget-survey.png"))
    comment.locator(".kefu-comment-send").click()
    page.wait_for_function(
        "[...document.querySelectorAll('.kefu-user .kefu-bubble')].some(b => b.innerText === 'Quick and \"friendly\"')",
        timeout=TIMEOUT)
    assert comment.locator(".kefu-comment").is_disabled()
    # what reached the server: the payloads the survey hook reads (the tracker over the HTTP API)
    import httpx

    page.locator(".kefu-bot").nth(4).wait_for(timeout=TIMEOUT)
    tracker = httpx.get(f"{shop_server.url}/conversations/{session_id}/tracker", timeout=10).json()
    texts = [e.get("text") for e in tracker["events"] if e.get("event") == "user"]
    assert texts[-3:] == ['/csat{"rating":5}', '/csat{"nps":9}', '/survey_comment{"comment":"Quick and \\"friendly\\""}']
    assert user_texts(page)[-3:] == ["★★★★★", "9", 'Quick and "friendly"']
