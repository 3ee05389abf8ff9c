"""A Stream Manager client that survives the server going away.

The SDK client reconnects at most once by itself and leaves a request pending until its timeout.
Here every call runs through `call`: on a connection problem the client is dropped and a new one is
made with exponential backoff, then the streams are ensured again (a restarted server may have lost
a memory-persisted stream) and the call is repeated. Staged files and the pending result wait.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable, Optional, Tuple, Type, TypeVar

from stream_manager import StreamManagerClient
from stream_manager.exceptions import (
    ClientException,
    RequestPayloadTooLargeException,
    ResourceNotFoundException,
    StreamManagerException,
    ValidationException,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

FATAL = (ValidationException, RequestPayloadTooLargeException)


class Stopped(Exception):
    """The service is stopping; the call was not made."""


def quiet_sdk_logs() -> None:
    """The SDK logs every failed reconnect as ERROR; `call` reports outages once, with backoff."""
    sdk = logging.getLogger("stream_manager")
    if not sdk.isEnabledFor(logging.DEBUG):
        sdk.setLevel(logging.CRITICAL)


def new_client(request_timeout: float, logger_name: str) -> StreamManagerClient:
    """A connected SDK client; a failed connect also stops the event-loop thread it started."""
    client = StreamManagerClient.__new__(StreamManagerClient)
    try:
        client.__init__(request_timeout=request_timeout, logger=logging.getLogger(logger_name))
    except BaseException:
        try:
            client.close()
        except Exception:  # nothing more to release
            pass
        raise
    return client


class StreamManagerLink:
    def __init__(
        self,
        name: str,
        stop: threading.Event,
        on_connect: Callable[[StreamManagerClient], None],
        request_timeout: float = 10.0,
        backoff_max: float = 30.0,
        backoff_first: float = 0.2,
    ) -> None:
        self.name = name
        self.stop = stop
        self.on_connect = on_connect
        self.request_timeout = request_timeout
        self.backoff_max = backoff_max
        self.backoff_first = backoff_first
        self.client: Optional[StreamManagerClient] = None
        self.failures = 0
        self.reconnects = 0
        self.ensure_needed = True
        quiet_sdk_logs()

    def _drop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # the socket is already gone
                pass

    def _connect(self) -> StreamManagerClient:
        if self.client is None:
            self.client = new_client(self.request_timeout, f"stream_manager.{self.name}")
            self.reconnects += 1
            self.ensure_needed = True
            log.info("%s: connected to Stream Manager on port %d", self.name, self.client.port)
        if self.ensure_needed:
            self.on_connect(self.client)
            self.ensure_needed = False
        return self.client

    def _wait(self, attempt: int) -> None:
        delay = min(self.backoff_max, self.backoff_first * (2 ** min(attempt, 16)))
        if self.stop.wait(delay):
            raise Stopped()

    def call(
        self,
        fn: Callable[[StreamManagerClient], T],
        passthrough: Tuple[Type[BaseException], ...] = (),
        attempts: int = 0,
    ) -> T:
        """fn(client), retried through reconnects until it succeeds (or `attempts` tries fail)."""
        attempt = 0
        while True:
            if self.stop.is_set():
                raise Stopped()
            try:
                result = fn(self._connect())
                if self.failures:
                    log.info("%s: Stream Manager reachable again", self.name)
                self.failures = 0
                return result
            except passthrough:
                raise
            except FATAL:
                raise
            except ResourceNotFoundException as exc:
                log.warning("%s: stream missing (%s); creating streams again", self.name, exc)
                self.ensure_needed = True
            except (ConnectionError, OSError, asyncio.TimeoutError, ClientException) as exc:
                self._log_failure(exc)
                self._drop()
            except StreamManagerException as exc:
                if "closed" in str(exc).lower():
                    self._drop()
                self._log_failure(exc)
            attempt += 1
            if attempts and attempt >= attempts:
                raise ConnectionError(f"{self.name}: Stream Manager call failed {attempt} times")
            self._wait(attempt)

    def _log_failure(self, exc: BaseException) -> None:
        self.failures += 1
        level = logging.WARNING if self.failures == 1 or self.failures % 20 == 0 else logging.DEBUG
        log.log(level, "%s: Stream Manager call failed (%s: %s); retrying with backoff",
                self.name, type(exc).__name__, exc)

    def close(self) -> None:
        self._drop()
