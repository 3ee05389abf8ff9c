"""Power-cut safety of the local Stream Manager, read from its system calls (strace): with
FlushOnWrite every append is fsynced before it is acknowledged, as the Uploader relies on (it
confirms a result to ImageSource, which then archives the image, once the append returns)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .. import syscalls

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    syscalls.STRACE is None, reason="strace is not installed (./scripts/test installs it as root)")

APPENDS = 5
SCRIPT = textwrap.dedent(f"""
    import os, sys
    from stream_manager import (MessageStreamDefinition, Persistence, StrategyOnFull,
                                StreamManagerClient)
    from localgg.stream_manager import StreamManagerServer
    server = StreamManagerServer(sys.argv[1])
    server.start()
    os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = server.auth_token
    client = StreamManagerClient(port=server.port)
    for name, flush in (("flushed", True), ("buffered", False)):
        client.create_message_stream(MessageStreamDefinition(
            name=name, strategy_on_full=StrategyOnFull.OverwriteOldestData,
            persistence=Persistence.File, flush_on_write=flush))
        for n in range({APPENDS}):
            client.append_message(name, b"record %d" % n)
    client.close()
    server.stop()
""")


@pytest.mark.timeout(120)
def test_every_append_to_a_flush_on_write_stream_is_fsynced(tmp_path: Path) -> None:
    trace = tmp_path / "strace.txt"
    root = tmp_path / "sm"
    done = subprocess.run([*syscalls.prefix(trace), sys.executable, "-c", SCRIPT, str(root)],
                          env={"PYTHONPATH": f"{REPO / 'scripts'}:{REPO}", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    synced = [c.paths[0] for c in syscalls.parse(trace)
              if c.name in ("fsync", "fdatasync") and c.paths]
    segments = [p for p in synced if p.startswith(str(root)) and p.endswith(".seg")]
    flushed = [p for p in segments if "/s-flushed/" in p]
    assert len(flushed) >= APPENDS, f"fsyncs of the FlushOnWrite stream's segment: {synced}"
    assert not [p for p in segments if "/s-buffered/" in p], \
        "a stream without FlushOnWrite is not fsynced per append"
