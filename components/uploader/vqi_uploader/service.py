"""The uploader service: results in, Stream Manager out, `archived` confirmations back.

For each result (in arrival order, on one worker thread):
1. a result already handled (same image id) is only confirmed again: nothing is exported twice;
2. a review image is staged (hard link or copy) with its YOLO labels and result JSON;
3. the result is appended to the results stream (durable in Stream Manager from here on);
4. one S3 export task per staged file is appended to the export task stream;
5. the image id is recorded and `vqi/archived` carries the result plus an `archive` object, which
   tells ImageSource that it may complete the image.
A champion/challenger disagreement (from Inference, on ChallengerTopic) goes through the same
worker: its image and both label sets are staged under `<prefix>/disagreement/...` and exported;
nothing is confirmed for it (no camera image waits on it), and the image Inference kept for it
is deleted once staged. Operator feedback (from the Dashboard, on FeedbackTopic) goes the same
way: the Dashboard's copy of the image with the model's pre-label and the operator's label under
`<prefix>/feedback/...`.
A second thread reads the export status stream (see status.py) and resubmits due retries.
If Stream Manager is unreachable, the worker waits with backoff and nothing is confirmed, so
ImageSource redelivers; nothing is lost.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from typing import Any, Dict, Optional, Tuple

from stream_manager import ReadMessagesOptions
from stream_manager.exceptions import NotEnoughMessagesException

from shared.atomic import unlink_quietly
from shared.component import Idle
from shared.messages import ChallengerDisagreement, Feedback, InspectionResult, MessageError
from shared.metrics import Window

from . import COMPONENT_NAME, labels, selection, streams
from .journal import HandledIds, OffsetFile
from .keys import disagreement_keys, feedback_keys, review_keys
from .settings import UploaderConfig, parse
from .smlink import Stopped, StreamManagerLink
from .staging import Staging, url_path
from .status import (
    OUTCOME_EXPORTED,
    OUTCOME_FAILED,
    OUTCOME_RETRY,
    ExportTracker,
    parse_status,
    task_payload,
)

log = logging.getLogger(__name__)

QUEUE_LIMIT = 1000
STATUS_BATCH = 50
STATUS_WAIT_MS = 1000
# After a short batch, statuses are left to gather for this long: they only free staged files, and
# one read per batch instead of one per status is most of the uploader's CPU under a burst.
STATUS_GATHER_S = 0.25
SERIES = ("handle",)  # one result: from the worker taking it to its confirmation


FEEDBACK_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def kept_folders(kernel_root: str) -> Dict[str, str]:
    """The only folders whose images the Uploader stages and then deletes: Inference's
    `disagreements` and the Dashboard's `feedback`, in their work folders under the nucleus root
    (`{kernel:rootPath}/work/<component>`, as NucleusPaths lays them out). A path from a message
    is never trusted further than that (accessControl lets only those components publish there,
    but a message names files). None without the root (not interpolated)."""
    if not kernel_root or "{" in kernel_root or not os.path.isabs(kernel_root):
        return {}
    work = os.path.join(os.path.realpath(kernel_root), "work")
    return {"disagreement": os.path.join(work, "com.example.vqi.Inference", "disagreements"),
            "feedback": os.path.join(work, "com.example.vqi.Dashboard", "feedback")}


def kept_for_us(path: str, folder: str, suffixes: Tuple[str, ...]) -> bool:
    """`path` is an image directly in `folder`, with no symlink anywhere on the way."""
    return (bool(folder) and os.path.isabs(path) and os.path.dirname(path) == folder
            and path.lower().endswith(suffixes) and os.path.normpath(path) == path
            and os.path.realpath(path) == path)


def append(link: StreamManagerLink, stream: str, data: bytes) -> int:
    """Append through reconnects; returns the message's sequence number."""
    return link.call(lambda c: c.append_message(stream, data))


def rules_of(cfg: UploaderConfig) -> selection.SelectionRules:
    return selection.SelectionRules(
        review_defects=cfg.review_defects,
        uncertainty_low=cfg.uncertainty_low,
        uncertainty_high=cfg.uncertainty_high,
        ok_sample_rate=cfg.ok_sample_rate,
        seed=cfg.sample_seed,
    )


class Uploader(Idle):
    """Run by shared/component.py; the worker, status and metrics threads do the work."""

    def __init__(self, cfg: UploaderConfig, ipc: Any, work_dir: str, thing_name: str = "",
                 kernel_root: str = "") -> None:
        super().__init__()
        self.cfg = cfg
        self.kept = kept_folders(kernel_root)
        self.rules = rules_of(cfg)
        self.ipc = ipc
        self.thing_name = cfg.thing_name or thing_name or "unknown-thing"
        state = os.path.join(work_dir, "state")
        self.staging = Staging(cfg.staging_dir or os.path.join(work_dir, "staging"))
        # Journals are flushed on every write but not fsynced: a power cut may forget the last
        # few entries, which costs at most a duplicate export (delivery is at least once), while
        # an fsync per result would halve the throughput.
        self.handled = HandledIds(os.path.join(state, "handled.jsonl"), cfg.handled_ids_max,
                                  sync=False)
        self.tracker = ExportTracker(
            os.path.join(state, "exports.jsonl"), self.staging, cfg.export_retry_limit,
            cfg.export_retry_base_s, cfg.export_retry_max_s, sync=False,
        )
        self.status_offset = OffsetFile(os.path.join(state, "status.offset"))
        self.stop_event = threading.Event()
        self.queue: "queue.Queue[Tuple[str, Dict[str, Any]]]" = queue.Queue(QUEUE_LIMIT)
        self.metrics = Window(COMPONENT_NAME, self.thing_name)
        self._config_lock = threading.Lock()
        self._ensure_lock = threading.Lock()
        self._status_stream_new = threading.Event()
        self.results_link = self._link("results")
        self.status_link = self._link("status")
        self._threads: list = []

    def _link(self, name: str) -> StreamManagerLink:
        return StreamManagerLink(
            name, self.stop_event, self._ensure_streams, self.cfg.request_timeout_s,
            self.cfg.reconnect_max_s,
        )

    def _ensure_streams(self, client: Any) -> None:
        with self._ensure_lock:  # both links connect at start; create each stream once
            created = streams.ensure_streams(client, self.cfg)
        if self.cfg.status_stream in created:
            self._status_stream_new.set()
        if {self.cfg.export_stream, self.cfg.status_stream} & set(created):
            again = self.tracker.requeue_pending()
            if again:
                log.warning("export streams were created anew; %d pending tasks resubmitted",
                            again)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        again = self.tracker.retry_failed_again()
        if again:
            log.info("%d staged files that failed before are retried once more", again)
        for target, name in ((self._work, "results"), (self._status_loop, "status"),
                             (self._metrics_loop, "metrics")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.ipc.subscribe_json(self.cfg.result_topic, self.on_result)
        if self.cfg.challenger_topic:
            self.ipc.subscribe_json(self.cfg.challenger_topic, self.on_disagreement)
        if self.cfg.feedback_topic:
            self.ipc.subscribe_json(self.cfg.feedback_topic, self.on_feedback)
        log.info("uploader started: results %s -> stream %s (Kinesis %s), review images -> %s",
                 self.cfg.result_topic, self.cfg.results_stream,
                 self.cfg.kinesis_stream if self.cfg.kinesis_enabled else "off",
                 f"s3://{self.cfg.s3_bucket}/{self.cfg.s3_prefix}" if self.cfg.review_enabled
                 else "off (S3Bucket not set)")
        self.ipc.announce_ready(self.cfg.ready_topic, COMPONENT_NAME, self.cfg.result_topic)

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout)
        self.results_link.close()
        self.status_link.close()
        self.handled.close()
        self.tracker.close()

    # -- IPC handlers --------------------------------------------------------------------------
    def on_result(self, message: Any, topic: str) -> None:
        """IPC thread: check and queue; the worker does the slow part."""
        self.metrics.count("results_received")
        try:
            InspectionResult.from_dict(message)
        except (MessageError, TypeError, ValueError) as exc:
            self.metrics.count("invalid")
            log.error("ignored a bad result on %s: %s", topic, exc)
            return
        try:
            self.queue.put_nowait(("result", message))
        except queue.Full:
            # Safe to drop: unconfirmed images are redelivered by ImageSource.
            self.metrics.count("dropped_queue_full")
            log.warning("result queue full; %s will be redelivered", message.get("image_id"))

    def on_disagreement(self, message: Any, topic: str) -> None:
        """IPC thread: a challenger disagreement to send for review (dropped when the queue is
        full: it is a sample, not a result)."""
        try:
            ChallengerDisagreement.from_dict(message)
        except (MessageError, TypeError, ValueError) as exc:
            self.metrics.count("invalid")
            log.error("ignored a bad disagreement on %s: %s", topic, exc)
            return
        try:
            self.queue.put_nowait(("disagreement", message))
        except queue.Full:
            self.metrics.count("disagreements_dropped")
            self._discard(message)

    def on_feedback(self, message: Any, topic: str) -> None:
        """IPC thread: an operator's judgement to send with its image (a person's work: it
        waits for room in the queue rather than being dropped)."""
        try:
            Feedback.from_dict(message)
        except (MessageError, TypeError, ValueError) as exc:
            self.metrics.count("invalid")
            log.error("ignored a bad feedback on %s: %s", topic, exc)
            return
        try:
            self.queue.put(("feedback", message), timeout=5.0)
        except queue.Full:
            self.metrics.count("feedback_dropped")
            log.error("feedback %s dropped: the queue stayed full", message.get("feedback_id"))

    def reconfigure(self, raw: Dict[str, Any]) -> None:
        """Apply a live configuration update, or raise ConfigError and keep the previous one."""
        new = parse(raw)
        with self._config_lock:
            if new.result_topic != self.cfg.result_topic:
                log.warning("ResultTopic change takes effect after a restart")
            self.cfg = new
            self.rules = rules_of(new)
            self.tracker.retry_limit = new.export_retry_limit
            self.tracker.retry_base_s = new.export_retry_base_s
            self.tracker.retry_max_s = new.export_retry_max_s
            self.results_link.ensure_needed = True  # streams updated before the next append
        log.info("configuration updated")

    # -- results -------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self.stop_event.is_set():
            try:
                kind, message = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            started = time.monotonic()
            try:
                if kind == "disagreement":
                    try:
                        self.handle_disagreement(message)
                    except Stopped:
                        raise
                    except Exception:  # a sample, not a result: nothing redelivers it
                        log.exception("disagreement %s not sent", message.get("image_id"))
                        self._discard(message)
                    continue
                if kind == "feedback":
                    try:
                        self.handle_feedback(message)
                    except Stopped:
                        raise
                    except Exception:  # the Dashboard keeps it in its history
                        log.exception("feedback %s not sent", message.get("feedback_id"))
                    continue
                self.handle(message)
                self.metrics.sample("handle", (time.monotonic() - started) * 1000.0)
            except Stopped:
                return
            except Exception:
                log.exception("result %s not handled; it will be redelivered",
                              message.get("image_id"))

    def handle(self, message: Dict[str, Any]) -> Dict[str, Any]:
        """Send one result; returns the archive record published with the confirmation."""
        result = InspectionResult.from_dict(message)
        cfg, rules = self.cfg, self.rules
        known = self.handled.get(result.image_id)
        if known is not None:
            self.metrics.count("duplicates")
            self._confirm(message, {**known, "duplicate": True})
            return known
        payload = dict(message)
        if not payload.get("thing_name"):
            payload["thing_name"] = self.thing_name
        thing = payload["thing_name"]
        archive: Dict[str, Any] = {"review": False, "reason": None, "s3_key": None}

        entries: list = []
        reason = selection.review_reason(result, rules) if cfg.review_enabled else None
        if reason is not None:
            keys = review_keys(cfg.s3_prefix, result.time, thing, result.verdict,
                               result.image_id, result.path)
            result_text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
            label_text = labels.yolo_labels(result.detections, result.image_width,
                                            result.image_height)
            try:
                staged = self.staging.stage(result.image_id, result.path, keys.image, label_text,
                                            keys.labels, result_text, keys.result)
            except FileNotFoundError:
                self.metrics.count("review_missing_image")
                log.warning("image %s for review is gone (%s); result sent without it",
                            result.image_id, result.path)
                archive["error"] = "image missing"
            else:
                metadata = {"vqi-image-id": result.image_id, "vqi-verdict": result.verdict,
                            "vqi-reason": reason, "vqi-thing": thing}
                entries = self.tracker.new_entries(staged, cfg.s3_bucket, result.image_id,
                                                   metadata)
                archive.update(review=True, reason=reason, s3_key=keys.image,
                               s3_bucket=cfg.s3_bucket)
        # Tasks are built (and validated) before anything is appended, so a bad task can never
        # leave a result appended but unconfirmed, to be appended again on every redelivery.
        tasks = [task_payload(entry) for entry in entries]

        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        archive["result_sequence"] = append(self.results_link, cfg.results_stream, data)
        self.metrics.count("results_appended")
        if entries:
            self.tracker.record(entries)
            for task in tasks:
                append(self.results_link, cfg.export_stream, task)
            self.metrics.count("review_staged")
        self.handled.add(result.image_id, archive)
        self._confirm(message, archive)
        return archive

    def handle_disagreement(self, message: Dict[str, Any]) -> Optional[str]:
        """Stage and export one disagreement; returns its image's S3 key (None if not sent)."""
        item = ChallengerDisagreement.from_dict(message)
        cfg = self.cfg
        handled_id = f"challenger:{item.image_id}"
        source = item.image_path
        if not self._kept(source, "disagreement", (".jpg",)):
            self.metrics.count("invalid")
            log.error("disagreement %s names %s, which is not an image Inference kept for "
                      "review; ignored", item.image_id, source)
            return None
        if self.handled.get(handled_id) is not None or not cfg.review_enabled:
            unlink_quietly(source)
            return None
        champion = InspectionResult.from_dict(item.champion)
        challenger = InspectionResult.from_dict(item.challenger)
        thing = item.thing_name or self.thing_name
        keys = disagreement_keys(cfg.s3_prefix, item.time, thing, item.image_id)
        sidecars = [
            (labels.yolo_labels(champion.detections, champion.image_width,
                                champion.image_height), keys["champion"]),
            (labels.yolo_labels(challenger.detections, challenger.image_width,
                                challenger.image_height), keys["challenger"]),
            (json.dumps(message, separators=(",", ":"), ensure_ascii=False), keys["json"]),
        ]
        metadata = {"vqi-image-id": item.image_id, "vqi-reason": "disagreement",
                    "vqi-thing": thing, "vqi-champion": champion.verdict,
                    "vqi-challenger": challenger.verdict}
        sent = self._send_kept(handled_id, source, keys["image"], sidecars, metadata)
        if sent:
            self.metrics.count("disagreements_staged")
        return sent

    def handle_feedback(self, message: Dict[str, Any]) -> Optional[str]:
        """Stage and export one operator feedback; returns its image's S3 key (None if not
        sent). The copy the Dashboard made is deleted once staged (or when it cannot be)."""
        item = Feedback.from_dict(message)
        cfg = self.cfg
        source = item.image_path
        if not self._kept(source, "feedback", FEEDBACK_SUFFIXES):
            self.metrics.count("invalid")
            log.error("feedback %s names %s, which is not an image the Dashboard kept for "
                      "feedback; ignored", item.feedback_id, source)
            return None
        handled_id = f"feedback:{item.feedback_id}"
        if self.handled.get(handled_id) is not None or not cfg.review_enabled:
            if not cfg.review_enabled:
                log.warning("feedback %s not sent: S3Bucket is not set", item.feedback_id)
            unlink_quietly(source)
            return None
        result = InspectionResult.from_dict(item.result)
        thing = item.thing_name or self.thing_name
        keys = feedback_keys(cfg.s3_prefix, result.time, thing, item.image_id,
                             os.path.splitext(source)[1])
        sidecars = [
            (labels.yolo_labels(result.detections, result.image_width, result.image_height),
             keys["prelabel"]),
            (labels.operator_labels(item), keys["label"]),
            (json.dumps(message, separators=(",", ":"), ensure_ascii=False), keys["json"]),
        ]
        metadata = {"vqi-image-id": item.image_id, "vqi-reason": "feedback",
                    "vqi-thing": thing, "vqi-label": item.label, "vqi-verdict": result.verdict}
        sent = self._send_kept(handled_id, source, keys["image"], sidecars, metadata)
        if sent:
            self.metrics.count("feedback_staged")
        return sent

    def _send_kept(self, handled_id: str, source: str, image_key: str,
                   sidecars: list, metadata: Dict[str, str]) -> Optional[str]:
        """Stage an image another component kept for us (and its sidecars), export them,
        remember `handled_id`, delete the kept image; the image's key, None if it is gone."""
        cfg = self.cfg
        try:
            staged = self.staging.stage_files(handled_id, source, image_key, sidecars)
        except FileNotFoundError:
            self.metrics.count("review_missing_image")
            log.warning("%s image is gone (%s)", handled_id, source)
            return None
        entries = self.tracker.new_entries(staged, cfg.s3_bucket, handled_id, metadata)
        tasks = [task_payload(entry) for entry in entries]
        self.tracker.record(entries)
        for task in tasks:
            append(self.results_link, cfg.export_stream, task)
        self.handled.add(handled_id, {"review": True, "reason": metadata["vqi-reason"],
                                      "s3_key": image_key, "s3_bucket": cfg.s3_bucket})
        unlink_quietly(source)  # the staged copy is ours now
        return image_key

    def _kept(self, path: str, kind: str, suffixes: Tuple[str, ...]) -> bool:
        if not self.kept:
            log.error("VQI_KERNEL_ROOT is not set (the recipe sets it to {kernel:rootPath}): "
                      "no %s image can be trusted", kind)
            return False
        return kept_for_us(path, self.kept[kind], suffixes)

    def _discard(self, message: Dict[str, Any]) -> None:
        """Delete the image Inference kept for a disagreement that will not be sent."""
        path = message.get("image_path")
        if isinstance(path, str) and self._kept(path, "disagreement", (".jpg",)):
            unlink_quietly(path)

    def _confirm(self, message: Dict[str, Any], archive: Dict[str, Any]) -> None:
        try:
            self.ipc.publish_json(self.cfg.archived_topic, {**message, "archive": archive})
        except Exception as exc:  # ImageSource redelivers; the duplicate is confirmed again
            log.warning("could not publish %s confirmation: %s", self.cfg.archived_topic, exc)

    # -- export status -------------------------------------------------------------------------
    def _status_loop(self) -> None:
        offset = self.status_offset.load()
        idle = 0
        while not self.stop_event.is_set():
            try:
                self._resubmit_due()
                options = ReadMessagesOptions(
                    desired_start_sequence_number=offset, min_message_count=1,
                    max_message_count=STATUS_BATCH, read_timeout_millis=STATUS_WAIT_MS,
                )
                name = self.cfg.status_stream
                try:
                    messages = self.status_link.call(
                        lambda c, n=name, o=options: c.read_messages(n, o),
                        passthrough=(NotEnoughMessagesException,),
                    )
                except NotEnoughMessagesException:
                    messages = []
                if self._status_stream_new.is_set():
                    # We (re)created the status stream: it numbers from 0 again.
                    self._status_stream_new.clear()
                    offset = 0
                    self.status_offset.save(0)
                    continue
                if not messages:
                    idle += 1
                    if idle % 5 == 0:
                        offset = self._check_offset(offset)
                    continue
                idle = 0
                for message in messages:
                    self._on_status_message(message.payload)
                    offset = message.sequence_number + 1
                self.status_offset.save(offset)
                if len(messages) < STATUS_BATCH:
                    self.stop_event.wait(STATUS_GATHER_S)
            except Stopped:
                return
            except Exception:
                log.exception("status loop error; continuing")
                self.stop_event.wait(1.0)

    def _check_offset(self, offset: int) -> int:
        """A recreated status stream starts again at 0: follow it instead of waiting forever."""
        name = self.cfg.status_stream
        info = self.status_link.call(lambda c: c.describe_message_stream(name))
        status = info.storage_status
        newest = status.newest_sequence_number if status else None
        newest = -1 if newest is None else newest
        if newest + 1 < offset:
            log.warning("status stream %s restarted at %s; reading from its start", name, newest)
            self.status_offset.save(0)
            return 0
        return offset

    def _on_status_message(self, payload: bytes) -> None:
        try:
            status = parse_status(payload)
        except Exception as exc:
            log.error("unreadable status message skipped: %s", exc)
            return
        outcome = self.tracker.on_status(status)
        if outcome == OUTCOME_EXPORTED:
            self.metrics.count("exports_succeeded")
        elif outcome == OUTCOME_RETRY:
            self.metrics.count("exports_retried")
        elif outcome == OUTCOME_FAILED:
            self.metrics.count("exports_failed")

    def _resubmit_due(self) -> None:
        for entry in self.tracker.due():
            if not os.path.exists(url_path(entry["url"])):
                self.tracker.forget_missing(entry["url"])
                continue
            append(self.status_link, self.cfg.export_stream, task_payload(entry))
            self.tracker.resubmitted(entry["url"])

    # -- metrics -------------------------------------------------------------------------------
    def snapshot(self) -> Dict[str, Any]:
        """The metrics message (shared/metrics.py envelope) for the window since the last one."""
        exports = self.tracker.counts()
        gauges = {"queue_depth": self.queue.qsize(), "exports_pending": exports["pending"],
                  "exports_retrying": exports["retry"], "exports_failed_kept": exports["failed"]}
        return self.metrics.snapshot(lambda counts, window_s: gauges, SERIES)

    def _metrics_loop(self) -> None:
        last: Optional[float] = None
        while not self.stop_event.wait(1.0):
            now = time.monotonic()
            if last is None:
                last = now
            if now - last < self.cfg.metrics_interval_s or not self.cfg.metrics_topic:
                continue
            last = now
            try:
                self.ipc.publish_json(self.cfg.metrics_topic, self.snapshot())
            except Exception as exc:
                log.warning("metrics not published: %s", exc)
