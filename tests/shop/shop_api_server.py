"""A small merchant order API on 127.0.0.1 for the HTTP adapter's tests (stdlib only).

Serves the routes `HttpShopStore` calls, backed by a `SqlShopStore`, and checks
the bearer token. `slow_seconds` delays every answer (to test timeouts).
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import parse_qs, urlparse

from actions.shop.base import to_json
from actions.shop.sql import SqlShopStore


class ShopApiServer:
    def __init__(self, url: str, token: str = "secret") -> None:
        self.store = SqlShopStore(url)
        self.token = token
        self.slow_seconds = 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, method: str) -> None:
                time.sleep(server.slow_seconds)
                if self.headers.get("Authorization") != f"Bearer {server.token}":
                    return self._send(401, {"error": "unauthorized"})
                parsed = urlparse(self.path)
                query = parse_qs(parsed.query)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}") if method == "POST" else {}
                try:
                    result = asyncio.run(server.route(method, parsed.path.strip("/").split("/"), query, body))
                except KeyError:
                    return self._send(404, {"error": "not_found"})
                if result is None:
                    return self._send(404, {"error": "not_found"})
                self._send(200, to_json(result))

            def _send(self, status: int, data: Any) -> None:
                raw = json.dumps(data, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    async def route(self, method: str, parts: list[str], q: dict[str, list[str]], body: dict[str, Any]) -> Optional[Any]:
        s = self.store
        one = lambda k: q[k][0]  # noqa: E731
        when = lambda: datetime.fromisoformat(body["now"])  # noqa: E731
        match method, parts:
            case "GET", ["orders"] if "phone" in q:
                since = datetime.fromisoformat(one("since")) if "since" in q else None
                return await s.orders_by_phone(one("phone"), since=since, limit=int(one("limit")) if "limit" in q else 20)
            case "GET", ["orders", oid]:
                return await s.find_order(oid)
            case "GET", ["customers"] if "phone" in q:
                return await s.customer_by_phone(one("phone"))
            case "GET", ["customers"]:
                return await s.customer_by_identity(one("channel"), one("external_id"))
            case "GET", ["customers", cid]:
                return await s.customer(int(cid))
            case "GET", ["customers", cid, "orders"]:
                return await s.recent_orders(int(cid), int(one("limit")))
            case "GET", ["customers", cid, "coupons"]:
                return await s.coupons(int(cid))
            case "GET", ["customers", cid, "points"]:
                return await s.points(int(cid))
            case "GET", ["products"]:
                return await s.products(q.get("sku"))
            case "GET", ["baskets"]:
                return await s.baskets(int(one("customer_id")) if "customer_id" in q else None)
            case "POST", ["orders", oid, "cancel"]:
                return await s.cancel_order(oid, sender_id=body.get("sender_id"), now=when())
            case "POST", ["orders", oid, "address"]:
                return await s.change_address(oid, body["address"], sender_id=body.get("sender_id"), now=when())
            case "POST", ["orders", oid, "after-sales"]:
                return await s.request_after_sale(oid, body["kind"], body["reason"], sender_id=body.get("sender_id"), now=when())
            case "POST", ["orders", oid, "status"]:
                return await s.set_order_status(oid, body["status"], now=when())
            case "POST", ["products", sku, "restock-subscriptions"]:
                if not await s.products([sku]):
                    return None
                new = await s.subscribe_restock(sku, size=body.get("size"), colour=body.get("colour"),
                                                sender_id=body["sender_id"], customer_id=body.get("customer_id"), now=when())
                return {"new": new}
            case "POST", ["products", sku, "stock"]:
                if not await s.products([sku]):
                    return None
                return {"events": await s.set_stock(sku, int(body["stock"]), size=body.get("size"),
                                                    colour=body.get("colour"), now=when())}
            case "GET", ["coupon-templates"]:
                return await s.coupon_templates()
            case "POST", ["customers", cid, "coupons"]:
                return await s.issue_coupon(int(cid), body["template"], issue_key=body["issue_key"],
                                            issued_by=body["issued_by"], now=when(), amount_cents=body.get("amount_cents"))
            case "POST", ["coupons", code, "redeem"]:
                return await s.redeem_coupon(code, body["order_id"], now=when())
            case "POST", ["customers", cid, "points"]:
                expires = datetime.fromisoformat(body["expires_at"]) if body.get("expires_at") else None
                return {"added": await s.earn_points(int(cid), body["kind"], ref=body["ref"], points=int(body["points"]),
                                                     now=when(), expires_at=expires, daily_max=body.get("daily_max"))}
            case "POST", ["customers", cid, "points", "redeem"]:
                return await s.redeem_points(int(cid), body["template"], issue_key=body["issue_key"], now=when())
            case "POST", ["events"]:
                return await s.record_event(body["event"], sender_id=body.get("sender_id"), customer_id=body.get("customer_id"),
                                            payload=body.get("payload") or {}, now=when())
        raise KeyError(parts)

    def __enter__(self) -> "ShopApiServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.store.engine.dispose()
