"""The dashboard's web side: the page, its JSON and CSV, and a WebSocket of live events.

One `websockets` server (HTTP/1.1; plain GET requests are answered by process_request, the
WebSocket handshake on /ws goes on):

  GET /                          the page (sensornet/dashboard_static/index.html)
  GET /static/<file>             its JavaScript and CSS
  GET /vendor/<file>             uPlot (uPlot.iife.min.js, uPlot.min.css), installed by `make setup`
                                 from the npm registry into .cache/npm (MIT licence; never a CDN)
  GET /api/devices               JSON list of devices (sensornet.dashboard.device_view)
  GET /api/history?range=S       JSON {"since", "until", "quantities": {quantity: {client_id: [[t, v], ...]}}}
                                 for the last S seconds (or ?since=&until=, Unix s); system excluded
  GET /api/history.csv?range=S   CSV: received_at (ISO 8601 UTC), ts, client_id, sensor, quantity, value
                                 (&client_id= for one device), as a download
  GET /ws                        WebSocket: {"type": "devices", "devices": [...], "quantities": {quantity:
                                 {"name", "unit"}}} first, then each
                                 event of sensornet.dashboard.Dashboard as a JSON text frame

With a token, /api/* and /ws need it (?token=... or `Authorization: Bearer ...`): 403 without.
Without one (loopback), a request whose Host is not a loopback name or address gets 403 (no DNS
rebinding), and /ws refuses an Origin other than the page's own (another site's script).
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import json
import mimetypes
import time
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from . import paths
from .dashboard import HEALTH, device_view, is_loopback
from .dashboard_store import Store
from .discovery import QUANTITIES

STATIC_DIR = Path(__file__).resolve().parent / "dashboard_static"
# `make setup`: npm install --prefix .cache/npm uplot
VENDOR_DIR = paths.REPO / ".cache" / "npm" / "node_modules" / "uplot" / "dist"
VENDOR_FILES = ("uPlot.iife.min.js", "uPlot.min.css")
MAX_RANGE_S = 366 * 86400
# what the page calls each known quantity: {quantity: {"name", "unit"}} (Home Assistant's names)
QUANTITY_NAMES = {key: {"name": q.name, "unit": q.unit} for key, q in QUANTITIES.items()}


class WebServer:
    """Serves the page and the live WebSocket for `store` on host:port (0: a free port, in
    .port after start()). token: required by /api and /ws when not None."""

    def __init__(self, store: Store, host: str, port: int, token: str | None = None):
        self.store = store
        self.host = host
        self.port = port
        self.token = token
        self.url_host = f"[{host}]" if ":" in host else host
        self.clients: set[ServerConnection] = set()
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        if not (VENDOR_DIR / VENDOR_FILES[0]).exists():
            raise FileNotFoundError(f"{VENDOR_DIR / VENDOR_FILES[0]} is missing: run `make setup` (npm install uplot)")
        self._loop = asyncio.get_running_loop()
        self._server = await serve(self._ws, self.host, self.port, process_request=self._http,
                                   server_header="sensornet-dashboard", ping_interval=20)
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # ---- live events ----

    def publish_threadsafe(self, event: dict[str, Any]) -> None:
        """Send `event` to every open page; callable from any thread (the MQTT one)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._publish, json.dumps(event))

    def _publish(self, message: str) -> None:
        broadcast(self.clients, message)

    async def _ws(self, connection: ServerConnection) -> None:
        self.clients.add(connection)
        try:
            devices = [device_view(d) for d in self.store.devices()]
            await connection.send(json.dumps({"type": "devices", "devices": devices, "quantities": QUANTITY_NAMES}))
            async for _ in connection:  # the page sends nothing; this waits for the close
                pass
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(connection)

    # ---- HTTP ----

    def _authorised(self, request: Request, query: dict[str, list[str]]) -> bool:
        if self.token is None:
            return True
        given = query.get("token", [""])[0]
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            given = header[len("Bearer "):]
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        path = url.path
        if self.token is None and not is_loopback(urlsplit("//" + request.headers.get("Host", "")).hostname or ""):
            # without a token only loopback names reach the page: no DNS rebinding to it
            return connection.respond(HTTPStatus.FORBIDDEN, "open the page as http://127.0.0.1:PORT/\n")
        origin = request.headers.get("Origin")
        if path == "/ws" and origin and urlsplit(origin).netloc != request.headers.get("Host"):
            # another site's page in the same browser may not read the live readings
            return connection.respond(HTTPStatus.FORBIDDEN, "cross-origin WebSocket refused\n")
        if path.startswith(("/api/", "/ws")) and not self._authorised(request, query):
            return connection.respond(HTTPStatus.FORBIDDEN, "a token is required: open the page as /?token=TOKEN\n")
        if path == "/ws":
            return None  # the WebSocket handshake
        if path == "/":
            return _file(STATIC_DIR / "index.html")
        if path.startswith("/static/") and path[len("/static/"):] in _listing(STATIC_DIR):
            return _file(STATIC_DIR / path[len("/static/"):])
        if path.startswith("/vendor/") and path[len("/vendor/"):] in VENDOR_FILES:
            return _file(VENDOR_DIR / path[len("/vendor/"):])
        try:
            if path == "/api/devices":
                return _json([device_view(d) for d in self.store.devices()])
            if path == "/api/history":
                since, until = _time_range(query)
                return _json({"since": since, "until": until,
                              "quantities": self.store.history(since, until, exclude_sensors=(HEALTH,))})
            if path == "/api/history.csv":
                since, until = _time_range(query)
                return self._csv(since, until, query.get("client_id", [None])[0])
        except ValueError as e:
            return connection.respond(HTTPStatus.BAD_REQUEST, f"{e}\n")
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")

    def _csv(self, since: float, until: float, client_id: str | None) -> Response:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["received_at", "ts", "client_id", "sensor", "quantity", "value"])
        for t, ts, cid, sensor, quantity, value in self.store.rows(since, until, client_id):
            writer.writerow([_iso(t), "" if ts is None else ts, cid, sensor, quantity, repr(value)])
        name = f"sensornet-{_iso(since)[:19].replace(':', '')}.csv"
        return _response(out.getvalue().encode(), "text/csv; charset=utf-8",
                         [("Content-Disposition", f'attachment; filename="{name}"')])


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _time_range(query: dict[str, list[str]]) -> tuple[float, float]:
    """(since, until) in Unix s from ?range=SECONDS (before now) or ?since=&until=; ValueError naming
    the parameter when one is not a number or the range is empty or longer than a year."""
    now = time.time()
    try:
        if "range" in query:
            span = float(query["range"][0])
            since, until = now - span, now
        else:
            since = float(query.get("since", [now - 3600])[0])
            until = float(query.get("until", [now])[0])
    except ValueError:
        raise ValueError("range, since and until are numbers of seconds (e.g. ?range=3600)") from None
    if not 0 < until - since <= MAX_RANGE_S:
        raise ValueError(f"the time range must be more than 0 and at most {MAX_RANGE_S} s")
    return since, until


def _listing(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.is_file()}


def _response(body: bytes, content_type: str, extra: list[tuple[str, str]] | None = None) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-store"), ("Connection", "close"), *(extra or [])])
    return Response(HTTPStatus.OK, "OK", headers, body)


def _file(path: Path) -> Response:
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind.endswith("javascript"):
        kind += "; charset=utf-8"
    return _response(path.read_bytes(), kind)


def _json(value: Any) -> Response:
    return _response(json.dumps(value).encode(), "application/json")
