"""Keyed wake-ups inside one event loop: blocked reads and exporters wait on stream names."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict

ONLINE = "\0online"  # key fired when the online/offline state changes


class Wakeups:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = defaultdict(set)

    def fire(self, key: str) -> None:
        for fut in self._waiters.pop(key, ()):
            if not fut.done():
                fut.set_result(None)

    async def wait(self, keys: tuple[str, ...], timeout: float | None) -> None:
        """Return when any key fires or the timeout passes (check your condition first)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for key in keys:
            self._waiters[key].add(fut)
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(fut, timeout)
        finally:
            for key in keys:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(fut)
                    if not waiters:
                        del self._waiters[key]
