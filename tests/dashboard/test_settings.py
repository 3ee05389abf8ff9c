"""The configuration: safe defaults, and refusals that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from vqi_dashboard.settings import image_roots, parse, read_token

from shared.config import ConfigError
from vqitools.dashrun import default_configuration


def test_the_recipe_defaults_listen_on_this_device_only() -> None:
    cfg = parse(default_configuration())
    assert cfg.bind_address == "127.0.0.1" and cfg.loopback and read_token(cfg) is None


@pytest.mark.parametrize("key,value", [
    ("BindAddress", "dashboard.local"), ("Port", 70000), ("ShiftStartHours", [6, 6]),
    ("ShiftStartHours", [25]), ("ImageDirs", ["relative/path"]), ("HistoryMaxRows", 5),
    ("TokenFile", "token.txt"), ("MaxEventClients", 0),
])
def test_bad_values_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        parse({**default_configuration(), key: value})


def test_listening_on_the_lan_needs_a_token() -> None:
    with pytest.raises(ConfigError, match="TokenFile"):
        parse({"BindAddress": "0.0.0.0"})


def test_a_short_or_unreadable_token_is_refused(tmp_path: Path) -> None:
    short = tmp_path / "t"
    short.write_text("abc\n")
    with pytest.raises(ConfigError, match="at least 16"):
        read_token(parse({"BindAddress": "0.0.0.0", "TokenFile": str(short)}))
    with pytest.raises(ConfigError, match="cannot read"):
        read_token(parse({"BindAddress": "0.0.0.0", "TokenFile": str(tmp_path / "none")}))


def test_the_token_file_wins_over_the_configured_token(tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_text("from-the-file-0123456789\n")
    cfg = parse({"BindAddress": "0.0.0.0", "TokenFile": str(path), "Token": "x" * 20})
    assert read_token(cfg) == "from-the-file-0123456789"


def test_images_come_from_imagesources_state_folder_unless_set(tmp_path: Path) -> None:
    cfg = parse({})
    assert image_roots(cfg, {"VQI_IMAGE_STATE_DIR": str(tmp_path),
                             "VQI_IMAGE_WORK_DIR": "/w"}) == (str(tmp_path),)
    # ImageSource's StateDir empty: its work folder; not interpolated (no dependency): none
    assert image_roots(cfg, {"VQI_IMAGE_STATE_DIR": "", "VQI_IMAGE_WORK_DIR": str(tmp_path)}) \
        == (str(tmp_path),)
    uninterpolated = "{com.example.vqi.ImageSource:work:path}"
    assert image_roots(cfg, {"VQI_IMAGE_WORK_DIR": uninterpolated}) == ()
    assert image_roots(parse({"ImageDirs": [str(tmp_path)]}), {"VQI_IMAGE_STATE_DIR": "/s"}) \
        == (str(tmp_path),)
