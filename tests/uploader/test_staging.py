"""Staged copies of review images."""

from __future__ import annotations

import os

import pytest

from vqi_uploader.staging import Staging, file_url, link_or_copy, url_path


def test_staged_image_is_a_hard_link_that_outlives_the_original(tmp_path):
    src = tmp_path / "inbox" / "a.jpg"
    src.parent.mkdir()
    src.write_bytes(b"\xff\xd8jpeg")
    staging = Staging(str(tmp_path / "staging"))
    files = staging.stage("a", str(src), "p/a.jpg", "0 0.5 0.5 0.1 0.1\n", "p/a.txt", "{}",
                          "p/a.json")
    assert [os.path.basename(f.path) for f in files] == ["a.jpg", "a.txt", "a.json"]
    assert os.stat(files[0].path).st_ino == os.stat(src).st_ino
    src.unlink()
    assert open(files[0].path, "rb").read() == b"\xff\xd8jpeg"
    assert open(files[1].path).read() == "0 0.5 0.5 0.1 0.1\n"


def test_copy_is_used_when_a_link_is_impossible(tmp_path):
    shm = "/dev/shm"
    if not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temp folder (EXDEV)")
    src = tmp_path / "a.jpg"
    src.write_bytes(b"jpeg bytes")
    target = os.path.join(shm, f"vqi-uploader-test-{os.getpid()}.jpg")
    try:
        assert link_or_copy(str(src), target) == "copy"
        assert open(target, "rb").read() == b"jpeg bytes"
    finally:
        os.unlink(target)


def test_link_is_used_on_the_same_filesystem(tmp_path):
    src = tmp_path / "a.jpg"
    src.write_bytes(b"x")
    assert link_or_copy(str(src), str(tmp_path / "b.jpg")) == "link"


def test_missing_image_raises_and_leaves_no_partial_file(tmp_path):
    staging = Staging(str(tmp_path / "staging"))
    with pytest.raises(FileNotFoundError):
        staging.stage("gone", str(tmp_path / "gone.jpg"), "k.jpg", "", "k.txt", "{}", "k.json")
    assert staging.files() == []


def test_removing_the_last_file_removes_the_image_folder(tmp_path):
    src = tmp_path / "a.jpg"
    src.write_bytes(b"x")
    staging = Staging(str(tmp_path / "staging"))
    files = staging.stage("a", str(src), "a.jpg", "", "a.txt", "{}", "a.json")
    for f in files[:2]:
        staging.remove(f.path)
    assert os.path.isdir(staging.folder("a"))
    staging.remove(files[2].path)
    assert not os.path.exists(staging.folder("a")) and staging.files() == []


def test_files_outside_the_staging_folder_are_never_removed(tmp_path):
    other = tmp_path / "keep.jpg"
    other.write_bytes(b"x")
    Staging(str(tmp_path / "staging")).remove(str(other))
    assert other.exists()


def test_file_urls_round_trip_with_spaces():
    assert url_path(file_url("/tmp/a b/c.jpg")) == "/tmp/a b/c.jpg"
    assert file_url("/tmp/x.jpg") == "file:///tmp/x.jpg"
    assert url_path("s3://bucket/key") == ""
