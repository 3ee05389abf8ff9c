"""The image source, free of IPC: watch, claim, publish, complete, retry, quarantine, retain.

Everything runs on one thread (run_once); other threads only hand in completion messages and
configuration through a queue and wake the loop through a pipe. Publishing and subscribing are
callables, so the same core runs under the real IPC client (shared/component.py runs it), in
tests, and in the benchmark.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Optional, Tuple

from shared.messages import (
    VERDICT_ERROR,
    ConsumerReady,
    InspectionResult,
    MessageError,
    utc_now,
)
from shared.metrics import Window, rate

from . import COMPONENT_NAME, retention
from .claims import DELETE, DONE, FAILED, Claim, ClaimError, ClaimStore
from .inbox_access import camera_access_problem
from .intake import Candidate, Decision, Intake
from .layout import Layout
from .quarantine import quarantine
from .settings import Settings, parse, restart_needed
from .watcher import Watcher

log = logging.getLogger(__name__)

Publish = Callable[[str, Dict[str, Any]], None]
Subscribe = Callable[[str, Callable[[Any, str], None]], None]
SERIES = ("inbox_to_event", "claim_to_result")

TICK_S = 0.25  # how often pending files are re-checked for stability
PUBLISH_RETRY_S = 1.0
MAX_TRACKED = 20000  # inbox files held in memory; a larger backlog stays on disk until rescans
CLAIM_PAUSE_S = 5.0  # after a claim fails on the state folder (disk full, permissions)
HOUR = 3600.0


@dataclass
class Flight:
    """A claimed image waiting for its completion message."""

    claim: Claim
    due: float  # monotonic time of the next re-publish
    completions_at_publish: int  # service-wide completions when last published
    claimed_at: float
    unsent: bool = False  # the last publish failed: send this attempt again, count nothing


class Service:
    def __init__(self, settings: Settings, layout: Layout, publish: Publish,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, sync: bool = True,
                 max_tracked: int = MAX_TRACKED, subscribe: Optional[Subscribe] = None,
                 thing_name: str = "") -> None:
        self.settings = settings
        self.layout = layout
        self._publish = publish
        self._subscribe = subscribe
        self._subscribed: set = set()
        self._clock = clock
        self._wall = wall
        self.claims = ClaimStore(layout, sync=sync)
        self.intake = Intake(layout.inbox, settings)
        self.watcher: Optional[Watcher] = None
        self.metrics = Window(COMPONENT_NAME, thing_name)
        self.in_flight: Dict[str, Flight] = {}
        self._completions = 0
        self._inbox: "queue.SimpleQueue[Tuple[str, Any, str]]" = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._next_rescan = 0.0
        self._next_retention = 0.0
        self._next_metrics = 0.0
        self._first_seen: Dict[str, float] = {}
        self._claims_paused = 0.0
        self._deferred = False  # inbox files were left untracked (backlog over max_tracked)
        self.max_tracked = max_tracked

    # -- thread-safe entry points ----------------------------------------------------------------
    def submit_completion(self, message: Any, topic: str) -> None:
        """Called from IPC threads with each message on the completion topic."""
        self._inbox.put(("completion", message, topic))
        self.wake()

    def submit_ready(self, message: Any, topic: str) -> None:
        """Called from IPC threads with each consumer's readiness announcement."""
        self._inbox.put(("ready", message, topic))
        self.wake()

    def submit_settings(self, settings: Settings) -> None:
        self._inbox.put(("settings", settings, ""))
        self.wake()

    def reconfigure(self, raw: Dict[str, Any]) -> None:
        """A live configuration update: ConfigError, or StartError if the new completion topic
        may not be subscribed to; either way the previous configuration stays."""
        new = parse(raw)
        self._listen(new.completion_topic, self.submit_completion)
        self.submit_settings(new)

    def _listen(self, topic: str, handler: Callable[[Any, str], None]) -> None:
        if self._subscribe is None or not topic or topic in self._subscribed:
            return
        self._subscribe(topic, handler)
        self._subscribed.add(topic)
        log.info("listening on %s", topic)

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # already awake (pipe full), or closed during shutdown

    # -- life cycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Prepare folders, listen for completions and consumers (before claims left by a
        previous run are re-published, so their completions are heard), and watch the inbox."""
        self.layout.prepare()
        self._listen(self.settings.completion_topic, self.submit_completion)
        self._listen(self.settings.ready_topic, self.submit_ready)
        problem = camera_access_problem(self.layout.inbox)
        if problem:
            log.warning("a camera writing as another user cannot drop images: %s", problem)
        now = self._clock()
        for claim in self.claims.recover(self.settings.camera_id):
            flight = Flight(claim, now, self._completions, now)
            self.in_flight[claim.image_id] = flight
            self._send(flight, now, again=True)
        if self.in_flight:
            log.info("re-published %d images claimed before the restart", len(self.in_flight))
        self.watcher = Watcher(self.layout.inbox, self.intake.ignored_dir)
        self._rescan(now)
        self._next_retention = now  # first pass soon after start
        log.info("watching %s (%d claimed images re-published)", self.layout.inbox,
                 len(self.in_flight))

    def stop(self) -> None:
        self.publish_metrics()
        self.close()

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def run_once(self, timeout: float = 1.0) -> None:
        """Wait for something to do (at most timeout seconds), then do all that is due."""
        assert self.watcher is not None, "start() first"
        wait = timeout if not self.intake.pending else min(timeout, TICK_S)
        fds = [self._wake_r]
        ino = self.watcher.fileno()
        if ino is not None:
            fds.append(ino)
        ready, _, _ = select.select(fds, [], [], max(0.0, wait))
        if self._wake_r in ready:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        now = self._clock()
        changes, lost = self.watcher.read(0.0)
        for path, closed, writing in changes:
            self._observe(path, closed, now, writing)
        self._drain(now)
        if lost or now >= self._next_rescan or (
                self._deferred and len(self._first_seen) < self.max_tracked // 2):
            self._rescan(now)
        self._evaluate(now)
        self._fill(now)
        self._retry(now)
        if now >= self._next_retention:
            self._retain()
            self._next_retention = now + self.settings.retention_interval_s
        if now >= self._next_metrics:
            if self._next_metrics:
                self.publish_metrics()
            self._next_metrics = now + self.settings.metrics_interval_s

    # -- inbox -------------------------------------------------------------------------------------
    def _observe(self, path: str, closed: bool, now: float, writing: bool = False) -> None:
        if len(self._first_seen) >= self.max_tracked and path not in self._first_seen:
            self._deferred = True  # left on disk untracked; a later rescan picks it up
            return
        self._first_seen.setdefault(path, now)
        decision = self.intake.observe(path, closed, now, writing)
        if decision is not None:
            self._quarantine(path, decision)
        elif not self.intake.tracked(path):
            self._first_seen.pop(path, None)

    def _rescan(self, now: float) -> None:
        assert self.watcher is not None
        if not os.path.isdir(self.layout.inbox):
            try:
                os.makedirs(self.layout.inbox, exist_ok=True)
                log.warning("the inbox %s was missing; created it again", self.layout.inbox)
            except OSError as exc:
                log.error("the inbox %s is missing: %s", self.layout.inbox, exc)
        present = set()
        self._deferred = False
        for path in self.watcher.walk():
            present.add(path)
            if not self.intake.tracked(path):
                self._observe(path, False, now)
        self.intake.forget_except(present)
        for path in [p for p in self._first_seen if p not in present]:
            del self._first_seen[path]
        live = self.watcher.live
        self._next_rescan = now + (self.settings.rescan_s if live else min(self.settings.rescan_s,
                                                                           2.0))

    def _evaluate(self, now: float) -> None:
        for path, decision in self.intake.evaluate(now, self._wall()):
            self._quarantine(path, decision)

    def _quarantine(self, path: str, decision: Decision) -> None:
        source = os.path.relpath(path, self.layout.inbox)
        self._first_seen.pop(path, None)
        try:
            dest = quarantine(self.layout.quarantine, path, source, decision.reason,
                              wall=self._wall())
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("cannot quarantine %s: %s", path, exc)
            self.metrics.count("errors")
            return
        self.metrics.count("quarantined")
        log.warning("quarantined %s: %s -> %s", source, decision.reason, dest)

    def _camera(self, source: str) -> str:
        parts = source.split(os.sep)
        if self.settings.camera_from_subfolder and len(parts) > 1:
            return "".join(c if c.isprintable() else "_" for c in
                           parts[0].encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        return self.settings.camera_id

    # -- claim and publish -------------------------------------------------------------------------
    def _fill(self, now: float) -> None:
        """Claim ready files while there is room in flight."""
        while len(self.in_flight) < self.settings.max_in_flight and now >= self._claims_paused:
            c = self.intake.pop_ready(now)
            if c is None:
                return
            self._claim(c, now)

    def _claim(self, c: Candidate, now: float) -> None:
        source = os.path.relpath(c.path, self.layout.inbox)
        try:
            claim = self.claims.claim(c.path, source, self._camera(source))
        except ClaimError as exc:
            log.warning("%s", exc)
            self.metrics.count("claim_errors")
            self._first_seen.pop(c.path, None)
            return  # if it is still there, the next rescan looks at it again
        except OSError as exc:  # e.g. disk full writing the sidecar: keep the file, retry later
            log.error("cannot claim %s: %s; pausing claims for %g s", c.path, exc,
                      CLAIM_PAUSE_S)
            self.metrics.count("claim_errors")
            self.intake.requeue(c)
            self._claims_paused = now + CLAIM_PAUSE_S
            return
        first = self._first_seen.pop(c.path, now)
        flight = Flight(claim, now, self._completions, now)
        self.in_flight[claim.image_id] = flight
        self.metrics.count("claimed")
        self._send(flight, now, again=False)
        self.metrics.sample("inbox_to_event", (self._clock() - first) * 1000.0)

    def _send(self, flight: Flight, now: float, again: bool) -> None:
        """Publish the image event; on a re-publish the persisted attempt goes up by one."""
        claim = flight.claim
        if again:
            claim.attempt += 1
            try:
                self.claims.save(claim)
            except OSError as exc:
                log.error("cannot save attempt count of %s: %s", claim.image_id, exc)
        try:
            self._publish(self.settings.image_topic, claim.event().to_dict())
        except Exception as exc:  # IPC hiccup: try again soon; a lost connection ends the process
            log.error("publishing %s failed: %s", claim.image_id, exc)
            self.metrics.count("publish_errors")
            flight.due = now + PUBLISH_RETRY_S
            flight.unsent = True
            return
        flight.unsent = False
        self.metrics.count("published" if claim.attempt == 1 else "republished")
        flight.due = now + self.settings.result_timeout_s
        flight.completions_at_publish = self._completions

    def _retry(self, now: float) -> None:
        """Re-publish images whose result is late; fail those late while others complete."""
        for flight in [f for f in self.in_flight.values() if f.due <= now]:
            claim = flight.claim
            if flight.unsent:
                self._send(flight, now, again=False)
                continue
            if self._completions > flight.completions_at_publish:
                claim.strikes += 1  # the pipeline works, only this image gets no result
            if claim.strikes >= self.settings.max_attempts:
                self._finish(flight, FAILED, {
                    "reason": f"no result after {claim.attempt} attempts "
                              f"({self.settings.result_timeout_s:g} s each) while other images "
                              "completed",
                    "image_id": claim.image_id, "attempts": claim.attempt,
                    "source": claim.source, "camera_id": claim.camera_id, "time": utc_now(),
                })
                self.metrics.count("timed_out")
                continue
            self.metrics.count("timeouts")
            self._send(flight, now, again=True)

    # -- completion --------------------------------------------------------------------------------
    def _drain(self, now: float) -> None:
        while True:
            try:
                kind, payload, topic = self._inbox.get_nowait()
            except queue.Empty:
                return
            if kind == "settings":
                self._apply(payload)
            elif kind == "ready":
                self._consumer_ready(payload, now)
            elif topic == self.settings.completion_topic:
                self._complete(payload, now)

    def _consumer_ready(self, message: Any, now: float) -> None:
        """A consumer has (re)subscribed: what it may have missed is re-sent now, not after
        ResultTimeoutSeconds. Consumers are idempotent by image id, so a re-send is harmless."""
        try:
            ready = ConsumerReady.from_dict(message)
        except (MessageError, TypeError, ValueError) as exc:
            log.warning("ignoring a bad ready message: %s", exc)
            self.metrics.count("bad_messages")
            return
        flights = [f for f in self.in_flight.values() if not f.unsent]
        for flight in flights:
            self._send(flight, now, again=True)
        self.metrics.count("consumer_ready")
        log.info("%s is ready (receives %s, instance %s): re-sent %d in-flight image(s)",
                 ready.component, ready.consumes, ready.instance[:8], len(flights))

    def _complete(self, message: Any, now: float) -> None:
        try:
            result = InspectionResult.from_dict(message)
        except (MessageError, TypeError, ValueError) as exc:
            log.warning("ignoring a bad completion message: %s", exc)
            self.metrics.count("bad_messages")
            return
        flight = self.in_flight.get(result.image_id)
        if flight is None:
            self.metrics.count("unknown_results")  # duplicate, or not one of ours
            return
        self._completions += 1
        self.metrics.sample("claim_to_result", (now - flight.claimed_at) * 1000.0)
        if result.verdict == VERDICT_ERROR:
            self._finish(flight, FAILED, {
                "reason": f"inspection error: {result.error or 'unknown'}",
                "image_id": result.image_id, "attempts": flight.claim.attempt,
                "source": flight.claim.source, "camera_id": flight.claim.camera_id,
                "time": utc_now(), "result": message,
            })
        else:
            self._finish(flight, DELETE if self.settings.done_action == "delete" else DONE, None)
        self._fill(now)  # a slot is free: hand over the next image without waiting for a tick

    def _finish(self, flight: Flight, outcome: str, reason: Optional[Dict[str, Any]]) -> None:
        try:
            self.claims.complete(flight.claim, outcome, reason, wall=self._wall())
        except OSError as exc:
            log.error("cannot complete %s (%s): %s; retrying later", flight.claim.image_id,
                      outcome, exc)
            self.metrics.count("errors")
            return
        del self.in_flight[flight.claim.image_id]
        self.metrics.count(outcome)

    # -- configuration, retention, metrics ---------------------------------------------------------
    def _apply(self, new: Settings) -> None:
        stale = restart_needed(self.settings, new)
        if stale:
            log.warning("changes to %s take effect after a restart", ", ".join(stale))
            new = replace(new, inbox_dir=self.settings.inbox_dir,
                          state_dir=self.settings.state_dir)
        if new.completion_topic != self.settings.completion_topic:
            log.info("completion topic is now %s", new.completion_topic)
        self.settings = new
        self.intake.settings = new
        self.intake.forget_unwanted()
        self._next_rescan = 0.0  # patterns may have changed
        log.info("configuration updated")

    def _retain(self) -> None:
        s = self.settings
        wall = self._wall()
        for root, age_h, size in ((self.layout.done, s.done_max_age_h, s.done_max_bytes),
                                  (self.layout.failed, s.failed_max_age_h, s.failed_max_bytes),
                                  (self.layout.quarantine, s.quarantine_max_age_h,
                                   s.quarantine_max_bytes)):
            try:
                pruned = retention.prune(root, age_h * HOUR, size, wall)
            except OSError as exc:
                log.error("retention in %s failed: %s", root, exc)
                continue
            if pruned.files:
                self.metrics.count("retention_deleted", pruned.files)
                log.info("retention removed %d files (%d bytes) from %s", pruned.files,
                         pruned.bytes, root)

    def gauges(self) -> Dict[str, Any]:
        return {"in_flight": len(self.in_flight), "inbox_ready": self.intake.ready,
                "inbox_pending": self.intake.pending,
                "inotify": bool(self.watcher is not None and self.watcher.live)}

    def publish_metrics(self) -> Optional[Dict[str, Any]]:
        gauges = self.gauges()
        message = self.metrics.snapshot(
            lambda counts, window_s: {**gauges, "images_published": counts.get("published", 0),
                                      "images_per_s": rate(counts.get("published", 0), window_s)},
            SERIES)
        if not self.settings.metrics_topic:
            return message
        try:
            self._publish(self.settings.metrics_topic, message)
        except Exception as exc:
            log.warning("publishing metrics failed: %s", exc)
        return message
