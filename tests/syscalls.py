"""Read `strace -f -y` output: which files a process fsynced and renamed, in order.

A SIGKILL keeps the page cache, so crash tests prove nothing about a power cut; what does is
the order of the system calls: a state file must be fsynced before it is renamed into place (and
its folder fsynced after, where the rename itself must survive). These helpers record a real
component process and answer those questions.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

STRACE = shutil.which("strace")
TRACED = "fsync,fdatasync,rename,renameat,renameat2,link,linkat"
_CALL = re.compile(r"^(?P<pid>\d+)\s+(?P<name>\w+)\((?P<args>.*?)(?:\)\s+=\s+(?P<ret>-?\d+)|"
                   r"\s*<unfinished \.\.\.>)")
_FD_PATH = re.compile(r"^\d+<(?P<path>[^>]*)>")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Call:
    pid: int
    name: str
    paths: tuple  # fd paths (fsync) or the path arguments (rename, link)
    ok: bool


def prefix(out: Path) -> List[str]:
    """The command prefix that records `out` (follows threads and children, paths of fds)."""
    assert STRACE is not None
    return [STRACE, "-f", "-y", "-qq", "-e", f"trace={TRACED}", "-o", str(out)]


def parse(out: Path) -> List[Call]:
    calls = []
    for line in out.read_text(errors="replace").splitlines():
        match = _CALL.match(line)
        if match is None:
            continue
        args = match.group("args")
        if match.group("name") in ("fsync", "fdatasync"):
            fd = _FD_PATH.match(args)
            paths = (fd.group("path"),) if fd else ()
        else:
            paths = tuple(_STRING.findall(args))
        ret = match.group("ret")
        calls.append(Call(int(match.group("pid")), match.group("name"), paths,
                          ret is None or int(ret) >= 0))
    return calls


def fsynced_before(calls: List[Call], path: str, index: int) -> bool:
    return any(c.name in ("fsync", "fdatasync") and c.paths == (path,)
               for c in calls[:index])


def renames(calls: List[Call], into: str = "") -> List[tuple]:
    """(index, source, target) of each successful rename whose target ends with `into`."""
    found = []
    for i, call in enumerate(calls):
        if call.name.startswith("rename") and call.ok and len(call.paths) >= 2 \
                and call.paths[-1].endswith(into):
            found.append((i, call.paths[0], call.paths[-1]))
    return found


def children(pid: int) -> List[int]:
    """The traced process(es) under a strace process."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def first_child(pid: int) -> Optional[int]:
    found = children(pid)
    return found[0] if found else None
