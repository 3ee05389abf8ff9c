"""The uploader's own copies of review images and their sidecars, waiting for export.

The image is hard-linked (same filesystem, no bytes copied) or else copied into the staging folder,
so ImageSource may move or delete its file as soon as the uploader confirms; the staged copy lives
until Stream Manager reports the export done.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple
from urllib.parse import unquote, urlparse

from shared.atomic import fsync_dir, write_atomic

from .keys import safe_part


@dataclass(frozen=True)
class StagedFile:
    path: str
    key: str


def file_url(path: str) -> str:
    return Path(os.path.abspath(path)).as_uri()


def url_path(url: str) -> str:
    """Local path of a file:// URL ('' for anything else)."""
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return ""
    return unquote(parsed.path)


def link_or_copy(source: str, target: str) -> str:
    """Make `target` a copy of `source`: hard link when possible, byte copy otherwise."""
    tmp = f"{target}.part"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    try:
        os.link(source, tmp)
        how = "link"
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise
        shutil.copyfile(source, tmp)
        with open(tmp, "rb") as copied:
            os.fsync(copied.fileno())  # a hard link shares the source's data; a copy must sync
        how = "copy"
    os.replace(tmp, target)
    return how


class Staging:
    """Folder of staged review files, one sub-folder per image id."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)

    def folder(self, image_id: str) -> str:
        return os.path.join(self.root, safe_part(image_id))

    def owns(self, path: str) -> bool:
        return os.path.abspath(path).startswith(self.root + os.sep)

    def stage(
        self, image_id: str, image_path: str, image_key: str, labels: str, labels_key: str,
        result_json: str, result_key: str,
    ) -> List[StagedFile]:
        """Stage image + labels + result; raises FileNotFoundError when the image is gone."""
        return self.stage_files(image_id, image_path, image_key,
                                [(labels, labels_key), (result_json, result_key)])

    def stage_files(self, image_id: str, image_path: str, image_key: str,
                    sidecars: List[Tuple[str, str]]) -> List[StagedFile]:
        """Stage an image and text sidecars (text, key); FileNotFoundError when the image is
        gone."""
        folder = self.folder(image_id)
        os.makedirs(folder, exist_ok=True)
        image_target = os.path.join(folder, os.path.basename(image_key))
        link_or_copy(image_path, image_target)
        staged = [StagedFile(image_target, image_key)]
        for text, key in sidecars:
            target = os.path.join(folder, os.path.basename(key))
            write_atomic(target, text)
            staged.append(StagedFile(target, key))
        # The result is confirmed next, and ImageSource may then delete its image: the staged
        # names must already survive a power cut (the folder's entries, and the folder itself).
        fsync_dir(folder)
        fsync_dir(self.root)
        return staged

    def remove(self, path: str) -> None:
        """Delete one staged file and its folder once empty."""
        if not self.owns(path):
            return
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        folder = os.path.dirname(path)
        if folder != self.root:
            try:
                os.rmdir(folder)
            except OSError:
                pass  # other files of this image still wait for export

    def files(self) -> List[str]:
        found = []
        for folder, _, names in os.walk(self.root):
            found += [os.path.join(folder, n) for n in names if not n.endswith((".tmp", ".part"))]
        return sorted(found)
