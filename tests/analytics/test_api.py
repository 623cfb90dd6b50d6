"""The dashboard routes through the real server app: 401 for strangers, 403 for a wrong role, exact figures, CSV."""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import pytest_asyncio

from bot.analytics.config import AnalyticsConfig
from bot.analytics.feature import AnalyticsFeature
from bot.analytics.ingest import Ingester
from bot.analytics.store import AnalyticsStore
from bot.server.app import create_app
from tests.analytics.history import DAY, END, START, T0, history

SECRET = "analytics-test-secret-0123456789abcdef"
API_TOKEN = "analytics-api-token"
QUERY = f"start={START}&end={END}"


def role(name: str) -> dict[str, str]:
    token = jwt.encode({"user": {"username": "u", "role": name}, "exp": int(time.time()) + 600}, SECRET,
                       algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


@pytest_asyncio.fixture()
async def app(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'analytics.db'}"
    store = AnalyticsStore(url)
    await store.open()
    ingester = Ingester(store, AnalyticsConfig())
    for body in history():
        await ingester.handle(body)
    await ingester.close_idle(T0 + 10 * DAY)
    await store.close()
    return create_app(None, auth_token=API_TOKEN, jwt_secret=SECRET,
                      features=[AnalyticsFeature(AnalyticsConfig(), url)])


@pytest.mark.asyncio
@pytest.mark.parametrize("path", [f"/dashboard/api/metrics?{QUERY}", f"/dashboard/api/export/top_intents.csv?{QUERY}"])
async def test_stranger_401_wrong_role_403(app: Any, path: str) -> None:
    _, stranger = await app.asgi_client.get(path)
    assert stranger.status == 401 and stranger.json["reason"] == "NotAuthenticated"
    for wrong in ("agent", "event_producer", "user"):
        _, resp = await app.asgi_client.get(path, headers=role(wrong))
        assert resp.status == 403, (wrong, resp.text)
        assert resp.json["reason"] == "NotAuthorized"


@pytest.mark.asyncio
async def test_supervisor_trainer_and_admin_read_the_exact_figures(app: Any) -> None:
    for headers in (role("supervisor"), role("trainer"), {"Authorization": f"Bearer {API_TOKEN}"}):
        _, resp = await app.asgi_client.get(f"/dashboard/api/metrics?{QUERY}&lang=zh", headers=headers)
        assert resp.status == 200, resp.text
        body = resp.json
        assert body["figures"]["conversations"] == 5 and body["figures"]["escalation_rate"] == 0.2
        assert body["definitions"]["fcr"]["name"] == "首次接触解决率"
    _, wechat = await app.asgi_client.get(f"/dashboard/api/metrics?{QUERY}&channel=wechat", headers=role("supervisor"))
    assert wechat.json["figures"]["conversations"] == 2


@pytest.mark.asyncio
async def test_csv_export_of_every_table(app: Any) -> None:
    _, metrics = await app.asgi_client.get(f"/dashboard/api/metrics?{QUERY}", headers=role("supervisor"))
    for table in ["figures", *metrics.json["tables"]]:
        _, resp = await app.asgi_client.get(f"/dashboard/api/export/{table}.csv?{QUERY}", headers=role("supervisor"))
        assert resp.status == 200, (table, resp.text)
        assert resp.headers["content-type"].startswith("text/csv")
        assert f'kefu-{table}-{START}-{END}.csv' in resp.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(resp.text.lstrip("\ufeff"))))
        expected = metrics.json["tables"].get(table)
        if expected is not None:
            assert len(rows) == len(expected), table
    _, intents = await app.asgi_client.get(f"/dashboard/api/export/top_intents.csv?{QUERY}", headers=role("supervisor"))
    rows = list(csv.DictReader(io.StringIO(intents.text.lstrip("\ufeff"))))
    assert rows[0] == {"name": "greet", "count": "3"}
    _, figures = await app.asgi_client.get(f"/dashboard/api/export/figures.csv?{QUERY}", headers=role("supervisor"))
    by_metric = {r["metric"]: r for r in csv.DictReader(io.StringIO(figures.text.lstrip("\ufeff")))}
    assert by_metric["fallback_rate"]["value"] == "0.375" and by_metric["fallback_rate"]["definition"]


@pytest.mark.asyncio
async def test_bad_requests_name_the_problem(app: Any) -> None:
    headers = role("supervisor")
    _, bad_date = await app.asgi_client.get("/dashboard/api/metrics?start=yesterday", headers=headers)
    assert bad_date.status == 400 and "'start'" in bad_date.json["message"] and "YYYY-MM-DD" in bad_date.json["message"]
    _, swapped = await app.asgi_client.get(f"/dashboard/api/metrics?start={END}&end={START}", headers=headers)
    assert swapped.status == 400 and "swap" in swapped.json["message"]
    _, too_long = await app.asgi_client.get("/dashboard/api/metrics?start=2020-01-01&end=2026-01-01", headers=headers)
    assert too_long.status == 400 and "400 days" in too_long.json["message"]
    _, unknown = await app.asgi_client.get(f"/dashboard/api/export/nope.csv?{QUERY}", headers=headers)
    assert unknown.status == 404 and "top_intents" in unknown.json["message"]


@pytest.mark.asyncio
async def test_page_is_public_and_static_files_stay_in_their_folder(app: Any) -> None:
    _, page = await app.asgi_client.get("/dashboard")
    assert page.status == 200 and "/dashboard/static/dashboard.js" in page.text
    _, script = await app.asgi_client.get("/dashboard/static/dashboard.js")
    assert script.status == 200 and "analytics:read" in script.text
    _, escape = await app.asgi_client.get("/dashboard/static/..%2F..%2F..%2Fconfig.yml")
    assert escape.status == 404
