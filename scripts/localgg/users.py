"""Component users and file modes, as the nucleus sets them on a Linux core device.

- A nucleus running as root runs each component as `runWithDefault.posixUser` (`user[:group]`);
  its installer's `--component-default-user ggc_user:ggc_group` creates the user and group when
  missing with `useradd -r -m`, `groupadd -r` and `usermod -a -G` (UnixPlatform.java). A nucleus
  running as another user runs everything as itself.
- `{work:path}` is 0700 and, with its contents, owned by the component's user and group
  (NucleusPaths.workPath, Permissions.setServiceWorkPathPermission, RunWithPathOwnershipHandler).
- Artifact folders are 0755; each artifact file (and every file unpacked from a ZIP artifact)
  gets the mode of its `Permission`: owner read always, group read unless Read and Execute are
  NONE, other read for Read ALL, execute bits per Execute (componentmanager/models/Permission.java,
  util/Permissions.setArtifactPermission); files (not the artifact folders) belong to the
  component's user and group. Without root, owner write is added so the files can be removed.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
from pathlib import Path

from localgg.supervisor import RunAs


class UserError(RuntimeError):
    """The component user cannot be created, or cannot reach the runtime's folders."""


def is_root() -> bool:
    return os.geteuid() == 0


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise UserError(f"{' '.join(command)} failed: {(done.stderr or done.stdout).strip()}")


def ensure_run_as(posix_user: str) -> RunAs | None:
    """Create (if missing) and describe `user[:group]`; None when that is root itself."""
    user, _, group = str(posix_user).partition(":")
    user = user.strip()
    group = group.strip()
    if not user:
        raise UserError(f"runWithDefault.posixUser {posix_user!r} names no user")
    if user in ("root", "0"):
        return None
    if group:
        try:
            grp.getgrnam(group)
        except KeyError:
            _run(["groupadd", "-r", group])
    try:
        pwd.getpwnam(user)
    except KeyError:
        _run(["useradd", "-r", "-m", user])
    entry = pwd.getpwnam(user)
    if group:
        gid = grp.getgrnam(group).gr_gid
        if gid not in os.getgrouplist(user, entry.pw_gid):
            _run(["usermod", "-a", "-G", group, user])
    else:
        gid = entry.pw_gid
    return RunAs(user=user, group=group or grp.getgrgid(gid).gr_name, uid=entry.pw_uid,
                 gid=gid, groups=tuple(os.getgrouplist(user, gid)), home=entry.pw_dir)


def can_traverse(path: Path, run_as: RunAs) -> bool:
    info = path.stat()
    if info.st_uid == run_as.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in run_as.groups or info.st_gid == run_as.gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def check_reachable(path: Path, run_as: RunAs) -> None:
    """Every folder above `path` must let the user pass, or nothing it owns is reachable."""
    for folder in [*reversed(path.absolute().parents), path.absolute()]:
        if not can_traverse(folder, run_as):
            mode = stat.filemode(folder.stat().st_mode)
            raise UserError(
                f"components run as {run_as.user}, who cannot enter {folder} ({mode}); use a "
                f"root folder every user can traverse (like /greengrass/v2, 0755), or chmod "
                f"o+x {folder}")


def chown_tree(path: Path, run_as: RunAs, include_root: bool = True) -> None:
    """Recursively give `path` (or only what is inside it) to the component's user and group."""
    if include_root:
        os.chown(path, run_as.uid, run_as.gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(path):
        for entry in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, entry), run_as.uid, run_as.gid,
                     follow_symlinks=False)


def artifact_mode(read: str, execute: str, superuser: bool) -> int:
    """The file mode Permission.toFileSystemPermission gives an artifact file."""
    mode = stat.S_IRUSR
    if read in ("OWNER", "ALL") or execute in ("OWNER", "ALL"):
        mode |= stat.S_IRGRP
    if read == "ALL" or execute == "ALL":
        mode |= stat.S_IROTH
    if execute in ("OWNER", "ALL"):
        mode |= stat.S_IXUSR | stat.S_IXGRP
    if execute == "ALL":
        mode |= stat.S_IXOTH
    if not superuser:
        mode |= stat.S_IWUSR
    return mode


def set_artifact_modes(path: Path, mode: int) -> None:
    """Folders 0755, every file `mode` (Permissions.setArtifactPermission, recursively)."""
    if path.is_dir() and not path.is_symlink():
        os.chmod(path, 0o755)
        for child in path.iterdir():
            set_artifact_modes(child, mode)
    elif path.is_file():
        os.chmod(path, mode)
