"""The HTTP edge: routes, limits, the live event stream; every answer JSON or a known file.

Standard library only (http.server), one thread per connection, with limits so a bad client
cannot stop the server: at most MAX_CONNECTIONS at once (then 503), a socket timeout, bodies up to
MaxRequestBytes (413), at most MaxEventClients live streams (503). Every refusal is a 4xx with a
JSON `{"error": ...}` saying why; an unexpected error is a 500 and is logged, and the server
goes on serving.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import socket
import threading
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Deque, Dict, List, Optional, Protocol, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

from .security import HEADERS, Guard, Refused

log = logging.getLogger(__name__)

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml",
                ".txt": "text/plain; charset=utf-8"}
MAX_CONNECTIONS = 64
MAX_CONNECTIONS_PER_CLIENT = 16  # one address cannot take every slot (a browser opens ~6)
SOCKET_TIMEOUT_S = 10.0
KEEPALIVE_S = 15.0
WRITE_TIMEOUT_S = 60.0
CLIENT_BACKLOG = 2000  # events held for one slow browser before it is told to reload


class Backend(Protocol):
    """What the routes need from the service (service.Dashboard implements it)."""

    def summary(self) -> Dict[str, Any]: ...
    def results_page(self, query: Dict[str, str]) -> Dict[str, Any]: ...
    def result_detail(self, image_id: str) -> Dict[str, Any]: ...
    def image(self, image_id: str) -> Tuple[bytes, str]: ...
    def feedback(self, body: Dict[str, Any]) -> Dict[str, Any]: ...
    def info(self) -> Dict[str, Any]: ...


def static_files(folder: str = STATIC) -> Dict[str, Tuple[str, str]]:
    """URL path -> (file, content type) for every file shipped with the page: the only files
    /static/ serves, so no path from a request ever reaches the filesystem."""
    files: Dict[str, Tuple[str, str]] = {}
    for base, _dirs, names in os.walk(folder):
        for name in names:
            kind = STATIC_TYPES.get(os.path.splitext(name)[1])
            if kind:
                path = os.path.join(base, name)
                files["/static/" + os.path.relpath(path, folder).replace(os.sep, "/")] = \
                    (path, kind)
    return files


class Broadcaster:
    """Fans events out to the live streams; each client has its own bounded backlog."""

    def __init__(self, max_clients: int) -> None:
        self.max_clients = max_clients
        self._clients: List["Client"] = []
        self._lock = threading.Lock()
        self.sent = 0

    def join(self) -> "Client":
        with self._lock:
            if len(self._clients) >= self.max_clients:
                raise Refused(503, f"too many live pages open (MaxEventClients "
                              f"{self.max_clients}); close one and reload")
            client = Client()
            self._clients.append(client)
            return client

    def leave(self, client: "Client") -> None:
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)

    def publish(self, event: str, data: str) -> None:
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            client.put(event, data)
        self.sent += 1

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()


class Client:
    def __init__(self) -> None:
        self.events: Deque[Tuple[str, str]] = deque()
        self.overflowed = False
        self.closed = False
        self._ready = threading.Condition()

    def put(self, event: str, data: str) -> None:
        with self._ready:
            if len(self.events) >= CLIENT_BACKLOG:
                self.events.clear()
                self.overflowed = True
            self.events.append((event, data))
            self._ready.notify()

    def take(self, timeout: float) -> List[Tuple[str, str]]:
        with self._ready:
            if not self.events and not self.closed:
                self._ready.wait(timeout)
            batch = list(self.events)
            self.events.clear()
            if self.overflowed:
                self.overflowed = False
                batch.insert(0, ("reload", "{}"))
            return batch

    def close(self) -> None:
        with self._ready:
            self.closed = True
            self._ready.notify()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 32

    def __init__(self, address: Tuple[str, int], backend: Backend, guard: Guard,
                 broadcaster: Broadcaster, max_body: int,
                 count: Callable[[str], None] = lambda _name: None) -> None:
        self.backend = backend
        self.guard = guard
        self.broadcaster = broadcaster
        self.max_body = max_body
        self.count = count
        self.static = static_files()
        self.stopping = threading.Event()
        self._open: Dict[str, int] = {}
        self._connections: set = set()
        self._open_lock = threading.Lock()
        if ipaddress.ip_address(address[0]).version == 6:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)

    def _take_slot(self, client: str) -> bool:
        with self._open_lock:
            if sum(self._open.values()) >= MAX_CONNECTIONS \
                    or self._open.get(client, 0) >= MAX_CONNECTIONS_PER_CLIENT:
                return False
            self._open[client] = self._open.get(client, 0) + 1
            return True

    def close_connections(self) -> None:
        """End every open connection (keep-alive ones included): after a stop, nothing is
        answered any more, under any configuration."""
        with self._open_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # the client closed it first
                connection.shutdown(socket.SHUT_RDWR)

    def _free_slot(self, client: str) -> None:
        with self._open_lock:
            self._open[client] -= 1
            if not self._open[client]:
                del self._open[client]

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._take_slot(client_address[0]):
            with contextlib.suppress(OSError):  # a client already gone needs no answer
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                b"Connection: close\r\n\r\n")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._connections.discard(request)
            self._free_slot(client_address[0])

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("request from %s failed", client_address[0] if client_address else "?")


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    # An unreadable request line is answered with a status line and headers, not as HTTP/0.9
    # (a bare body), so the client sees why.
    default_request_version = "HTTP/1.0"
    timeout = SOCKET_TIMEOUT_S
    server_version = "vqi-dashboard"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("%s %s", self.address_string(), format % args)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        if isinstance(code, HTTPStatus):
            code = code.value
        if isinstance(code, int) and code >= 400:
            self.server.count("http_refused")
        path = getattr(self, "path", "")  # not set when the request line was unreadable
        log.debug("%s %s %s", self.command, path.split("?")[0][:200], code)

    # -- answers -------------------------------------------------------------------------------
    def send_error(self, code: int, message: Optional[str] = None,
                   explain: Optional[str] = None) -> None:
        """http.server's own refusals (bad request line, too many headers) as JSON too."""
        self.reply(code, {"error": message or HTTPStatus(code).phrase}, close=True)

    def reply(self, status: int, body: Any, kind: str = "application/json",
              extra: Optional[Dict[str, str]] = None, close: bool = False) -> None:
        data = body if isinstance(body, bytes) else json.dumps(
            body, separators=(",", ":")).encode("utf-8")
        try:
            self.send_response(status)
            for name, value in {**HEADERS, **(extra or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            if close or self._unread_body():
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _unread_body(self) -> bool:
        """A body is still on the connection (refused before it was read): the connection is
        closed after the answer, or the body would be read as the next request."""
        headers = getattr(self, "headers", None)
        if headers is None or getattr(self, "_body_read", False):
            return False
        length = headers.get("Content-Length", "0").strip()
        return bool(headers.get("Transfer-Encoding")) or length not in ("", "0")

    def refuse(self, exc: Refused) -> None:
        self.reply(exc.status, {"error": str(exc)}, close=exc.status >= 500 or exc.status == 413)

    # -- dispatch ------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.dispatch(self.get)

    def do_HEAD(self) -> None:  # noqa: N802
        self.dispatch(self.get)

    def do_POST(self) -> None:  # noqa: N802
        self.dispatch(self.post)

    def do_PUT(self) -> None:  # noqa: N802
        self.reply(405, {"error": "method not allowed"}, extra={"Allow": "GET, HEAD, POST"})

    do_DELETE = do_PATCH = do_OPTIONS = do_PUT  # noqa: N815

    def dispatch(self, route: Callable[[str, Dict[str, str]], None]) -> None:
        self.server.count("http_requests")
        self._body_read = False
        try:
            self.server.guard.check_host(self.headers.get("Host"))
            parts = urlsplit(self.path)
            if parts.scheme or parts.netloc:
                raise Refused(400, "absolute URLs are not served")
            query = {k: v[-1] for k, v in parse_qs(parts.query, max_num_fields=20).items()}
            route(unquote(parts.path), query)
        except Refused as exc:
            self.refuse(exc)
        except ValueError as exc:  # a bad query string, a bad number
            self.refuse(Refused(400, f"bad request: {exc}"))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            log.exception("%s %s failed", self.command, self.path[:200])
            self.reply(500, {"error": "internal error; see the component log"}, close=True)

    def get(self, path: str, query: Dict[str, str]) -> None:
        server, guard = self.server, self.server.guard
        if path in ("/", "/index.html"):
            page = "index.html" if guard.session(self.headers) else "login.html"
            self.reply(200, read_static(page), STATIC_TYPES[".html"])
            return
        if path in server.static:
            file, kind = server.static[path]
            with open(file, "rb") as f:
                self.reply(200, f.read(), kind)
            return
        if not path.startswith("/api/"):
            raise Refused(404, "not found")
        session = guard.require_session(self.headers)
        backend = server.backend
        if path == "/api/session":
            self.reply(200, {**backend.info(), "csrf": session.csrf})
        elif path == "/api/summary":
            self.reply(200, backend.summary())
        elif path == "/api/results":
            self.reply(200, backend.results_page(query))
        elif path.startswith("/api/results/"):
            self.reply(200, backend.result_detail(path[len("/api/results/"):]))
        elif path.startswith("/api/images/"):
            data, kind = backend.image(path[len("/api/images/"):])
            self.reply(200, data, kind, {"Cache-Control": "private, max-age=3600"})
        elif path == "/api/events":
            if self.command == "HEAD":
                raise Refused(405, "the event stream answers GET only")
            self.events()
        else:
            raise Refused(404, "no such API")

    def post(self, path: str, _query: Dict[str, str]) -> None:
        guard = self.server.guard
        if path == "/login":
            guard.check_post(self.headers, form=True)
            fields = parse_qs(self.body().decode("utf-8", "replace"), max_num_fields=5)
            sid, _session = guard.login((fields.get("token") or [""])[-1],
                                        self.client_address[0])
            self.reply(303, {"ok": True}, extra={"Location": "/",
                                                 "Set-Cookie": guard.cookie(sid)})
            return
        if path != "/api/feedback":
            raise Refused(404, "no such API")
        guard.check_post(self.headers)
        try:
            body = json.loads(self.body())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Refused(400, f"the body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise Refused(400, "the body must be a JSON object")
        self.reply(202, self.server.backend.feedback(body))

    def body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise Refused(411, "send a Content-Length, not a chunked body")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise Refused(411, "a Content-Length is required")
        if int(length) > self.server.max_body:
            raise Refused(413, f"the body is larger than {self.server.max_body} bytes")
        data = self.rfile.read(int(length))
        self._body_read = True
        if len(data) != int(length):
            raise Refused(400, "the body ended early")
        return data

    # -- Server-Sent Events --------------------------------------------------------------------
    def events(self) -> None:
        broadcaster = self.server.broadcaster
        client = broadcaster.join()
        try:
            self.send_response(200)
            for name, value in HEADERS.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            self.wfile.write(b"retry: 1000\n\n")
            self.wfile.flush()
            self.connection.settimeout(WRITE_TIMEOUT_S)  # a browser that stops reading is dropped
            while not self.server.stopping.is_set() and not client.closed:
                batch = client.take(KEEPALIVE_S)
                if not batch:
                    self.wfile.write(b": keepalive\n\n")
                else:
                    self.wfile.write(b"".join(
                        f"event: {event}\ndata: {data}\n\n".encode("utf-8")
                        for event, data in batch))
                self.wfile.flush()
        except OSError as exc:  # the browser went away (or stopped reading): its stream ends
            log.debug("live stream to %s ended: %s", self.address_string(), exc)
        finally:
            broadcaster.leave(client)


_PAGES: Dict[str, bytes] = {}


def read_static(name: str) -> bytes:
    if name not in _PAGES:
        with open(os.path.join(STATIC, name), "rb") as f:
            _PAGES[name] = f.read()
    return _PAGES[name]


def serve(server: Server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                              name="http", daemon=True)
    thread.start()
    return thread


def stop(server: Server, thread: threading.Thread, close_streams: bool = True) -> None:
    """Stop accepting and serving; `close_streams` also ends every live stream (at the
    component's stop, not when another server takes over: pages reconnect to it)."""
    server.stopping.set()
    if close_streams:
        server.broadcaster.close()
    server.shutdown()
    server.server_close()
    server.close_connections()
    thread.join(5.0)

