"""Champion/challenger on the device: a second model scores live images silently.

Only the champion's verdict acts. After a champion result is published, the image the champion
decoded is offered to the challenger's one worker thread (one intra-op thread, a queue of `QUEUE`
images). The thread runs under SCHED_IDLE (nice 19 where that is refused): it gets a core only
when nothing else of the device wants it. When the worker is busy the image is skipped and
counted, so the challenger never holds a champion result back and uses only spare CPU; under a
sustained burst it scores fewer images, never slows the line.

Each pair of results is compared (`compare`): verdicts, detections per class matched greedily
by score at IoU >= 0.5 (both, champion only, challenger only), the score change of matched pairs,
and each model's `session.run` time. `Tally` sums a metrics window. A pair disagrees when the
verdicts differ or any detection is unmatched; the service turns those into review images with
both label sets.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from shared.messages import InspectionResult
from shared.metrics import percentiles

from .model import LoadedModel
from .pipeline import Job, Limits, Outcome, Runner
from .postprocess import box_iou

log = logging.getLogger(__name__)

MATCH_IOU = 0.5
QUEUE = 4
NICE = 19  # when SCHED_IDLE is refused
_STOP = object()


@dataclass(frozen=True)
class Comparison:
    verdict_agrees: bool
    per_class: Dict[str, Tuple[int, int, int]]  # class -> (both, champion only, challenger only)
    score_deltas: Tuple[float, ...]  # challenger minus champion, matched pairs

    @property
    def agrees(self) -> bool:
        return self.verdict_agrees and all(a == 0 and b == 0 for _, a, b in
                                           self.per_class.values())

    def to_dict(self) -> Dict[str, Any]:
        return {"verdict_agrees": self.verdict_agrees,
                "per_class": {k: {"both": v[0], "champion_only": v[1], "challenger_only": v[2]}
                              for k, v in self.per_class.items()},
                "score_deltas": list(self.score_deltas)}


def compare(champion: InspectionResult, challenger: InspectionResult,
            iou: float = MATCH_IOU) -> Comparison:
    """Match each class's detections, highest champion score first, to the unmatched
    challenger detection it overlaps most (IoU >= `iou`)."""
    per_class: Dict[str, Tuple[int, int, int]] = {}
    deltas: List[float] = []
    names = {d.class_name for d in champion.detections} | {d.class_name
                                                          for d in challenger.detections}
    for name in sorted(names):
        ours = sorted((d for d in champion.detections if d.class_name == name),
                      key=lambda d: -d.score)
        theirs = [d for d in challenger.detections if d.class_name == name]
        both = 0
        if ours and theirs:
            overlap = box_iou(np.asarray([d.box for d in ours]),
                              np.asarray([d.box for d in theirs]))
            taken = np.zeros(len(theirs), dtype=bool)
            for i, det in enumerate(ours):
                row = np.where(taken, -1.0, overlap[i])
                j = int(row.argmax())
                if row[j] >= iou:
                    taken[j] = True
                    both += 1
                    deltas.append(round(theirs[j].score - det.score, 5))
        per_class[name] = (both, len(ours) - both, len(theirs) - both)
    return Comparison(champion.verdict == challenger.verdict, per_class, tuple(deltas))


class Tally:
    """One metrics window of comparisons (thread safe); `snapshot` starts the next."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.images = self.agreeing = self.disagreements = self.skipped = 0
        self.per_class: Dict[str, List[int]] = {}
        self.deltas: List[float] = []
        self.champion_ms: List[float] = []
        self.challenger_ms: List[float] = []

    def add(self, cmp: Comparison, champion_ms: float, challenger_ms: float) -> None:
        with self._lock:
            self.images += 1
            self.agreeing += cmp.verdict_agrees
            self.disagreements += not cmp.agrees
            for name, counts in cmp.per_class.items():
                sums = self.per_class.setdefault(name, [0, 0, 0])
                for k in range(3):
                    sums[k] += counts[k]
            self.deltas.extend(cmp.score_deltas)
            self.champion_ms.append(champion_ms)
            self.challenger_ms.append(challenger_ms)

    def skip(self) -> None:
        with self._lock:
            self.skipped += 1

    def snapshot(self, model: Dict[str, str]) -> Dict[str, Any]:
        with self._lock:
            both = sum(v[0] for v in self.per_class.values())
            seen = sum(sum(v) for v in self.per_class.values())
            body = {
                "model": model,
                "images": self.images,
                "skipped": self.skipped,
                "verdict_agreement": round(self.agreeing / self.images, 4) if self.images
                else None,
                # matched / (matched + unmatched of either); 1.0 when neither found anything
                "detection_agreement": (round(both / seen, 4) if seen else 1.0) if self.images
                else None,
                "per_class": {k: {"both": v[0], "champion_only": v[1], "challenger_only": v[2]}
                              for k, v in sorted(self.per_class.items())},
                "score_delta": {**percentiles(self.deltas),
                                "mean": round(float(np.mean(self.deltas)), 5)
                                if self.deltas else 0.0},
                "champion_inference_ms": percentiles(self.champion_ms),
                "challenger_inference_ms": percentiles(self.challenger_ms),
                "disagreements": self.disagreements,
            }
            self._reset()
        return body


def lower_priority() -> str:
    """Put the calling thread below everything else (Linux takes a thread id for these)."""
    tid = threading.get_native_id()
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or refused: try nice
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        return "SCHED_IDLE"
    try:
        os.setpriority(os.PRIO_PROCESS, tid, NICE)
        return f"nice {NICE}"
    except (AttributeError, OSError) as exc:
        log.info("challenger thread keeps normal priority: %s", exc)
        return "normal"


OnCompared = Callable[[InspectionResult, InspectionResult, Comparison, np.ndarray], None]


class Challenger:
    """The challenger's worker: `offer` never blocks; `on_compared` runs on the worker."""

    def __init__(self, model: LoadedModel, on_compared: OnCompared,
                 queue_size: int = QUEUE) -> None:
        self.model = model
        self.runner = Runner(model)
        self.tally = Tally()
        self._on_compared = on_compared
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._loop, name="vqi-challenger", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:  # still busy after `timeout`: a daemon thread, it ends with us
            log.warning("challenger still busy after %gs; not waiting for it", timeout)
            return
        self._thread.join(timeout)

    def offer(self, outcome: Outcome, champion: InspectionResult, limits: Limits,
              build: Callable[[Outcome], InspectionResult]) -> bool:
        """Queue the champion's decoded image for the challenger, or skip it (False)."""
        image = outcome.image
        if image is None:
            return False
        try:
            self._queue.put_nowait((outcome, champion, limits, build))
        except queue.Full:
            self.tally.skip()
            return False
        return True

    def _loop(self) -> None:
        log.info("challenger thread priority: %s", lower_priority())
        buffer = self.runner.new_buffer()
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            outcome, champion, limits, build = item
            try:
                self._score(outcome, champion, limits, build, buffer)
            except Exception:  # a challenger bug must never touch the champion
                log.exception("challenger failed on %s", champion.image_id)

    def _score(self, outcome: Outcome, champion: InspectionResult, limits: Limits,
               build: Callable[[Outcome], InspectionResult], buffer: np.ndarray) -> None:
        image = outcome.image
        assert image is not None
        reduced = outcome.orig_hw if outcome.orig_hw != image.shape[:2] else None
        mine = self.runner.run_image(Job(champion.image_id, champion.path, outcome.job.context),
                                     image, limits, reduced, buffer)
        result = build(mine)
        cmp = compare(champion, result)
        self.tally.add(cmp, champion.timings_ms.get("inference", 0.0),
                       result.timings_ms.get("inference", 0.0))
        self._on_compared(champion, result, cmp, image)
