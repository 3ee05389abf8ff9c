from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from .rig import Rig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    """The Dashboard process with the recipe's defaults (loopback, port chosen by the OS)."""
    running = Rig(tmp_path).start()
    try:
        yield running
    finally:
        running.close()
