"""Image path -> detections, with decoding overlapped with model execution.

Stages run on their own threads: decode workers (read, decode, letterbox, normalise into a pooled
input buffer), one or more inference threads (session.run only, which releases the GIL; the
count comes from settings.thread_layout), and one finishing thread (NMS, scaling, callback).
A fixed pool of input buffers and bounded queues keep memory flat under a burst: when the model
falls behind, decode workers wait for a free buffer and submit() blocks once MaxPendingEvents
jobs are waiting.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from . import decode, imagestats, letterbox, postprocess, preprocess, region
from .model import LoadedModel
from .postprocess import Detections, Thresholds

log = logging.getLogger(__name__)

_STOP = object()


@dataclass
class Job:
    """One image to inspect; `context` is carried through untouched (e.g. the ImageEvent)."""

    image_id: str
    path: str
    context: Any = None
    received: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class Limits:
    """Per-image settings read when an image starts (live-updatable)."""

    thresholds: Thresholds
    max_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 50_000_000
    keep_image: bool = False  # keep the decoded original for annotation
    reduced_jpeg: bool = False  # decode large JPEGs at 1/2..1/8 scale (faster, not bit-exact)
    region: Optional[region.Region] = None  # InspectionRegion; None = the whole frame
    find_part: bool = False  # PartFinder AUTO: cut each frame to the part found in it
    input_stats: bool = False  # measure brightness/contrast/sharpness (drift monitoring)


@dataclass(frozen=True)
class Failure:
    """Why an image has no detections: a decode error code (decode.py), or inference_error /
    internal_error for the model or a bug; `code: detail` is the result's error text."""

    code: str
    detail: str

    @classmethod
    def of(cls, error: decode.ImageError) -> "Failure":
        return cls(error.code, error.detail)

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


INFERENCE_ERROR = "inference_error"
INTERNAL_ERROR = "internal_error"


@dataclass
class Outcome:
    job: Job
    detections: Optional[Detections] = None
    orig_hw: Optional[Tuple[int, int]] = None
    error: Optional[Failure] = None
    image: Optional[np.ndarray] = None
    timings_ms: Dict[str, float] = field(default_factory=dict)
    input_stats: Optional[imagestats.ImageStats] = None


@dataclass
class _Prepared:
    job: Job
    limits: Limits
    buffer: np.ndarray
    box: letterbox.Letterbox
    image: Optional[np.ndarray]
    timings: Dict[str, float]
    ready_at: float = 0.0
    raw: Optional[np.ndarray] = None
    orig_hw: Optional[Tuple[int, int]] = None  # when the image was decoded at reduced scale
    crop: Optional[region.Pixels] = None  # the inspection region, in decoded pixels
    frame_hw: Optional[Tuple[int, int]] = None  # the decoded frame, when cropped
    input_stats: Optional[imagestats.ImageStats] = None


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000.0, 3)


class Runner:
    """The stages as plain functions over one model; shared by the threaded and serial paths."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        spec = model.spec
        self.input_name = spec.input_name
        self.output_name = spec.output_name
        self.dtype = np.float16 if spec.input_dtype == "float16" else np.float32
        self.shape = (1, 3, spec.imgsz[0], spec.imgsz[1])
        self.norm = spec.normalisation
        self.lb = spec.letterbox

    def new_buffer(self) -> np.ndarray:
        return np.empty(self.shape, dtype=np.float32)

    def tensor(self, image: np.ndarray, buffer: np.ndarray) -> letterbox.Letterbox:
        """Letterbox and normalise a decoded image into `buffer`; the geometry, to map boxes
        back. Calibration and export parity feed the model through this too."""
        box = letterbox.plan(image.shape[:2], self.shape[2:], scaleup=self.lb.scaleup,
                             center=self.lb.center, auto=False, stride=self.lb.stride)
        padded = letterbox.apply(image, box, self.lb.pad_value)
        preprocess.to_tensor(padded, buffer, self.norm)
        return box

    def prepare(self, job: Job, limits: Limits, buffer: np.ndarray) -> _Prepared:
        """Read, decode, letterbox and normalise into `buffer`; ImageError for bad input."""
        t0 = time.perf_counter()
        data = decode.read_file(job.path, limits.max_bytes)
        t1 = time.perf_counter()
        orig_hw: Optional[Tuple[int, int]] = None
        if limits.reduced_jpeg:
            image, orig_hw = decode.decode_reduced(data, limits.max_pixels, self.shape[2:])
            if orig_hw == image.shape[:2]:
                orig_hw = None
        else:
            image = decode.decode(data, limits.max_pixels)
        del data
        t2 = time.perf_counter()
        timings = {"queue": _ms(job.received, t0), "read": _ms(t0, t1), "decode": _ms(t1, t2)}
        return self.prepare_image(job, limits, buffer, image, orig_hw, timings)

    def prepare_image(self, job: Job, limits: Limits, buffer: np.ndarray, image: np.ndarray,
                      orig_hw: Optional[Tuple[int, int]] = None,
                      timings: Optional[Dict[str, float]] = None) -> _Prepared:
        """From a decoded image on: the region, letterbox and normalise into `buffer`.
        `orig_hw`: the frame's size when `image` was decoded at reduced scale."""
        t2 = time.perf_counter()
        crop = region.crop(image, limits.region, limits.find_part)
        seen = image if crop is None else image[crop[1]:crop[3], crop[0]:crop[2]]
        box = self.tensor(seen, buffer)
        stats = imagestats.measure(seen) if limits.input_stats else None
        t3 = time.perf_counter()
        timings = {**(timings or {}), "preprocess": _ms(t2, t3)}
        return _Prepared(job, limits, buffer, box, image if limits.keep_image else None, timings,
                         ready_at=t3, orig_hw=orig_hw, crop=crop,
                         frame_hw=image.shape[:2] if crop else None, input_stats=stats)

    def infer(self, item: _Prepared) -> None:
        tensor = item.buffer if self.dtype == np.float32 else item.buffer.astype(self.dtype)
        t0, c0 = time.perf_counter(), time.thread_time()
        item.timings["wait"] = _ms(item.ready_at, t0)
        out = self.model.session.run([self.output_name], {self.input_name: tensor})[0]
        t1, c1 = time.perf_counter(), time.thread_time()
        item.raw = out if out.dtype == np.float32 else out.astype(np.float32)
        item.timings["inference"] = _ms(t0, t1)
        item.timings["inference_cpu"] = _ms(c0, c1)

    def finish(self, item: _Prepared) -> Outcome:
        t0 = time.perf_counter()
        found = postprocess.detect(item.raw, item.limits.thresholds, item.box)
        hw = item.box.orig_hw
        if item.crop is not None and item.frame_hw is not None:
            found.boxes = region.to_frame(found.boxes, item.crop)
            hw = item.frame_hw
        orig_hw = hw
        if item.orig_hw is not None:
            found.boxes = postprocess.rescale(found.boxes, hw, item.orig_hw)
            orig_hw = item.orig_hw
        t1 = time.perf_counter()
        item.timings["postprocess"] = _ms(t0, t1)
        item.timings["total"] = _ms(item.job.received, t1)
        return Outcome(item.job, found, orig_hw, None, item.image, item.timings, item.input_stats)

    def failed(self, job: Job, error: Failure, timings: Dict[str, float]) -> Outcome:
        timings["total"] = _ms(job.received, time.perf_counter())
        return Outcome(job, None, None, error, None, timings)

    def run_image(self, job: Job, image: np.ndarray, limits: Limits,
                  orig_hw: Optional[Tuple[int, int]] = None,
                  buffer: Optional[np.ndarray] = None) -> Outcome:
        """The stages after decoding, inline: a second model on the image the first decoded."""
        item = self.prepare_image(job, limits, buffer if buffer is not None
                                  else self.new_buffer(), image, orig_hw)
        self.infer(item)
        return self.finish(item)

    def run_one(self, job: Job, limits: Limits, buffer: Optional[np.ndarray] = None) -> Outcome:
        """All stages inline on the calling thread (tests, benchmarks, debugging)."""
        try:
            item = self.prepare(job, limits, buffer if buffer is not None else self.new_buffer())
        except decode.ImageError as exc:
            return self.failed(job, Failure.of(exc), {})
        self.infer(item)
        return self.finish(item)


class Pipeline:
    """Threaded pipeline; on_outcome is called once per submitted job, on the finishing thread."""

    def __init__(
        self,
        model: LoadedModel,
        limits: Callable[[], Limits],
        on_outcome: Callable[[Outcome], None],
        decode_threads: int = 1,
        prepared_queue: int = 2,
        pending_queue: int = 1000,
        inference_threads: int = 1,
    ) -> None:
        self.runner = Runner(model)
        self._limits = limits
        self._on_outcome = on_outcome
        self._jobs: "queue.Queue[Any]" = queue.Queue(maxsize=pending_queue)
        self._ready: "queue.Queue[Any]" = queue.Queue(maxsize=prepared_queue)
        self._done: "queue.Queue[Any]" = queue.Queue(maxsize=prepared_queue + 2)
        # One buffer per decode worker, per prepared slot, and one per concurrent session.run.
        self._free: "queue.Queue[np.ndarray]" = queue.Queue()
        for _ in range(decode_threads + prepared_queue + inference_threads):
            self._free.put(self.runner.new_buffer())
        self._decoders = [
            threading.Thread(target=self._decode_loop, name=f"vqi-decode-{i}", daemon=True)
            for i in range(decode_threads)
        ]
        self._inferers = [
            threading.Thread(target=self._infer_loop, name=f"vqi-infer-{i}", daemon=True)
            for i in range(inference_threads)
        ]
        self._finish = threading.Thread(target=self._finish_loop, name="vqi-finish", daemon=True)
        self._live_decoders = decode_threads
        self._live_inferers = inference_threads
        self._lock = threading.Lock()
        self._started = False

    def start(self) -> "Pipeline":
        for t in self._decoders + self._inferers + [self._finish]:
            t.start()
        self._started = True
        return self

    def submit(self, job: Job, timeout: Optional[float] = None) -> None:
        """Queue a job; blocks while MaxPendingEvents jobs wait (queue.Full after timeout)."""
        self._jobs.put(job, timeout=timeout)

    @property
    def pending(self) -> int:
        return self._jobs.qsize() + self._ready.qsize() + self._done.qsize()

    def close(self, timeout: float = 30.0) -> None:
        """Finish every submitted job, then stop the threads."""
        if not self._started:
            return
        for _ in self._decoders:
            self._jobs.put(_STOP)
        deadline = time.monotonic() + timeout
        for t in self._decoders + self._inferers + [self._finish]:
            t.join(max(0.0, deadline - time.monotonic()))

    # -- stages ------------------------------------------------------------------------------
    def _decode_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                break
            buffer = self._free.get()
            try:
                item = self.runner.prepare(job, self._limits(), buffer)
            except decode.ImageError as exc:
                self._free.put(buffer)
                self._done.put(self.runner.failed(job, Failure.of(exc), {}))
                continue
            except Exception as exc:  # a bug must cost one image, not the service
                log.exception("preparing %s failed", job.path)
                self._free.put(buffer)
                self._done.put(self.runner.failed(
                    job, Failure(INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"), {}))
                continue
            self._ready.put(item)
        with self._lock:
            self._live_decoders -= 1
            last = self._live_decoders == 0
        if last:
            for _ in self._inferers:
                self._ready.put(_STOP)

    def _infer_loop(self) -> None:
        while True:
            item = self._ready.get()
            if item is _STOP:
                with self._lock:
                    self._live_inferers -= 1
                    last = self._live_inferers == 0
                if last:
                    self._done.put(_STOP)
                break
            try:
                self.runner.infer(item)
            except Exception as exc:
                log.exception("inference failed for %s", item.job.path)
                self._done.put(self.runner.failed(
                    item.job, Failure(INFERENCE_ERROR, str(exc)[:300]), item.timings))
                self._free.put(item.buffer)
                continue
            self._free.put(item.buffer)
            self._done.put(item)

    def _finish_loop(self) -> None:
        while True:
            item = self._done.get()
            if item is _STOP:
                break
            try:
                outcome = item if isinstance(item, Outcome) else self.runner.finish(item)
            except Exception as exc:
                log.exception("post-processing failed for %s", item.job.path)
                outcome = self.runner.failed(
                    item.job, Failure(INTERNAL_ERROR, str(exc)[:300]), item.timings)
            try:
                self._on_outcome(outcome)
            except Exception:
                log.exception("result handler failed for %s", outcome.job.image_id)

