"""Claiming images out of the inbox and completing them, crash-safe.

A claim is: hash the file, write a sidecar `processing/<id>.claim.json` (fsync), rename the image
to `processing/<id>__<name>` (atomic, same filesystem); only then is the event published. A file
is therefore always in exactly one place (inbox or processing or a final folder), and a restart
finds every claimed image with its SAME id and attempt count. The id is derived from the content
hash plus the inbox path and mtime, so a claim undone by a power cut (rename not yet on disk) is
claimed again under the same id, and consumers deduplicate it.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Set

from shared.atomic import unlink_quietly
from shared.messages import ImageEvent, utc_now

from . import durable
from .durable import REASON_SUFFIX
from .layout import Layout
from .quarantine import quarantine

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".claim.json"
SEPARATOR = "__"
HASH_CHUNK = 1024 * 1024

DONE = "done"
FAILED = "failed"
DELETE = "delete"


class ClaimError(RuntimeError):
    """The file could not be claimed (vanished, changed type, unreadable); it stays where it is."""


def iso_utc(seconds: float) -> str:
    stamp = datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def image_id(content_sha256: str, source: str, mtime_ns: int) -> str:
    """Stable id: 24 hex of the content hash, then 8 hex of inbox path + mtime.

    Same bytes captured twice (two names or two times) are two images; the same file found again
    after a crash is the same image.
    """
    where = hashlib.sha256(
        f"{source}\0{mtime_ns}".encode("utf-8", "surrogateescape")).hexdigest()
    return f"{content_sha256[:24]}-{where[:8]}"


@dataclass
class Claim:
    """One claimed image as persisted in its sidecar."""

    image_id: str
    path: str  # absolute path in processing/
    source: str  # path relative to the inbox it was taken from (UTF-8 safe)
    camera_id: str
    size: int
    capture_time: str  # file mtime, UTC
    claimed_time: str
    sha256: str
    attempt: int = 1  # events published so far for this image (the next event carries +1)
    strikes: int = 0  # timeouts while other images did get results
    extra: Dict[str, Any] = field(default_factory=dict)

    def event(self) -> ImageEvent:
        return ImageEvent(image_id=self.image_id, path=self.path, size=self.size,
                          camera_id=self.camera_id, capture_time=self.capture_time,
                          attempt=self.attempt)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Claim":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _open_parent(root: str, rel: str) -> "tuple[int, str]":
    """A descriptor of rel's folder, walked down from root refusing symlinks; and rel's name."""
    parts = rel.split(os.sep)
    if any(p in ("", ".", "..") for p in parts):
        raise OSError(errno.EINVAL, "path leaves the inbox")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError:
        os.close(fd)
        raise
    return fd, parts[-1]


class ClaimStore:
    """The processing/ folder and the moves out of it."""

    def __init__(self, layout: Layout, sync: bool = True) -> None:
        self.layout = layout
        self.sync = sync
        self._ids: Set[str] = set()

    # -- paths -----------------------------------------------------------------------------------
    def sidecar(self, image_id: str) -> str:
        return os.path.join(self.layout.processing, image_id + SIDECAR_SUFFIX)

    def _image_path(self, image_id: str, name: str) -> str:
        return os.path.join(self.layout.processing, image_id + SEPARATOR + name)

    # -- start-up ----------------------------------------------------------------------------------
    def recover(self, default_camera: str) -> List[Claim]:
        """Claims left by a previous run, oldest first; cleans what a crash left half done."""
        images: Dict[str, str] = {}
        sidecars: Dict[str, str] = {}
        for entry in os.scandir(self.layout.processing):
            name = entry.name
            if name.startswith("."):
                unlink_quietly(entry.path)  # temp file of an interrupted sidecar write
            elif not entry.is_file(follow_symlinks=False):
                where = quarantine(self.layout.quarantine, entry.path, "processing/" + name,
                                   "not a regular file in processing/ (never published)")
                log.warning("moved %s from processing/ to %s", name, where)
            elif name.endswith(SIDECAR_SUFFIX):
                sidecars[name[: -len(SIDECAR_SUFFIX)]] = entry.path
            elif SEPARATOR in name:
                images[name.split(SEPARATOR, 1)[0]] = entry.path
            else:
                log.warning("ignoring unexpected file in processing/: %s", entry.path)
        claims: List[Claim] = []
        for iid, side in sidecars.items():
            if iid not in images:
                # Crash after writing the sidecar but before the rename (image still in the
                # inbox, found again under the same id), or after completing the image.
                unlink_quietly(side)
                continue
            try:
                claim = Claim.from_dict(durable.read_json(side))
                if claim.image_id != iid or claim.path != images[iid]:
                    raise ValueError("sidecar does not match its image")
            except (OSError, ValueError, TypeError) as exc:
                log.warning("rebuilding unreadable claim %s: %s", side, exc)
                claim = self._rebuild(iid, images[iid], default_camera)
            claims.append(claim)
        for iid, path in images.items():
            if iid not in sidecars:
                log.warning("rebuilding claim without sidecar for %s", path)
                claims.append(self._rebuild(iid, path, default_camera))
        self._ids = {c.image_id for c in claims}
        claims.sort(key=lambda c: (c.claimed_time, c.image_id))
        return claims

    def _rebuild(self, iid: str, path: str, camera: str) -> Claim:
        st = os.lstat(path)
        claim = Claim(image_id=iid, path=path,
                      source=os.path.basename(path).split(SEPARATOR, 1)[1], camera_id=camera,
                      size=st.st_size, capture_time=iso_utc(st.st_mtime), claimed_time=utc_now(),
                      sha256="")
        durable.write_json(self.sidecar(iid), asdict(claim), sync=self.sync)
        return claim

    # -- claim -------------------------------------------------------------------------------------
    def claim(self, src: str, source: str, camera_id: str) -> Claim:
        """Move src (inbox file, relative path `source`) into processing/; ClaimError if not.

        The file is reached from the inbox one folder at a time without following symlinks, and
        renamed relative to that folder, so a folder swapped for a link meanwhile cannot make
        the claim move a file from outside the inbox.
        """
        try:
            folder, leaf = _open_parent(self.layout.inbox, source)
        except OSError as exc:
            raise ClaimError(f"cannot reach {src} inside the inbox: {exc.strerror}") from exc
        try:
            return self._claim_in(folder, leaf, src, source, camera_id)
        finally:
            os.close(folder)

    def _claim_in(self, folder: int, leaf: str, src: str, source: str, camera_id: str) -> Claim:
        try:
            fd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
        except OSError as exc:
            raise ClaimError(f"cannot open {src}: {exc.strerror}") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ClaimError(f"{src} is not a regular file")
            digest = hashlib.sha256()
            while True:
                chunk = os.read(fd, HASH_CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
        except OSError as exc:
            raise ClaimError(f"cannot read {src}: {exc.strerror}") from exc
        finally:
            os.close(fd)
        sha = digest.hexdigest()
        base = image_id(sha, source, st.st_mtime_ns)
        iid, n = base, 1
        while iid in self._ids or os.path.lexists(self.sidecar(iid)):
            n += 1  # same bytes, path and mtime as an image still in flight: a separate copy
            iid = f"{base}-{n}"
        dest = self._image_path(iid, durable.safe_name(leaf))
        claim = Claim(image_id=iid, path=dest, source=durable.safe_relpath(source),
                      camera_id=camera_id, size=st.st_size, capture_time=iso_utc(st.st_mtime),
                      claimed_time=utc_now(), sha256=sha)
        durable.write_json(self.sidecar(iid), asdict(claim), sync=self.sync)
        try:
            os.rename(leaf, dest, src_dir_fd=folder)
        except OSError as exc:
            unlink_quietly(self.sidecar(iid))
            raise ClaimError(f"cannot move {src} into processing/: {exc.strerror}") from exc
        moved = os.lstat(dest)
        if (moved.st_ino, moved.st_dev) != (st.st_ino, st.st_dev):
            # Swapped for another entry (e.g. a symlink) between hashing and renaming: that entry
            # must never be published, so it goes to quarantine instead.
            where = quarantine(self.layout.quarantine, dest, source,
                               "replaced by another entry while being claimed")
            unlink_quietly(self.sidecar(iid))
            raise ClaimError(f"{src} was replaced while being claimed; quarantined as {where}")
        # No folder fsync here: if a power cut undoes the rename, the file is back in the inbox
        # and is claimed again under the same id (content, path and mtime are unchanged).
        self._ids.add(iid)
        return claim

    def save(self, claim: Claim) -> None:
        """Persist attempt/strike counters (after a re-publish)."""
        durable.write_json(self.sidecar(claim.image_id), asdict(claim), sync=self.sync)

    # -- completion --------------------------------------------------------------------------------
    def complete(self, claim: Claim, outcome: str, reason: Optional[Dict[str, Any]] = None,
                 wall: Optional[float] = None) -> Optional[str]:
        """Move the image to done/ or failed/ (reason beside it) or delete it; final path or None.

        The reason is written before the image moves, so a failed image never lacks its reason;
        the sidecar goes last, so a crash in between only repeats the completion.
        """
        wall = time.time() if wall is None else wall
        name = os.path.basename(claim.path)
        final: Optional[str] = None
        if not os.path.lexists(claim.path):
            log.warning("claimed image %s vanished from processing/", claim.path)
        elif outcome == DELETE:
            unlink_quietly(claim.path)
        else:
            root = self.layout.failed if outcome == FAILED else self.layout.done
            folder = durable.day_folder(root, wall)
            final = os.path.join(folder, name)
            if reason is not None:
                durable.write_json(final + REASON_SUFFIX, reason, sync=False)
            os.rename(claim.path, final)
        unlink_quietly(self.sidecar(claim.image_id))
        self._ids.discard(claim.image_id)
        return final
