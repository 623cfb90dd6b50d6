"""Serve a kefu Sanic app on 127.0.0.1 from a background thread, for benchmarks that time real HTTP."""
from __future__ import annotations

import asyncio
import socket
import threading
from concurrent.futures import Future
from typing import Any, Callable


def serve_in_thread(make_app: Callable[[], Any], *, run_before_start: bool = False) -> tuple[str, Any]:
    """Start ``make_app()`` (called on the server's own loop) on a free loopback port.

    ``run_before_start``: also run the server's before-start listeners (features that open their
    stores there). Returns the base URL and the server's event loop (it runs until the process ends).
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loop = asyncio.new_event_loop()
    ready: Future = Future()

    async def start() -> Any:
        app = make_app()
        app.config.TOUCHUP = False
        server = await app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False)
        await server.startup()
        if run_before_start:
            await server.before_start()
        loop.create_task(server.serve_forever())
        return server

    def run() -> None:
        asyncio.set_event_loop(loop)
        ready.set_result(loop.run_until_complete(start()))
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.result(timeout=60)
    return f"http://127.0.0.1:{port}", loop
