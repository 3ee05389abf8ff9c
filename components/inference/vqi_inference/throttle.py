"""Rate-limited error logs: one line per kind of failure per interval, with the count suppressed.

A failure that repeats for every image (IoT Core refusing the topic, a broken connection) must
be loud once and stay visible, without writing one line per image to the component log.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Dict, Tuple


class Throttle:
    def __init__(self, logger: logging.Logger, interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._interval = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state: Dict[str, Tuple[float, int]] = {}  # key -> (last logged, suppressed since)

    def error(self, key: str, message: str, *args: object) -> bool:
        """Log `message` unless `key` was logged within the interval; True when it was logged."""
        now = self._clock()
        with self._lock:
            last, suppressed = self._state.get(key, (float("-inf"), 0))
            if now - last < self._interval:
                self._state[key] = (last, suppressed + 1)
                return False
            self._state[key] = (now, 0)
        if suppressed:
            message += " (%d more like this since the last report)"
            args = (*args, suppressed)
        self._log.error(message, *args)
        return True
