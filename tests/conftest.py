"""Suite-wide fixtures.

Run as root (CI, containers), the local runtime runs every component as ggc_user, as a core device
does. pytest makes its temporary folders 0700, which nobody else can enter, while a device's
/greengrass/v2 is 0755; so here each test's tmp_path is opened to other users (0777) and the
folders above it made traversable (o+x), so component processes can reach the runtime root and
the marker files that tests ask them to write.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest


def _open_to_component_users(path: Path) -> None:
    for folder in (path, *path.parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(folder, stat.S_IMODE(mode) | stat.S_IXOTH)


@pytest.fixture(autouse=True)
def _tmp_path_reachable_by_component_users(request: pytest.FixtureRequest) -> None:
    if os.geteuid() != 0 or "tmp_path" not in request.fixturenames:
        return
    tmp_path: Path = request.getfixturevalue("tmp_path")
    _open_to_component_users(tmp_path)
    os.chmod(tmp_path, 0o777)
