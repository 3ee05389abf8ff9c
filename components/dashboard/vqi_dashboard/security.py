"""Who may read the page and who may change anything: the token, sessions, Host, CSRF, headers.

- Loopback (the default): anyone on this device may read; nothing needs a token.
- LAN (BindAddress not loopback): every request needs a session, got by posting the token to
  /login (a random session id in an HttpOnly, SameSite=Strict cookie), or the token itself as
  `Authorization: Bearer <token>` for scripts.
- Every state-changing request (POST) must be JSON, come from this origin (Origin and
  Sec-Fetch-Site, when the browser sends them) and carry the session's CSRF token in
  X-CSRF-Token, which only a page of this origin can read (/api/session; no CORS). A Bearer
  request needs no CSRF token: a browser never attaches that header for another site.
- On loopback, the Host header must name this device (127.0.0.1, localhost, ::1), so a web page
  that rebinds its own DNS name to 127.0.0.1 cannot read the dashboard.
Tokens and session ids are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Dict, Iterable, Mapping, Optional, Tuple

SESSION_COOKIE = "vqi_session"
SESSION_TTL_S = 12 * 3600  # one shift and a half
MAX_SESSIONS = 256
LOGIN_PAUSE_S = 1.0
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")

# script and style only from this origin, no inline code, images from here or drawn (blob:),
# nothing framed, no plugins; the page never talks to another origin.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Refused(Exception):
    """A request that is not allowed; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Session:
    csrf: str
    expires: float


def cookies(header: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            out[name] = value
    return out


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


class Guard:
    def __init__(self, token: Optional[str], loopback: bool, port: int,
                 allowed_hosts: Iterable[str] = (), clock=time.time) -> None:
        self.token = token
        self.loopback = loopback
        self.port = port
        self.allowed_hosts = tuple(allowed_hosts)
        self._clock = clock
        self._sessions: Dict[str, Session] = {}
        self._failed: Dict[str, float] = {}  # client address -> time of its last wrong token
        self._lock = threading.Lock()
        # Without a token (loopback), one CSRF token for every page of this process.
        self._open_csrf = secrets.token_urlsafe(32)

    @property
    def needs_login(self) -> bool:
        return self.token is not None

    def update(self, token: Optional[str], loopback: bool, allowed_hosts: Iterable[str]) -> None:
        """A live configuration change; a new token ends every session made with the old one."""
        with self._lock:
            if token != self.token:
                self._sessions.clear()
            self.token = token
            self.loopback = loopback
            self.allowed_hosts = tuple(allowed_hosts)

    # -- Host ----------------------------------------------------------------------------------
    def check_host(self, host: Optional[str]) -> None:
        if not host:
            raise Refused(400, "the request has no Host header")
        names = list(self.allowed_hosts)
        if self.loopback:
            names += LOOPBACK_NAMES
        elif not names:
            return  # LAN without AllowedHosts: the token is the defence
        accepted = {n for n in names} | {f"{n}:{self.port}" for n in names}
        if host.lower() not in accepted:
            raise Refused(421, f"this dashboard does not answer for host {host[:80]!r}")

    # -- sessions ------------------------------------------------------------------------------
    def login(self, token: str, client: str = "") -> Tuple[str, Session]:
        """A new session for the right token; Refused(401) otherwise. After a wrong token the
        same client address waits LOGIN_PAUSE_S (429), so guessing costs a second a try."""
        if self.token is None:
            raise Refused(400, "this dashboard has no token: no login needed")
        now = self._clock()
        with self._lock:
            if now - self._failed.get(client, float("-inf")) < LOGIN_PAUSE_S:
                raise Refused(429, "wait a second after a wrong token")
        if not same(token, self.token):
            with self._lock:
                if len(self._failed) >= MAX_SESSIONS:
                    self._failed.clear()
                self._failed[client] = now
            raise Refused(401, "wrong token")
        sid = secrets.token_urlsafe(32)
        with self._lock:
            for key in [k for k, s in self._sessions.items() if s.expires < now]:
                del self._sessions[key]
            if len(self._sessions) >= MAX_SESSIONS:  # drop the oldest
                oldest = min(self._sessions, key=lambda k: self._sessions[k].expires)
                del self._sessions[oldest]
            session = self._sessions[sid] = Session(secrets.token_urlsafe(32),
                                                    now + SESSION_TTL_S)
        return sid, session

    def session(self, headers: Mapping[str, str]) -> Optional[Session]:
        """The request's session: always one without a token; None when it has none."""
        if self.token is None:
            return Session(self._open_csrf, float("inf"))
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer ") and same(auth[7:].strip(), self.token):
            return Session("", float("inf"))  # a script: no browser, no CSRF
        sid = cookies(headers.get("Cookie", "")).get(SESSION_COOKIE, "")
        if not sid:
            return None
        with self._lock:
            for key, session in self._sessions.items():
                if same(key, sid):
                    if session.expires < self._clock():
                        del self._sessions[key]
                        return None
                    return session
        return None

    def require_session(self, headers: Mapping[str, str]) -> Session:
        session = self.session(headers)
        if session is None:
            raise Refused(401, "log in with the dashboard's token first")
        return session

    # -- state-changing requests ---------------------------------------------------------------
    def check_post(self, headers: Mapping[str, str], form: bool = False) -> Session:
        """Refused unless the POST comes from this origin with the session's CSRF token."""
        host = headers.get("Host", "")
        origin = headers.get("Origin")
        if origin is not None and origin != f"http://{host}":
            raise Refused(403, "cross-origin request refused")
        site = headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            raise Refused(403, "cross-site request refused")
        kind = headers.get("Content-Type", "").split(";")[0].strip().lower()
        want = "application/x-www-form-urlencoded" if form else "application/json"
        if kind != want:
            raise Refused(415, f"expected Content-Type {want}")
        if form:  # the login form: no session yet, the token itself is the proof
            return Session("", 0.0)
        session = self.require_session(headers)
        if session.csrf and not same(headers.get("X-CSRF-Token", ""), session.csrf):
            raise Refused(403, "missing or wrong X-CSRF-Token")
        return session

    def cookie(self, sid: str) -> str:
        return (f"{SESSION_COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/; "
                f"Max-Age={SESSION_TTL_S}")
