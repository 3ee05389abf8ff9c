"""The dashboard service: messages in, history on disk, the page and its live stream out.

IPC callbacks only check a message and queue it. One writer thread takes the queue in batches
(gathering for up to GATHER_S), commits them to the history and then pushes them to the open
pages, so a page that reloads after an event finds it in the history. The web threads only read
the history, except for operator feedback, which is published on the feedback topic (with a copy
of the image the Uploader will send) and queued for the history like any other message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import re
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

from shared.atomic import unlink_quietly, write_atomic
from shared.component import Idle, StartError
from shared.messages import (
    FEEDBACK_LABELS,
    Alert,
    Feedback,
    InspectionResult,
    MessageError,
)
from shared.metrics import Window, rate

from . import COMPONENT_NAME, images, stats
from .history import Filters, History, epoch, summary_row
from .security import Guard, Refused
from .settings import DashboardConfig, image_roots, parse, read_token
from .web import Broadcaster, Server, serve, stop

log = logging.getLogger(__name__)

QUEUE_LIMIT = 20000
BATCH_LIMIT = 500
GATHER_S = 0.1  # results reach the page within this (plus the commit) of arriving
FEEDBACK_DIR = "feedback"
FEEDBACK_MAX_AGE_S = 24 * 3600  # copies the Uploader never took (not deployed) are pruned
URL_FILE = "dashboard.url"
IDLE_PRUNE_S = 60.0
# Read once at start (a change is logged and waits for a restart); the listener (BindAddress, Port)
# and its guard (Token, TokenFile, AllowedHosts) change live, so a leaked token is revoked and a
# LAN screen closed by a deployment alone.
RESTART_KEYS = ("result_topic", "metrics_topic", "alert_topic", "feedback_topic", "image_dirs",
                "max_event_clients")


def live_row(result: Dict[str, Any]) -> Dict[str, Any]:
    """A result as the page shows it live: the table row plus what it needs to draw boxes."""
    row = summary_row(result)
    row["width"] = result.get("image_width", 0)
    row["height"] = result.get("image_height", 0)
    row["boxes"] = [{"class_name": d.get("class_name", ""), "score": d.get("score", 0.0),
                     "box_norm": d.get("box_norm", [])} for d in result.get("detections") or []]
    return row


def parse_time(value: str, key: str) -> Optional[float]:
    """A filter bound: Unix seconds or ISO 8601 (no zone = UTC); Refused(400) otherwise."""
    if not value:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Refused(400, f"{key}={value[:40]!r}: expected ISO 8601 or Unix seconds") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def whole(query: Dict[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = query.get(key, "")
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise Refused(400, f"{key}={raw[:20]!r}: expected a whole number {low}..{high}")
    return int(raw)


def checked_id(image_id: str) -> str:
    if not images.IMAGE_ID.fullmatch(image_id):
        raise Refused(400, "not an image id (letters, digits, '.', '_' and '-', up to 128)")
    return image_id


class Dashboard(Idle):
    def __init__(self, ipc: Any, cfg: DashboardConfig, work: str, thing_name: str = "",
                 environ: Optional[Dict[str, str]] = None) -> None:
        super().__init__()
        environ = dict(os.environ if environ is None else environ)
        self.ipc = ipc
        self.cfg = cfg
        self.started = cfg  # the values of RESTART_KEYS in force
        self.work = work
        self.thing = cfg.thing_name or thing_name
        self.version = environ.get("GREENGRASS_COMPONENT_VERSION", "")
        token = read_token(cfg)
        self.roots = image_roots(cfg, environ)
        self.feedback_dir = os.path.join(work, FEEDBACK_DIR)
        self.history = History(os.path.join(work, "history.sqlite3"), cfg.history_max_rows,
                               cfg.history_max_age_h)
        self.metrics = Window(COMPONENT_NAME, self.thing)
        self.inbox: "queue.Queue[Tuple[str, Dict[str, Any]]]" = queue.Queue(QUEUE_LIMIT)
        self.components: Dict[str, Dict[str, Any]] = {}
        self._components_lock = threading.Lock()
        self.broadcaster = Broadcaster(cfg.max_event_clients)
        self.guard = Guard(token, cfg.loopback, cfg.port, cfg.allowed_hosts)
        self.server: Optional[Server] = None
        self._http: Optional[threading.Thread] = None
        self.url = ""
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        os.makedirs(self.feedback_dir, mode=0o700, exist_ok=True)
        self.prune_feedback_copies()
        if not self.roots:
            log.warning("no image folder known (ImageDirs empty and ImageSource's state folder "
                        "not passed in): images will not be shown")
        self._listen(self.cfg)
        for target, name in ((self._write_loop, "history"), (self._metrics_loop, "metrics")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.ipc.subscribe_json(self.cfg.result_topic, self.on_result)
        if self.cfg.alert_topic:
            self.ipc.subscribe_json(self.cfg.alert_topic, self.on_alert)
        if self.cfg.metrics_topic:
            self.ipc.subscribe_json(self.cfg.metrics_topic, self.on_metrics)
        log.info("dashboard at %s (%s, %d results in the history); images from %s", self.url,
                 "LAN, token required" if self.guard.needs_login else "this device only",
                 self.history.count(), ", ".join(self.roots) or "nowhere")

    def _listen(self, cfg: DashboardConfig) -> None:
        """Serve on cfg's address; the server serving before (if any) is stopped only once the
        new one listens, so a port that is taken leaves the dashboard where it was."""
        try:
            server = Server((cfg.bind_address, cfg.port), self, self.guard, self.broadcaster,
                            cfg.max_request_bytes, self.metrics.count)
        except OSError as exc:
            raise StartError(f"cannot listen on {cfg.bind_address}:{cfg.port} "
                             f"({exc.strerror}): set Port to a free port, or 0 for any") from exc
        old, old_thread = self.server, self._http
        port = server.server_address[1]
        self.guard.port = port
        host = cfg.bind_address if not cfg.loopback else (
            "[::1]" if ":" in cfg.bind_address else "127.0.0.1")
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"  # every interface: this device's own address works too
        self.url = f"http://{host}:{port}/"
        write_atomic(os.path.join(self.work, URL_FILE), self.url + "\n", mode=0o600)
        self.server, self._http = server, serve(server)
        if old is not None and old_thread is not None:
            stop(old, old_thread, close_streams=False)

    def stop(self) -> None:
        self._stop.set()
        if self.server is not None and self._http is not None:
            stop(self.server, self._http)
        for thread in self._threads:
            thread.join(5.0)
        self.history.close()
        unlink_quietly(os.path.join(self.work, URL_FILE))  # nothing listens there any more

    def reconfigure(self, raw: Dict[str, Any]) -> None:
        new = parse(raw)
        token = read_token(new)  # a bad token file is refused now, not at the next restart
        kept = {key: getattr(self.started, key) for key in RESTART_KEYS}
        for key, value in kept.items():
            if getattr(new, key) != value:
                log.warning("%s change takes effect after a restart", key)
        new = dataclasses.replace(new, **kept)
        if (new.bind_address, new.port) != (self.cfg.bind_address, self.cfg.port):
            self._listen(new)
            log.info("now listening at %s", self.url)
        self.guard.update(token, new.loopback, new.allowed_hosts)
        self.history.max_rows = new.history_max_rows
        self.history.max_age_s = new.history_max_age_h * 3600.0
        if self.server is not None:
            self.server.max_body = new.max_request_bytes
        self.cfg = new
        log.info("configuration updated")

    # -- IPC handlers (SDK threads) ------------------------------------------------------------
    def on_result(self, message: Any, topic: str) -> None:
        self._checked("result", InspectionResult.from_dict, message, topic)

    def on_alert(self, message: Any, topic: str) -> None:
        self._checked("alert", Alert.from_dict, message, topic)

    def _checked(self, kind: str, parse: Any, message: Any, topic: str) -> None:
        """Queue a message its dataclass accepts; a bad one is counted and logged, not kept."""
        try:
            parse(message)
        except (MessageError, TypeError, ValueError) as exc:
            self.metrics.count("invalid")
            log.error("ignored a bad %s on %s: %s", kind, topic, exc)
            return
        self._queue(kind, message)

    def on_metrics(self, message: Any, topic: str) -> None:
        if not isinstance(message, dict) or not isinstance(message.get("component"), str):
            self.metrics.count("invalid")
            return
        with self._components_lock:
            self.components[message["component"]] = message
        self.broadcaster.publish("metrics", json.dumps(message, separators=(",", ":")))

    def _queue(self, kind: str, message: Dict[str, Any]) -> None:
        self.metrics.count(f"{kind}s_received")
        try:
            self.inbox.put_nowait((kind, message))
        except queue.Full:  # the history is behind by QUEUE_LIMIT: a display, not a record
            self.metrics.count("dropped_queue_full")

    # -- the writer ----------------------------------------------------------------------------
    def _write_loop(self) -> None:
        pruned = time.monotonic()
        while not self._stop.is_set():
            try:
                batch = [self.inbox.get(timeout=0.5)]
            except queue.Empty:
                if time.monotonic() - pruned > IDLE_PRUNE_S:  # an idle line ages out too
                    pruned = time.monotonic()
                    try:
                        self.history.prune()
                    except Exception:
                        log.exception("could not prune the history")
                continue
            deadline = time.monotonic() + GATHER_S
            while len(batch) < BATCH_LIMIT:
                left = deadline - time.monotonic()
                try:
                    batch.append(self.inbox.get(timeout=left) if left > 0
                                 else self.inbox.get_nowait())
                except queue.Empty:
                    break
            try:
                self.write(batch)
            except Exception:
                log.exception("could not write %d messages to the history", len(batch))

    def write(self, batch: List[Tuple[str, Dict[str, Any]]]) -> None:
        by_kind: Dict[str, List[Dict[str, Any]]] = {"result": [], "alert": [], "feedback": []}
        for kind, message in batch:
            by_kind[kind].append(message)
        self.history.write(by_kind["result"], by_kind["alert"], by_kind["feedback"])
        for result in by_kind["result"]:
            self.broadcaster.publish("result", json.dumps(live_row(result),
                                                          separators=(",", ":")))
        for alert in by_kind["alert"]:
            self.broadcaster.publish("alert", json.dumps(alert, separators=(",", ":")))
        for item in by_kind["feedback"]:
            self.broadcaster.publish("feedback", json.dumps(
                {"image_id": item["image_id"], "label": item["label"]}))
        self.metrics.count("results_stored", len(by_kind["result"]))

    # -- metrics -------------------------------------------------------------------------------
    def _metrics_loop(self) -> None:
        next_prune = time.monotonic() + 3600
        while not self._stop.wait(self.cfg.metrics_interval_s):
            if time.monotonic() >= next_prune:
                self.prune_feedback_copies()
                next_prune = time.monotonic() + 3600
            if not self.cfg.metrics_topic:
                continue
            message = self.metrics.snapshot(lambda counts, window: {
                "results_per_s": rate(counts.get("results_stored", 0), window),
                "event_clients": self.broadcaster.clients,
                "history_rows": self.history.count(),
                "queue_depth": self.inbox.qsize(),
            })
            try:
                self.ipc.publish_json(self.cfg.metrics_topic, message)
            except Exception as exc:
                log.warning("cannot publish metrics: %s", exc)

    def prune_feedback_copies(self, now: Optional[float] = None) -> int:
        now = time.time() if now is None else now
        pruned = 0
        try:
            entries = list(os.scandir(self.feedback_dir))
        except OSError:
            return 0
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_mtime < now - FEEDBACK_MAX_AGE_S:
                    pruned += unlink_quietly(entry.path)
            except OSError:
                continue
        return pruned

    # -- web backend (HTTP threads) ------------------------------------------------------------
    def info(self) -> Dict[str, Any]:
        return {"component": COMPONENT_NAME, "version": self.version, "thing_name": self.thing,
                "lan": not self.cfg.loopback, "feedback_labels": list(FEEDBACK_LABELS),
                "page_size_max": self.cfg.page_size_max,
                "latest_defects": self.cfg.latest_defects}

    def summary(self) -> Dict[str, Any]:
        now = time.time()
        last_hour = self.history.verdict_counts(now - 3600, now + 1)
        shifts = []
        for shift in stats.shifts(now, self.cfg.shift_start_hours):
            counts = self.history.verdict_counts(shift.start, min(shift.end, now + 1))
            shifts.append({"name": shift.name, "start": shift.start, "end": shift.end,
                           "counts": counts, **stats.rates(counts)})
        with self._components_lock:
            components = {name: {k: m.get(k) for k in
                                 ("time", "uptime_s", "window_s", "counts", "latency_ms",
                                  "inference_ms", "images_per_s", "results_per_s")
                                 if k in m}
                          for name, m in sorted(self.components.items())}
        return {
            "time": now,
            "last_hour": {"counts": last_hour, **stats.rates(last_hour)},
            "hourly": stats.hourly_series(self.history.hourly(now - 24 * 3600), now),
            "shifts": shifts,
            "latency_ms": stats.latency(self.history.latencies(now - 3600)),
            "alarms": self.history.active_alarms(),
            "defects": [live_row(r) for r in self.history.latest_defects(self.cfg.latest_defects)],
            "components": components,
            "cameras": self.history.cameras(),
            "history_rows": self.history.count(),
        }

    def results_page(self, query: Dict[str, str]) -> Dict[str, Any]:
        verdict = query.get("verdict", "")
        if verdict and verdict not in stats.VERDICTS:
            raise Refused(400, f"verdict={verdict[:20]!r}: expected one of {stats.VERDICTS}")
        camera = query.get("camera", "")
        if len(camera) > 200:
            raise Refused(400, "camera: at most 200 characters")
        filters = Filters(verdict, camera, parse_time(query.get("since", ""), "since"),
                          parse_time(query.get("until", ""), "until"))
        size = whole(query, "page_size", 25, 1, self.cfg.page_size_max)
        page = whole(query, "page", 1, 1, 10 ** 6)
        total, rows = self.history.page(filters, (page - 1) * size, size)
        return {"total": total, "page": page, "page_size": size,
                "pages": max(1, -(-total // size)), "rows": rows}

    def _result(self, image_id: str) -> Dict[str, Any]:
        result = self.history.result(checked_id(image_id))
        if result is None:
            raise Refused(404, f"no result {image_id} in the history")
        return result

    def _image_of(self, result: Dict[str, Any]) -> Optional[Tuple[str, str]]:
        return images.find(result.get("path", ""), epoch(result.get("time", "")), self.roots)

    def result_detail(self, image_id: str) -> Dict[str, Any]:
        result = self._result(image_id)
        return {"result": result, "row": live_row(result),
                "feedback": self.history.feedback_for(image_id),
                "image": self._image_of(result) is not None}

    def image(self, image_id: str) -> Tuple[bytes, str]:
        found = self._image_of(self._result(image_id))
        if found is None:
            raise Refused(404, f"the image of {image_id} is no longer on this device")
        try:
            return images.read(found[0], self.roots), found[1]
        except OSError as exc:
            raise Refused(404, f"the image of {image_id} cannot be read") from exc

    def feedback(self, body: Dict[str, Any]) -> Dict[str, Any]:
        """Check, copy the image, publish; the answer names the feedback id."""
        image_id = body.get("image_id")
        if not isinstance(image_id, str):
            raise Refused(400, "image_id: required")
        result = self._result(image_id)
        unknown = set(body) - {"image_id", "label", "boxes", "class_id", "comment"}
        if unknown:
            raise Refused(400, f"unknown fields {sorted(unknown)}")
        feedback_id = uuid.uuid4().hex
        found = self._image_of(result)
        if found is None:
            raise Refused(410, f"the image of {image_id} is no longer on this device, so the "
                          "feedback could not be used for training")
        ext = os.path.splitext(found[0])[1].lower()
        copy = os.path.join(self.feedback_dir, feedback_id + ext)
        try:
            message = Feedback(feedback_id=feedback_id, image_id=image_id,
                               label=body.get("label"), image_path=copy, result=result,
                               boxes=body.get("boxes") or [], class_id=body.get("class_id", 0),
                               comment=body.get("comment", ""), thing_name=self.thing)
        except (MessageError, TypeError) as exc:
            raise Refused(400, str(exc)) from exc
        try:
            write_atomic(copy, images.read(found[0], self.roots), mode=0o600)
        except OSError as exc:
            raise Refused(410, f"the image of {image_id} cannot be read any more") from exc
        payload = message.to_dict()
        try:
            self.ipc.publish_json(self.cfg.feedback_topic, payload)
        except Exception as exc:
            unlink_quietly(copy)
            log.error("cannot publish feedback on %s: %s", self.cfg.feedback_topic, exc)
            raise Refused(503, "the feedback could not be sent; try again") from exc
        self.metrics.count("feedback_sent")
        try:
            self.inbox.put(("feedback", payload), timeout=5.0)
        except queue.Full:
            log.warning("feedback %s sent but not recorded in the history", feedback_id)
        log.info("feedback %s on %s: %s", feedback_id, image_id, message.label)
        return {"feedback_id": feedback_id, "image_id": image_id, "label": message.label}

