"""The IPC service: image events in, one inspection result per image id out.

Idempotent by image id: a bounded LRU remembers recent results, and an id seen again is answered
by re-publishing its cached result (an id still in flight is answered when it finishes). Results
for transient read errors (file missing / I/O error) are not cached, so a retry re-reads the file.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import OrderedDict
from dataclasses import asdict
from typing import Any, Dict, Optional, Set

from shared.atomic import unlink_quietly
from shared.component import Idle
from shared.config import ConfigError
from shared.messages import (
    ALERT_RAISED,
    ALERT_WARNING,
    VERDICT_DEFECT,
    Alert,
    ChallengerDisagreement,
    ImageEvent,
    InspectionResult,
    MessageError,
)
from shared.metrics import Window

from . import COMPONENT_NAME, acceptance, annotate, drift, metrics, region, results, settings
from .challenger import Challenger, Comparison
from .decode import TRANSIENT_CODES
from .model import LoadedModel
from .pipeline import Job, Limits, Outcome, Pipeline, Runner
from .throttle import Throttle

log = logging.getLogger(__name__)


class Service(Idle):
    """Wires the pipeline to IPC; `ipc` is shared.ipc.IpcClient (or anything with its methods).
    Run by shared/component.py; the pipeline's threads do the work."""

    def __init__(self, ipc: Any, model: LoadedModel, config: settings.InferenceConfig,
                 thing_name: str, acceptance_dir: Optional[str] = None,
                 component_version: str = "", challenger: Optional[LoadedModel] = None,
                 work_dir: str = "", challenger_problem: str = "") -> None:
        super().__init__()
        self.ipc = ipc
        self.model = model
        self.thing_name = thing_name
        self.component_version = component_version
        self.effective = settings.resolve(config, model.spec)  # ConfigError if it does not fit
        self.started_config = config
        self.provenance = self._provenance(config)
        self.reference: Optional[drift.Reference] = None
        if model.spec.reference is not None:
            try:
                self.reference = drift.Reference.from_json(model.spec.reference)
            except ValueError as exc:
                log.warning("drift alarms off: %s", exc)
        elif config.drift_window:
            log.warning("drift alarms off: model.json has no reference statistics "
                        "(scripts/model reference writes them)")
        self.monitor = self._monitor_for(config)
        self.challenger: Optional[Challenger] = None
        self.challenger_problem = challenger_problem
        self.challenger_effective: Optional[settings.Effective] = None
        if challenger is not None:
            try:
                self.challenger_effective = settings.resolve(config, challenger.spec)
            except ConfigError as exc:
                self.challenger_problem = f"the configuration does not fit the challenger: {exc}"
            else:
                self.challenger = Challenger(challenger, self._on_compared)
        self.disagreement_dir = os.path.join(work_dir, "disagreements") if work_dir else ""
        try:
            self.acceptance: Optional[acceptance.AcceptanceSet] = acceptance.load(acceptance_dir)
            self.acceptance_problem = ""
        except acceptance.AcceptanceError as exc:
            self.acceptance, self.acceptance_problem = None, str(exc)
        self._runner = Runner(model)
        self.metrics = Window(COMPONENT_NAME, thing_name)
        self.throttle = Throttle(log)
        self._lock = threading.Lock()
        self._recent: "OrderedDict[str, InspectionResult]" = OrderedDict()
        self._inflight: Set[str] = set()
        self._stop = threading.Event()
        self._metrics_thread: Optional[threading.Thread] = None
        self.pipeline = Pipeline(
            model, self._limits, self._on_outcome,
            decode_threads=settings.decode_threads(config), prepared_queue=config.prepared_queue,
            pending_queue=config.pending_queue,
            inference_threads=settings.thread_layout(config)[0],
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.gate(self.effective, "start")  # before the first image: AcceptanceError if refused
        self._start_challenger()
        self.pipeline.start()
        self.ipc.subscribe_json(self.started_config.image_topic, self.on_message)
        self._metrics_thread = threading.Thread(target=self._metrics_loop, name="vqi-metrics",
                                                daemon=True)
        self._metrics_thread.start()
        workers, intra = settings.thread_layout(self.started_config)
        log.info("inspecting images from %s with model %s %s (%s), providers %s, "
                 "%d inference thread(s) x %d intra-op thread(s), %d decode thread(s)",
                 self.started_config.image_topic, self.model.spec.name, self.model.spec.version,
                 self.model.spec.sha256[:12], self.model.providers, workers, intra,
                 settings.decode_threads(self.started_config))
        self.ipc.announce_ready(self.started_config.ready_topic, COMPONENT_NAME,
                                self.started_config.image_topic)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the images already accepted, publish their results, stop the threads."""
        self._stop.set()
        self.pipeline.close(timeout)
        if self.challenger is not None:
            self.challenger.stop()
        self._publish_metrics()

    # -- inputs ------------------------------------------------------------------------------
    def _limits(self) -> Limits:
        return self._limits_of(self.effective)

    def _limits_of(self, eff: settings.Effective) -> Limits:
        return Limits(eff.thresholds, eff.config.max_image_bytes, eff.config.max_image_pixels,
                      reduced_jpeg=eff.config.jpeg_reduced_decode,
                      region=region.parse(eff.config.inspection_region),
                      find_part=eff.config.part_finder == "AUTO",
                      input_stats=self.monitor is not None,
                      # the challenger scores the image the champion decoded
                      keep_image=bool(eff.config.annotated_dir) or (
                          self.challenger is not None and eff.config.challenger_rate > 0))

    def _monitor_for(self, config: settings.InferenceConfig) -> Optional[drift.DriftMonitor]:
        if self.reference is None or not config.drift_window:
            return None
        return drift.DriftMonitor(self.reference, settings.drift_settings(config))

    def _provenance(self, config: settings.InferenceConfig) -> Dict[str, str]:
        return {"component_version": self.component_version,
                "config_sha256": settings.fingerprint(config)}

    def on_message(self, payload: Any, topic: str) -> None:
        """Handle one image event (called on the IPC client's threads)."""
        try:
            event = ImageEvent.from_dict(payload)
        except MessageError as exc:
            log.warning("ignoring malformed image event on %s: %s", topic, exc)
            self.metrics.count("bad_events")
            return
        with self._lock:
            cached = self._recent.get(event.image_id)
            if cached is not None:
                self._recent.move_to_end(event.image_id)
            elif event.image_id in self._inflight:
                self.metrics.count("duplicates")
                return
            else:
                self._inflight.add(event.image_id)
        if cached is not None:
            self.metrics.count("duplicates")
            log.info("image %s seen before; re-publishing its result", event.image_id)
            self._publish(cached)
            return
        self.pipeline.submit(Job(event.image_id, event.path, event))

    def reconfigure(self, raw: Dict[str, Any]) -> None:
        """Apply a live configuration update, or raise ConfigError and keep the previous one."""
        config = settings.parse(raw)
        effective = settings.resolve(config, self.model.spec)
        if self._verdict_inputs(effective) != self._verdict_inputs(self.effective):
            self.gate(effective, "configuration")  # AcceptanceError keeps the previous one
        if self.challenger is not None:
            try:
                self.challenger_effective = settings.resolve(config, self.challenger.model.spec)
            except ConfigError as exc:
                self._drop_challenger(f"the configuration does not fit the challenger: {exc}")
        if settings.drift_settings(config) != settings.drift_settings(self.effective.config):
            old, self.monitor = self.monitor, self._monitor_for(config)  # a new window
            if old is not None and self.monitor is not None:
                self.monitor.raised = dict(old.raised)  # a raised alarm still gets its CLEARED
        self.provenance = self._provenance(config)
        self.effective = effective
        pending = settings.restart_needed(self.started_config, config)
        if pending:
            log.warning("configuration keys %s take effect after a restart", pending)
        log.info("configuration updated")

    # -- the golden-sample gate ---------------------------------------------------------------
    def _verdict_inputs(self, eff: settings.Effective) -> Any:
        """Everything a configuration update can change about a verdict (and the gate's policy)."""
        limits = self._limits_of(eff)
        return (eff.thresholds, eff.thresholds.per_class.tolist(), eff.rules, limits.region,
                limits.find_part, limits.reduced_jpeg, limits.max_bytes, limits.max_pixels,
                eff.config.acceptance_policy)

    def gate(self, eff: settings.Effective, trigger: str,
             challenger: bool = False) -> Optional[acceptance.Report]:
        """Run the acceptance set with `eff` as live images would be run. REQUIRE: a failure
        raises AcceptanceError (at start the component does not become RUNNING; on an update
        the previous configuration stays); WARN: an alert and go on; OFF: skipped.
        `challenger`: check the challenger model the same way (its caller decides)."""
        policy = eff.config.acceptance_policy
        runner = self.challenger.runner if challenger and self.challenger else self._runner
        spec = runner.model.spec
        if policy == "OFF":
            return None
        if self.acceptance is None:
            if policy == "REQUIRE":
                raise acceptance.AcceptanceError(f"{self.acceptance_problem} (AcceptancePolicy "
                                                 "REQUIRE; WARN or OFF would go without)")
            self._alert("acceptance", ALERT_WARNING, f"model {spec.name} {spec.version} "
                        f"not checked: {self.acceptance_problem}",
                        {"policy": policy, "trigger": trigger})
            return None
        report = acceptance.run(
            self.acceptance, runner.run_one, self._limits_of(eff),
            lambda outcome: results.build(outcome, spec, eff.rules, self.thing_name,
                                          self.provenance))
        what = (f"{'challenger' if challenger else 'model'} {spec.name} {spec.version} "
                f"({spec.sha256[:12]})")
        if report.passed:
            log.info("acceptance set passed (%s): %s, %d samples in %.0f ms", trigger, what,
                     report.samples, report.elapsed_ms)
            return report
        for failure in report.failures:
            log.error("acceptance sample failed: %s", failure)
        message = (f"{what} fails {len(report.failures)} of {report.samples} acceptance "
                   f"samples in {self.acceptance.folder}")
        details = {**acceptance.summary(report), "policy": policy, "trigger": trigger,
                   "role": "challenger" if challenger else "champion"}
        if policy == "REQUIRE":
            self._alert("acceptance", ALERT_RAISED, message + "; refused", details)
            raise acceptance.AcceptanceError(
                message + (f"; refused (AcceptancePolicy REQUIRE), not "
                           f"{'scoring' if challenger else 'inspecting'} with it"
                           if trigger == "start" else
                           "; the configuration update is refused (AcceptancePolicy REQUIRE)"))
        log.warning("%s; used anyway (AcceptancePolicy WARN)", message)
        self._alert("acceptance", ALERT_WARNING, message + "; used anyway (AcceptancePolicy WARN)",
                    details)
        return report

    # -- champion/challenger -----------------------------------------------------------------
    def _start_challenger(self) -> None:
        if self.challenger_problem:
            log.error("no challenger: %s", self.challenger_problem)
            self._alert("challenger", ALERT_WARNING, f"challenger not used: "
                        f"{self.challenger_problem}", {})
        if self.challenger is None or self.challenger_effective is None:
            return
        try:
            self.gate(self.challenger_effective, "start", challenger=True)
        except acceptance.AcceptanceError as exc:
            self._drop_challenger(str(exc))
            return
        self.challenger.start()
        spec = self.challenger.model.spec
        log.info("challenger %s %s (%s) scores %.0f%% of images", spec.name, spec.version,
                 spec.sha256[:12], self.effective.config.challenger_rate * 100)

    def _drop_challenger(self, why: str) -> None:
        """The champion goes on alone; said once in the log and on the alerts topic."""
        challenger, self.challenger = self.challenger, None
        if challenger is None:
            return
        log.error("challenger not used: %s", why)
        self._alert("challenger", ALERT_WARNING, f"challenger not used: {why}", {})
        challenger.stop(timeout=1.0)

    def _challenger_limits(self) -> Limits:
        eff = self.challenger_effective
        assert eff is not None
        return Limits(eff.thresholds, region=region.parse(eff.config.inspection_region),
                      find_part=eff.config.part_finder == "AUTO")

    def _challenger_result(self, outcome: Outcome) -> InspectionResult:
        challenger, eff = self.challenger, self.challenger_effective
        assert challenger is not None and eff is not None
        return results.build(outcome, challenger.model.spec, eff.rules, self.thing_name,
                             self.provenance)

    def _on_compared(self, champion: InspectionResult, challenger: InspectionResult,
                     cmp: Comparison, image: Any) -> None:
        """The challenger's worker: a disagreement becomes a review image with both labels."""
        config = self.effective.config
        if cmp.agrees or not config.challenger_topic or not self.disagreement_dir:
            return
        path = os.path.join(self.disagreement_dir, annotate.file_name(champion.image_id))
        try:
            os.makedirs(self.disagreement_dir, exist_ok=True)
            if self._kept_disagreements() >= config.max_disagreement_images:
                self.metrics.count("disagreements_dropped")  # the Uploader is behind
                return
            annotate.write_jpeg(path, image)
        except (OSError, ValueError) as exc:
            self.metrics.count("disagreements_dropped")
            log.warning("cannot keep disagreement image %s: %s", champion.image_id, exc)
            return
        message = ChallengerDisagreement(
            image_id=champion.image_id, image_path=path, champion=champion.to_dict(),
            challenger=challenger.to_dict(), comparison=cmp.to_dict(),
            thing_name=self.thing_name).to_dict()
        try:
            self.ipc.publish_json(config.challenger_topic, message)
        except Exception as exc:
            unlink_quietly(path)
            log.warning("cannot publish disagreement for %s: %s", champion.image_id, exc)

    def _kept_disagreements(self, stale_s: float = 600.0) -> int:
        """How many disagreement images wait for the Uploader; ones older than `stale_s`
        (their message lost: the Uploader was restarting, or is not subscribed) are deleted."""
        now = time.time()
        waiting = 0
        with os.scandir(self.disagreement_dir) as entries:
            for entry in entries:
                try:
                    if now - entry.stat().st_mtime > stale_s:
                        unlink_quietly(entry.path)
                    else:
                        waiting += 1
                except OSError:
                    continue
        return waiting

    def _alert(self, kind: str, state: str, message: str, details: Dict[str, Any]) -> None:
        eff = self.effective
        alert = Alert(kind=kind, state=state, component=COMPONENT_NAME, message=message,
                      model=results.model_info(self.model.spec), details=details,
                      thing_name=self.thing_name).to_dict()
        try:
            if eff.config.alert_topic:
                self.ipc.publish_json(eff.config.alert_topic, alert)
        except Exception as exc:
            log.warning("cannot publish alert: %s", exc)
        self._to_iot_core(eff.config.iot_core_alert_topic, alert)

    # -- outputs -----------------------------------------------------------------------------
    def _on_outcome(self, outcome: Outcome) -> None:
        eff = self.effective
        result = results.build(outcome, self.model.spec, eff.rules, self.thing_name,
                               self.provenance)
        if (result.verdict == VERDICT_DEFECT and eff.config.annotated_dir
                and outcome.image is not None):
            try:
                annotate.write(eff.config.annotated_dir, outcome.image, result)
            except Exception as exc:
                log.warning("cannot write annotated image for %s: %s", result.image_id, exc)
        code = outcome.error.code if outcome.error is not None else None
        with self._lock:
            self._inflight.discard(result.image_id)
            if code not in TRANSIENT_CODES:
                self._recent[result.image_id] = result
                while len(self._recent) > eff.config.recent_ids:
                    self._recent.popitem(last=False)
        metrics.record(self.metrics, result.verdict, result.timings_ms, result.error)
        if result.error:
            log.warning("image %s (%s): %s", result.image_id, result.path, result.error)
        self._publish(result)
        challenger = self.challenger
        if (challenger is not None and not result.error and outcome.image is not None
                and random.random() < eff.config.challenger_rate):
            challenger.offer(outcome, result, self._challenger_limits(), self._challenger_result)
        monitor = self.monitor
        if monitor is not None and not result.error:
            for state, finding in monitor.observe(result.verdict, result.top_score,
                                                  outcome.input_stats):
                log.warning("alarm %s %s: %s", finding.kind, state, finding.message)
                self._alert(finding.kind, state, finding.message, finding.details)

    def _publish(self, result: InspectionResult) -> None:
        eff = self.effective
        message = result.to_dict()
        try:
            self.ipc.publish_json(eff.config.result_topic, message)
        except Exception as exc:
            self.metrics.count("publish_failures")
            log.error("cannot publish result for %s: %s", result.image_id, exc)
        policy = eff.config.iot_core_policy
        if policy == "ALL" or (policy == "DEFECTS" and result.verdict == VERDICT_DEFECT):
            self._to_iot_core(eff.config.iot_core_topic, message)

    def _publish_metrics(self) -> Dict[str, Any]:
        eff = self.effective
        message = metrics.snapshot(self.metrics, self.pipeline.pending)
        challenger = self.challenger
        if challenger is not None:
            message["challenger"] = challenger.tally.snapshot(
                asdict(results.model_info(challenger.model.spec)))
        try:
            if eff.config.metrics_topic:
                self.ipc.publish_json(eff.config.metrics_topic, message)
        except Exception as exc:
            log.warning("cannot publish metrics: %s", exc)
        self._to_iot_core(eff.config.iot_core_metrics_topic, message)
        if challenger is not None:  # the challenger's record, to the cloud (report command)
            self._to_iot_core(eff.config.iot_core_challenger_topic, {
                key: message[key] for key in ("schema_version", "component", "thing_name",
                                              "time", "window_s", "challenger")
                if key in message} | {"champion": asdict(results.model_info(self.model.spec))})
        return message

    def _to_iot_core(self, template: str, message: Dict[str, Any]) -> None:
        """Publish to IoT Core under `template` ({thing} filled in; "" = not sent)."""
        topic = settings.iot_topic(template, self.thing_name)
        if not topic:
            return
        try:
            self.ipc.publish_iot_core(topic, message, self.effective.config.iot_core_qos)
        except Exception as exc:
            self._iot_core_failed(topic, exc)

    def _iot_core_failed(self, topic: str, exc: Exception) -> None:
        """Counted in metrics and logged as an error, at most once a minute per topic and cause."""
        refused = type(exc).__name__ == "UnauthorizedError"
        self.metrics.count("iot_core_refused" if refused else "publish_failures")
        if refused:
            self.throttle.error(
                f"refused:{topic}", "IoT Core refused publishing to %s (UnauthorizedError): the "
                "recipe's accessControl aws.greengrass.ipc.mqttproxy must allow this topic "
                "(a default nucleus does not interpolate {iot:thingName} there); messages to "
                "it are dropped", topic)
        else:
            self.throttle.error(f"failed:{topic}", "cannot publish to IoT Core topic %s: %s",
                                topic, exc)

    def _metrics_loop(self) -> None:
        while not self._stop.wait(self.effective.config.metrics_interval_s):
            self._publish_metrics()
