"""`python -m localgg.stream_manager --root DIR [--port N]`: serve until SIGTERM/SIGINT.

Prints `STREAM_MANAGER_SERVER_PORT=<port>` and `AWS_CONTAINER_AUTHORIZATION_TOKEN=<token>` (the
variables the SDK reads) on stdout once listening, so a parent process can parse or source them.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from .server import StreamManagerServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localgg.stream_manager",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="state folder (streams, OFFLINE)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token", help="auth token clients must present (default: random)")
    parser.add_argument("--bucket-root", type=Path, help="local S3 folder (default ROOT/s3)")
    parser.add_argument("--kinesis-log", type=Path,
                        help="Kinesis export log (default ROOT/kinesis.jsonl)")
    parser.add_argument("--offline", action="store_true",
                        help="start offline (creates ROOT/OFFLINE)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = StreamManagerServer(args.root, port=args.port, auth_token=args.token,
                                 bucket_root=args.bucket_root, kinesis_log=args.kinesis_log,
                                 host=args.host)
    if args.offline:
        server.set_online(False)
    try:
        server.start()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for key, value in server.env().items():
        print(f"{key}={value}")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
