"""The dashboard page (``/dashboard``, public: it holds no data) and its data routes (``analytics:read``).

``GET /dashboard/api/metrics?start=YYYY-MM-DD&end=YYYY-MM-DD&channel=&segment=&lang=zh|en``
returns the figures, tables, the daily (or, for ranges up to two days, hourly)
conversation series, every definition and the filter choices;
``GET /dashboard/api/export/<table>.csv`` the same table as CSV (UTF-8 with BOM so
spreadsheet tools read Chinese). Dates are UTC days; the range is at most 400 days.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable

from sanic import Blueprint, Request, response
from sanic.response import HTTPResponse

from bot.analytics.metrics import compute, definitions
from bot.analytics.store import AnalyticsStore, Filters
from bot.web.auth import public, requires_scope
from bot.web.errors import ErrorResponse
from bot.web.principals import Scope

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "connectors" / "static" / "dashboard"
MAX_DAYS = 400
FIGURE_TABLE = "figures"


def _day(request: Request, name: str, default: dt.date) -> dt.date:
    value = request.args.get(name)
    if not value:
        return default
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ErrorResponse(HTTPStatus.BAD_REQUEST, "BadRequest",
                            f"Query parameter '{name}' must be a date YYYY-MM-DD, not {value!r}.") from None


def filters_of(request: Request, today: dt.date) -> Filters:
    end = _day(request, "end", today)
    start = _day(request, "start", end - dt.timedelta(days=29))
    if start > end:
        raise ErrorResponse(HTTPStatus.BAD_REQUEST, "BadRequest",
                            f"'start' ({start}) is after 'end' ({end}). Fix: swap them.")
    if (end - start).days >= MAX_DAYS:
        raise ErrorResponse(HTTPStatus.BAD_REQUEST, "BadRequest",
                            f"The range {start}..{end} is longer than {MAX_DAYS} days. Fix: choose a shorter range.")
    return Filters(start.isoformat(), end.isoformat(), request.args.get("channel") or None,
                   request.args.get("segment") or None)


TREND_DAILY_MAX = 92  # longer ranges: the health trend is weekly


def trend_days(filters: Filters) -> list[str]:
    """The days whose end the health trend samples: each day up to TREND_DAILY_MAX days, else every 7th
    day counted back from the range's end."""
    first, last = dt.date.fromisoformat(filters.start), dt.date.fromisoformat(filters.end)
    step = 1 if (last - first).days < TREND_DAILY_MAX else 7
    out = []
    day = last
    while day >= first:
        out.append(day)
        day -= dt.timedelta(days=step)
    return [d.isoformat() for d in reversed(out)]


async def health_payload(directory: Any, filters: Filters) -> dict[str, Any] | None:
    """Customer 360's health-score distribution (now) and trend over the range; None without it."""
    if directory is None:
        return None
    days = trend_days(filters)
    ends = [(dt.datetime.fromisoformat(d).replace(tzinfo=dt.timezone.utc) + dt.timedelta(days=1)).timestamp()
            for d in days]
    overview = await directory.health(filters.segment, ends)
    if overview is None:
        return None
    for day, point in zip(days, overview["trend"]):
        point["day"] = day
        point.pop("at", None)
    return overview


async def dashboard_payload(store: AnalyticsStore, filters: Filters, language: str = "en",
                            directory: Any = None) -> dict[str, Any]:
    """Everything the page shows for ``filters`` (also what the benchmark times); ``directory``:
    Customer 360 (the health-score figures), when that feature runs."""
    result = compute(*await store.sums(filters))
    start_ts = dt.datetime.fromisoformat(filters.start).replace(tzinfo=dt.timezone.utc).timestamp()
    end_ts = (dt.datetime.fromisoformat(filters.end).replace(tzinfo=dt.timezone.utc) + dt.timedelta(days=1)).timestamp()
    value = await store.customer_value(filters, start_ts, end_ts)
    result["figures"].update({"buyers": value["buyers"], "ltv": value["ltv"], "retention": value["retention"]})
    hourly = filters.start >= (dt.date.fromisoformat(filters.end) - dt.timedelta(days=1)).isoformat()
    counted = dict(await store.series(filters, "conversations", "h" if hourly else "d"))
    result["tables"]["conversations_by_day"] = [{"bucket": b, "conversations": counted.get(b, 0)}
                                                for b in _buckets(filters, hourly, counted)]
    health = await health_payload(directory, filters)
    result["health"] = health
    if health is not None:
        result["tables"]["health_distribution"] = [
            *({"kind": "band", "name": band, "customers": n} for band, n in health["bands"].items()),
            *({"kind": "score", "name": f"{b['from']}-{b['to']}", "customers": b["customers"]} for b in health["bins"])]
        result["tables"]["health_trend"] = [{"day": p["day"], "customers": p["customers"], "mean": p["mean"],
                                             **{f"band_{k}": v for k, v in p["bands"].items()}}
                                            for p in health["trend"]]
    result["definitions"] = definitions(language)
    result["filters"] = {"start": filters.start, "end": filters.end, "channel": filters.channel,
                         "segment": filters.segment, "grain": "hour" if hourly else "day"}
    result["choices"] = await store.dimensions()
    return result


def _buckets(filters: Filters, hourly: bool, counted: dict[str, int]) -> list[str]:
    """Every day of the range (a day without conversations is a 0, not a gap); hourly: the hours that had any."""
    if hourly:
        return sorted(counted)
    day, end = dt.date.fromisoformat(filters.start), dt.date.fromisoformat(filters.end)
    out = []
    while day <= end:
        out.append(day.isoformat())
        day += dt.timedelta(days=1)
    return out


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    out.write("\ufeff")
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\r\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def create_dashboard_blueprint(analytics: AnalyticsStore,
                               today: Callable[[], dt.date] = lambda: dt.datetime.now(dt.timezone.utc).date(),
                               directory: Callable[[], Any] = lambda: None) -> Blueprint:
    """``directory()``: Customer 360 (:mod:`bot.analytics.directory`) once the feature has started, else None."""
    bp = Blueprint("analytics_dashboard")

    async def store() -> AnalyticsStore:
        """The store, opened on first use (the page needs no agent: it reads rollups only)."""
        await analytics.open()
        return analytics

    @bp.get("/dashboard")
    @public
    async def page(request: Request) -> HTTPResponse:
        return await response.file(DASHBOARD_DIR / "index.html", mime_type="text/html; charset=utf-8",
                                   headers={"Cache-Control": "no-cache"})

    @bp.get("/dashboard/static/<name:path>")
    @public
    async def static_file(request: Request, name: str) -> HTTPResponse:
        path = (DASHBOARD_DIR / name).resolve()
        if DASHBOARD_DIR not in path.parents or not path.is_file():
            fix = " Fix: run scripts/install.sh (it fetches ECharts from the npm registry)." \
                if name.startswith("vendor/") else ""
            raise ErrorResponse(HTTPStatus.NOT_FOUND, "NotFound", f"No dashboard file '{name}'.{fix}")
        return await response.file(path, headers={"Cache-Control": "no-cache"})

    @bp.get("/dashboard/api/metrics")
    @requires_scope(Scope.ANALYTICS_READ)
    async def metrics(request: Request) -> HTTPResponse:
        started = time.perf_counter()
        payload = await dashboard_payload(await store(), filters_of(request, today()), request.args.get("lang") or "en",
                                          directory())
        payload["took_ms"] = round((time.perf_counter() - started) * 1000, 1)
        return response.json(payload, headers={"Cache-Control": "no-store"})

    @bp.get("/dashboard/api/export/<table:str>")
    @requires_scope(Scope.ANALYTICS_READ)
    async def export(request: Request, table: str) -> HTTPResponse:
        name = table[:-4] if table.endswith(".csv") else table
        filters = filters_of(request, today())
        payload = await dashboard_payload(await store(), filters, request.args.get("lang") or "en", directory())
        if name == FIGURE_TABLE:
            rows = [{"metric": key, "name": payload["definitions"][key]["name"], "value": value,
                     "definition": payload["definitions"][key]["definition"]}
                    for key, value in payload["figures"].items()]
        elif name in payload["tables"]:
            rows = payload["tables"][name]
        else:
            valid = ", ".join([FIGURE_TABLE, *sorted(payload["tables"])])
            raise ErrorResponse(HTTPStatus.NOT_FOUND, "NotFound", f"No table '{name}'. Tables: {valid}.")
        filename = f"kefu-{name}-{filters.start}-{filters.end}.csv"
        return response.text(to_csv(rows), content_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                      "Cache-Control": "no-store"})

    return bp
