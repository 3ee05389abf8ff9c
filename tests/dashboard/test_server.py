"""The Dashboard process over the real IPC server: history, paging, images, feedback, restarts."""

from __future__ import annotations

import json
import time
from pathlib import Path

from vqitools.dashrun import DASHBOARD, result

from .rig import Rig

RESULTS = "vqi/results"
ALERTS = "vqi/alerts"
FEEDBACK = "vqi/feedback"


def test_results_are_stored_and_served_newest_first(rig: Rig) -> None:
    for i in range(3):
        rig.publish(RESULTS, result(f"img-{i}", f"/x/img-{i}.jpg",
                                    time_iso=f"2026-12-02T10:00:0{i}.000Z"))
    body = rig.wait_rows(3)
    assert [r["image_id"] for r in body["rows"]] == ["img-2", "img-1", "img-0"]
    assert body["rows"][0]["latency_ms"] == 12.5 and body["pages"] == 1


def test_a_result_delivered_again_replaces_its_row(rig: Rig) -> None:
    rig.publish(RESULTS, result("again", "/x/a.jpg", "OK"))
    rig.wait_rows(1)
    rig.publish(RESULTS, result("again", "/x/a.jpg", "DEFECT", boxes=1))
    deadline = time.monotonic() + 10
    while rig.get_json("/api/results/again")[1]["row"]["verdict"] != "DEFECT":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert rig.get_json("/api/results")[1]["total"] == 1


def test_filters_by_verdict_camera_and_time_and_pages(rig: Rig) -> None:
    for i in range(30):
        rig.publish(RESULTS, result(f"r{i:02d}", f"/x/r{i}.jpg",
                                    "DEFECT" if i % 3 == 0 else "OK", f"cam-{i % 2}",
                                    f"2026-12-02T10:00:{i:02d}.000Z", boxes=i % 3 == 0))
    rig.wait_rows(30)
    status, defects = rig.get_json("/api/results?verdict=DEFECT&page_size=4")
    assert status == 200 and defects["total"] == 10 and defects["pages"] == 3
    assert all(r["verdict"] == "DEFECT" for r in defects["rows"])
    page3 = rig.get_json("/api/results?verdict=DEFECT&page_size=4&page=3")[1]
    assert [r["image_id"] for r in page3["rows"]] == ["r03", "r00"]
    cam = rig.get_json("/api/results?camera=cam-1&verdict=OK")[1]
    assert cam["total"] == 10 and {r["camera_id"] for r in cam["rows"]} == {"cam-1"}
    window = rig.get_json("/api/results?since=2026-12-02T10:00:10Z&until=2026-12-02T10:00:20Z")
    assert window[1]["total"] == 10


def test_bad_filters_get_a_400_naming_the_parameter(rig: Rig) -> None:
    for query, word in (("verdict=MAYBE", "verdict"), ("page=0", "page"),
                        ("page_size=5000", "page_size"), ("since=yesterday", "since")):
        status, body = rig.get_json(f"/api/results?{query}")
        assert status == 400 and word in body["error"], (query, body)
    assert rig.serving()


def test_the_image_is_found_after_imagesource_moved_it_to_done(rig: Rig) -> None:
    processing = rig.image("id1__part.jpg")
    rig.publish(RESULTS, result("id1", str(processing)))
    rig.wait_rows(1)
    status, headers, data = rig.request("GET", "/api/images/id1")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    done = rig.image("id1__part.jpg", "done", processing.read_bytes())
    processing.unlink()
    status, _, moved = rig.request("GET", "/api/images/id1")
    assert status == 200 and moved == done.read_bytes()


def test_an_image_gone_from_the_device_is_a_404_saying_so(rig: Rig) -> None:
    rig.publish(RESULTS, result("gone", str(rig.state / "processing" / "gone__x.jpg")))
    rig.wait_rows(1)
    status, _, body = rig.request("GET", "/api/images/gone")
    assert status == 404 and b"no longer on this device" in body
    assert rig.get_json("/api/results/gone")[1]["image"] is False


def test_feedback_is_published_with_a_copy_of_the_image(rig: Rig, assert_valid_message) -> None:
    got = []
    rig.line.subscribe_json(FEEDBACK, lambda m, _t: got.append(m))
    image = rig.image("fb__part.jpg", "done")
    rig.publish(RESULTS, result("fb", str(rig.state / "processing" / "fb__part.jpg"), "DEFECT",
                                boxes=1))
    rig.wait_rows(1)
    status, answer = rig.post_feedback({"image_id": "fb", "label": "missed_defect",
                                        "boxes": [[0.5, 0.5, 0.7, 0.6]]})
    assert status == 202 and answer["label"] == "missed_defect"
    deadline = time.monotonic() + 10
    while not got:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    message = got[0]
    assert_valid_message("feedback.schema.json", message)
    assert message["feedback_id"] == answer["feedback_id"]
    assert message["result"]["image_id"] == "fb" and message["boxes"] == [[0.5, 0.5, 0.7, 0.6]]
    copy = Path(message["image_path"])
    assert copy.parent == rig.work / "feedback" and copy.read_bytes() == image.read_bytes()
    assert copy.stat().st_mode & 0o777 == 0o600
    detail = rig.get_json("/api/results/fb")[1]
    deadline = time.monotonic() + 10
    while not detail["feedback"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
        detail = rig.get_json("/api/results/fb")[1]
    assert detail["feedback"][0]["label"] == "missed_defect"


def test_feedback_on_an_image_no_longer_here_is_refused(rig: Rig) -> None:
    rig.publish(RESULTS, result("nofile", "/x/nofile__a.jpg"))
    rig.wait_rows(1)
    status, body = rig.post_feedback({"image_id": "nofile", "label": "confirm"})
    assert status == 410 and "no longer on this device" in body["error"]
    assert not any((rig.work / "feedback").iterdir())


def test_bad_feedback_gets_a_400_with_the_reason(rig: Rig) -> None:
    rig.image("bad__a.jpg")
    rig.publish(RESULTS, result("bad", str(rig.state / "processing" / "bad__a.jpg")))
    rig.wait_rows(1)
    cases = [({"image_id": "bad", "label": "maybe"}, "label"),
             ({"image_id": "bad", "label": "confirm", "boxes": [[0, 0, 1, 1]]}, "boxes"),
             ({"image_id": "bad", "label": "missed_defect", "boxes": [[0.5, 0.5, 0.2, 0.9]]},
              "box"),
             ({"image_id": "bad", "label": "confirm", "extra": 1}, "unknown fields"),
             ({"label": "confirm"}, "image_id")]
    for body, word in cases:
        status, answer = rig.post_feedback(body)
        assert status == 400 and word in answer["error"], (body, answer)
    status, answer = rig.post_feedback({"image_id": "unknown", "label": "confirm"})
    assert status == 404
    assert not any((rig.work / "feedback").iterdir()) and rig.serving()


def test_alarms_show_until_cleared(rig: Rig) -> None:
    alert = {"schema_version": 1, "kind": "defect_rate", "state": "RAISED",
             "component": "com.example.vqi.Inference", "message": "defect rate 0.4 > 0.2",
             "model": None, "details": {}, "thing_name": "t", "time": "2026-12-02T10:00:00Z"}
    rig.publish(ALERTS, alert)
    deadline = time.monotonic() + 10
    while not rig.get_json("/api/summary")[1]["alarms"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rig.publish(ALERTS, {**alert, "state": "CLEARED", "time": "2026-12-02T10:05:00Z"})
    while rig.get_json("/api/summary")[1]["alarms"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_the_summary_counts_the_last_hour_and_the_shifts(rig: Rig) -> None:
    for i in range(4):
        rig.publish(RESULTS, result(f"s{i}", f"/x/s{i}.jpg", "DEFECT" if i == 0 else "OK",
                                    boxes=int(i == 0)))
    rig.wait_rows(4)
    summary = rig.get_json("/api/summary")[1]
    assert summary["last_hour"]["total"] == 4 and summary["last_hour"]["defect_rate"] == 0.25
    assert summary["shifts"][0]["total"] == 4 and len(summary["shifts"]) == 3
    assert summary["latency_ms"]["p50"] == 12.5
    assert [d["image_id"] for d in summary["defects"]] == ["s0"]
    assert len(summary["hourly"]) == 24 and summary["hourly"][-1]["OK"] == 3


def test_the_history_survives_a_restart(rig: Rig) -> None:
    rig.publish(RESULTS, result("kept", "/x/kept.jpg"))
    rig.wait_rows(1)
    assert rig.stop() == 0  # SIGTERM: exit code 0
    assert not (rig.work / "dashboard.url").exists()
    rig.start()
    assert [r["image_id"] for r in rig.wait_rows(1)["rows"]] == ["kept"]


def test_a_malformed_result_is_ignored_and_the_next_one_kept(rig: Rig) -> None:
    rig.publish(RESULTS, {"image_id": 5})
    rig.publish(RESULTS, result("fine", "/x/fine.jpg"))
    assert [r["image_id"] for r in rig.wait_rows(1)["rows"]] == ["fine"]
    assert "ignored a bad result" in rig.log.read_text()


def test_the_page_and_its_files_carry_the_security_headers(rig: Rig) -> None:
    for path in ("/", "/static/app.js", "/api/summary", "/nothing"):
        _status, headers, _ = rig.request("GET", path)
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
    status, headers, page = rig.request("GET", "/")
    assert status == 200 and b"/static/app.js" in page and b"<script>" not in page


def test_metrics_use_the_common_envelope(tmp_path: Path, assert_valid_metrics) -> None:
    got = []
    rig = Rig(tmp_path, MetricsIntervalSeconds=1)
    try:
        rig.line.subscribe_json("vqi/metrics", lambda m, _t: got.append(m))
        rig.start()
        deadline = time.monotonic() + 15
        while not any(m.get("component") == "com.example.vqi.Dashboard" for m in got):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        rig.close()
    mine = next(m for m in got if m["component"] == "com.example.vqi.Dashboard")
    assert_valid_metrics(mine)
    assert {"event_clients", "history_rows", "results_per_s"} <= set(mine)
    json.dumps(mine)


def test_a_new_token_ends_the_old_sessions_without_a_restart(tmp_path: Path) -> None:
    old, new = "first-token-0123456789", "second-token-0123456789"
    rig = Rig(tmp_path, BindAddress="0.0.0.0", Token=old).start()
    try:
        assert rig.get_json("/api/summary", {"Authorization": f"Bearer {old}"})[0] == 200
        pid = rig.proc.pid
        rig.server.update_configuration(DASHBOARD, [], {"Token": new})
        deadline = time.monotonic() + 10
        while rig.get_json("/api/summary", {"Authorization": f"Bearer {old}"})[0] != 401:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert rig.get_json("/api/summary", {"Authorization": f"Bearer {new}"})[0] == 200
        assert rig.proc.pid == pid and old not in rig.log.read_text()
    finally:
        rig.close()


def test_a_new_port_is_served_at_once_and_the_old_one_closed(rig: Rig) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    old = rig.port
    rig.server.update_configuration(DASHBOARD, [], {"Port": free})
    url = rig.work / "dashboard.url"
    deadline = time.monotonic() + 10
    while url.read_text().strip() != f"http://127.0.0.1:{free}/":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rig.port = free
    assert rig.serving()

    def old_port_open() -> bool:
        try:
            socket.create_connection(("127.0.0.1", old), timeout=2).close()
        except OSError:
            return False
        return True

    while old_port_open():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_taken_port_is_refused_and_the_old_one_kept(rig: Rig) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        rig.server.update_configuration(DASHBOARD, [], {"Port": taken.getsockname()[1]})
        deadline = time.monotonic() + 10
        while "configuration update rejected" not in rig.log.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert rig.serving()


def test_it_listens_on_ipv6_loopback(tmp_path: Path) -> None:
    rig = Rig(tmp_path, BindAddress="::1").start()
    try:
        assert rig.url.startswith("http://[::1]:")
        import http.client

        conn = http.client.HTTPConnection("::1", rig.port, timeout=10)
        conn.request("GET", "/api/summary", headers={"Host": f"[::1]:{rig.port}"})
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        rig.close()
