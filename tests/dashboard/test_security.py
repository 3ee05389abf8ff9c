"""Every hostile or broken request is refused with a clear 4xx, and the server keeps serving."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from vqi_dashboard import web

from vqitools.dashrun import result

from .rig import Rig

TOKEN = "line-7-token-0123456789abcdef"


def raw(rig: Rig, data: bytes) -> bytes:
    """The answer's status line and headers (and whatever came with them) to raw bytes."""
    with socket.create_connection(("127.0.0.1", rig.port), timeout=10) as s:
        s.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


@pytest.mark.parametrize("path", [
    "/static/../recipe.yaml", "/static/..%2F..%2Fsettings.py", "/static/%2e%2e/service.py",
    "/static//etc/passwd", "/api/images/..%2F..%2F..%2Fetc%2Fpasswd", "/api/images/%00",
    "/api/results/..%2Fx", "/../../etc/passwd",
])
def test_path_traversal_is_refused(rig: Rig, path: str) -> None:
    status, _, body = rig.request("GET", path)
    assert status in (400, 404) and b"root:" not in body
    assert rig.serving()


def test_a_result_naming_a_file_outside_the_image_folders_serves_nothing(rig: Rig) -> None:
    rig.publish("vqi/results", result("evil", "/etc/passwd.jpg"))
    secret = rig.tmp / "secret.jpg"
    secret.write_bytes(b"not for the page")
    rig.publish("vqi/results", result("evil2", str(secret)))
    rig.wait_rows(2)
    for image_id in ("evil", "evil2"):
        status, _, body = rig.request("GET", f"/api/images/{image_id}")
        assert status == 404 and b"not for the page" not in body
    assert rig.serving()


def test_a_symlink_out_of_the_image_folders_is_not_followed(rig: Rig) -> None:
    secret = rig.tmp / "secret.jpg"
    secret.write_bytes(b"secret bytes")
    day = rig.state / "done" / time.strftime("%Y-%m-%d", time.gmtime())
    day.mkdir(parents=True)
    os.symlink(secret, day / "link__a.jpg")
    rig.publish("vqi/results", result("link", str(rig.state / "processing" / "link__a.jpg")))
    # a symlinked folder on the way counts too
    os.symlink(rig.tmp, rig.state / "failed" / "2026-01-01")
    (rig.tmp / "dir__b.jpg").write_bytes(b"secret bytes")
    rig.publish("vqi/results", result("dir", str(rig.state / "processing" / "dir__b.jpg"),
                                      time_iso="2026-01-01T10:00:00Z"))
    rig.wait_rows(2)
    for image_id in ("link", "dir"):
        status, _, body = rig.request("GET", f"/api/images/{image_id}")
        assert status == 404 and b"secret" not in body
    status, body = rig.post_feedback({"image_id": "link", "label": "confirm"})
    assert status == 410
    assert rig.serving()


def test_a_cross_origin_post_is_refused(rig: Rig) -> None:
    rig.image("x__a.jpg")
    rig.publish("vqi/results", result("x", str(rig.state / "processing" / "x__a.jpg")))
    rig.wait_rows(1)
    status, body = rig.post_feedback({"image_id": "x", "label": "confirm"},
                                     {"Origin": "http://evil.example"})
    assert status == 403 and "cross-origin" in body["error"]
    status, body = rig.post_feedback({"image_id": "x", "label": "confirm"},
                                     {"Sec-Fetch-Site": "cross-site"})
    assert status == 403
    status, body = rig.post_feedback({"image_id": "x", "label": "confirm"}, csrf="")
    assert status == 403 and "X-CSRF-Token" in body["error"]
    status, body = rig.post_feedback({"image_id": "x", "label": "confirm"}, csrf="guess")
    assert status == 403
    # a plain HTML form (no preflight) cannot send JSON
    status, _, answer = rig.request("POST", "/api/feedback", b"image_id=x&label=confirm", {
        "Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": rig.csrf()})
    assert status == 415
    assert not any((rig.work / "feedback").iterdir()) and rig.serving()


def test_another_host_name_is_refused_on_loopback(rig: Rig) -> None:
    status, _, body = rig.request("GET", "/api/summary", headers={"Host": "attacker.example"})
    assert status == 421 and b"does not answer for host" in body
    status, _, _ = rig.request("GET", "/api/summary", headers={"Host": f"localhost:{rig.port}"})
    assert status == 200


def test_oversized_malformed_and_chunked_bodies_are_refused(rig: Rig) -> None:
    csrf = rig.csrf()
    headers = {"Content-Type": "application/json", "X-CSRF-Token": csrf}
    status, _, body = rig.request("POST", "/api/feedback", b"{" + b" " * 20000 + b"}", headers)
    assert status == 413
    status, _, body = rig.request("POST", "/api/feedback", b"{not json", headers)
    assert status == 400 and b"not JSON" in body
    status, _, body = rig.request("POST", "/api/feedback", b"[1, 2]", headers)
    assert status == 400 and b"JSON object" in body
    answer = raw(rig, b"POST /api/feedback HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                 b"Content-Type: application/json\r\nX-CSRF-Token: " % rig.port
                 + csrf.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411")
    assert rig.serving()


@pytest.mark.parametrize("request_bytes,status", [
    (b"GARBAGE\r\n\r\n", b"400"),
    (b"GET / HTTP/9.9\r\n\r\n", b"505"),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", b"414"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", b"431"),
    (b"GET /\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"404"),
    (b"DELETE /api/results HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"405"),
])
def test_malformed_requests_get_a_4xx_and_the_server_goes_on(rig: Rig, request_bytes: bytes,
                                                             status: bytes) -> None:
    answer = raw(rig, request_bytes)
    assert answer.split(b" ", 2)[1] == status, answer[:200]
    assert rig.serving()


def test_a_refused_request_with_a_body_closes_the_connection(rig: Rig) -> None:
    """Else the unread body would be parsed as the next request (a request smuggled past the
    Origin check)."""
    hidden = f"GET /api/session HTTP/1.1\r\nHost: 127.0.0.1:{rig.port}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", rig.port), timeout=10) as s:
        s.sendall(f"POST /api/feedback HTTP/1.1\r\nHost: 127.0.0.1:{rig.port}\r\n"
                  f"Origin: http://evil.example\r\nContent-Type: text/plain\r\n"
                  f"Content-Length: {len(hidden)}\r\n\r\n".encode() + hidden)
        answer = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 403") and b"csrf" not in answer
    assert answer.count(b"HTTP/1.1 ") == 1


def test_one_client_cannot_take_every_connection(rig: Rig) -> None:
    idle = [socket.create_connection(("127.0.0.1", rig.port))
            for _ in range(web.MAX_CONNECTIONS_PER_CLIENT)]
    try:
        time.sleep(0.5)
        answer = raw(rig, f"GET /api/summary HTTP/1.1\r\nHost: 127.0.0.1:{rig.port}\r\n\r\n"
                     .encode())
        assert answer.startswith(b"HTTP/1.1 503")
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 10
    while not rig.serving():
        assert time.monotonic() < deadline
        time.sleep(0.1)


# -- LAN mode -----------------------------------------------------------------------------------

@pytest.fixture
def lan(tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    rig = Rig(tmp_path, BindAddress="0.0.0.0", TokenFile=str(token_file)).start()
    try:
        yield rig
    finally:
        rig.close()


def test_lan_mode_without_a_session_only_shows_the_login_page(lan: Rig) -> None:
    status, _, page = lan.request("GET", "/")
    assert status == 200 and b'action="/login"' in page and b"app.js" not in page
    for path in ("/api/summary", "/api/results", "/api/session", "/api/events"):
        status, body = lan.get_json(path)
        assert status == 401 and "token" in body["error"], path


def test_lan_mode_refuses_a_wrong_token_and_accepts_the_right_one(lan: Rig) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded",
            "Origin": f"http://127.0.0.1:{lan.port}"}
    status, _, _ = lan.request("POST", "/login", b"token=wrong-token-1234567890", form)
    assert status == 401
    status, _, body = lan.request("POST", "/login", f"token={TOKEN}".encode(), form)
    assert status == 429 and b"wait" in body  # right away after a wrong one: not even tried
    time.sleep(1.1)
    status, _, _ = lan.request("GET", "/api/summary",
                               headers={"Cookie": "vqi_session=made-up"})
    assert status == 401
    status, headers, _ = lan.request("POST", "/login", f"token={TOKEN}".encode(), form)
    assert status == 303 and "HttpOnly" in headers["set-cookie"]
    assert "SameSite=Strict" in headers["set-cookie"]
    cookie = {"Cookie": headers["set-cookie"].split(";")[0]}
    assert lan.get_json("/api/summary", cookie)[0] == 200
    assert lan.get_json("/api/summary", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert lan.get_json("/api/summary", {"Authorization": "Bearer wrong"})[0] == 401
    # a session still needs its CSRF token to post
    status, body = lan.post_feedback({"image_id": "x", "label": "confirm"}, cookie, csrf="x")
    assert status == 403
    assert TOKEN not in lan.log.read_text()


def test_lan_mode_without_a_token_does_not_start(tmp_path: Path) -> None:
    rig = Rig(tmp_path, BindAddress="0.0.0.0")
    try:
        with pytest.raises(AssertionError, match="did not start"):
            rig.start(timeout=15)
        assert rig.proc.wait(10) == 1
        assert "set TokenFile" in rig.log.read_text()
        assert rig.server.component_state("com.example.vqi.Dashboard") == "ERRORED"
    finally:
        rig.close()


def test_a_port_in_use_is_a_clear_start_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        rig = Rig(tmp_path, Port=taken.getsockname()[1])
        try:
            with pytest.raises(AssertionError, match="did not start"):
                rig.start(timeout=15)
            assert "cannot listen on 127.0.0.1" in rig.log.read_text()
        finally:
            rig.close()


def test_the_event_stream_is_limited_to_max_event_clients(tmp_path: Path) -> None:
    rig = Rig(tmp_path, MaxEventClients=1).start()
    try:
        first = socket.create_connection(("127.0.0.1", rig.port), timeout=10)
        first.sendall(f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{rig.port}\r\n\r\n".encode())
        assert first.recv(100).startswith(b"HTTP/1.1 200")
        status, body = rig.get_json("/api/events")
        assert status == 503 and "MaxEventClients" in body["error"]
        first.close()
        assert rig.serving()
    finally:
        rig.close()

