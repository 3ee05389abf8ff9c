"""Claims: atomic move into processing/, durable sidecar, same id after a restart."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vqi_image_source.claims import DELETE, DONE, FAILED, REASON_SUFFIX, ClaimError, ClaimStore

from .helpers import jpeg_bytes, make_layout, write_file


def test_claim_moves_the_file_and_records_a_sidecar(work: Path) -> None:
    layout = make_layout(work)
    src = write_file(Path(layout.inbox) / "cam7" / "part-001.jpg", jpeg_bytes())
    claim = ClaimStore(layout).claim(str(src), "cam7/part-001.jpg", "cam7")
    assert not src.exists()
    assert Path(claim.path).read_bytes() == jpeg_bytes()
    assert Path(claim.path).parent == Path(layout.processing)
    assert Path(claim.path).name == f"{claim.image_id}__part-001.jpg"
    sidecar = json.loads(Path(layout.processing, claim.image_id + ".claim.json").read_text())
    assert sidecar["image_id"] == claim.image_id and sidecar["camera_id"] == "cam7"
    assert sidecar["source"] == "cam7/part-001.jpg" and sidecar["size"] == claim.size


def test_image_id_is_content_hash_plus_name_and_time(work: Path) -> None:
    layout = make_layout(work)
    store = ClaimStore(layout)
    a = write_file(Path(layout.inbox) / "a.jpg", jpeg_bytes(seed=1))
    b = write_file(Path(layout.inbox) / "b.jpg", jpeg_bytes(seed=1))
    os.utime(a, ns=(10**18, 10**18))
    os.utime(b, ns=(10**18, 10**18))
    ca = store.claim(str(a), "a.jpg", "c")
    cb = store.claim(str(b), "b.jpg", "c")
    assert ca.image_id[:24] == cb.image_id[:24]  # same bytes
    assert ca.image_id != cb.image_id  # different capture


def test_restart_finds_claimed_images_with_the_same_id(work: Path) -> None:
    layout = make_layout(work)
    src = write_file(Path(layout.inbox) / "x.jpg", jpeg_bytes())
    first = ClaimStore(layout).claim(str(src), "x.jpg", "line-1")
    first.attempt = 3
    ClaimStore(layout).save(first)
    recovered = ClaimStore(layout).recover("default")
    assert [(c.image_id, c.path, c.camera_id, c.attempt) for c in recovered] == [
        (first.image_id, first.path, "line-1", 3)]


def test_crash_before_the_rename_leaves_the_image_in_the_inbox_under_the_same_id(
        work: Path) -> None:
    layout = make_layout(work)
    src = write_file(Path(layout.inbox) / "y.jpg", jpeg_bytes())
    store = ClaimStore(layout)
    claim = store.claim(str(src), "y.jpg", "c")
    os.rename(claim.path, src)  # as if the crash came between sidecar and rename
    assert ClaimStore(layout).recover("c") == []
    assert not Path(store.sidecar(claim.image_id)).exists()  # orphan sidecar cleaned
    again = ClaimStore(layout).claim(str(src), "y.jpg", "c")
    assert again.image_id == claim.image_id


def test_image_without_sidecar_is_rebuilt_not_lost(work: Path) -> None:
    layout = make_layout(work)
    src = write_file(Path(layout.inbox) / "z.jpg", jpeg_bytes())
    store = ClaimStore(layout)
    claim = store.claim(str(src), "z.jpg", "c")
    os.unlink(store.sidecar(claim.image_id))
    Path(layout.processing, ".leftover.tmp").write_text("half")
    [rebuilt] = ClaimStore(layout).recover("fallback-cam")
    assert rebuilt.image_id == claim.image_id and rebuilt.path == claim.path
    assert rebuilt.camera_id == "fallback-cam" and rebuilt.size == claim.size
    assert not Path(layout.processing, ".leftover.tmp").exists()


def test_corrupt_sidecar_is_rebuilt(work: Path) -> None:
    layout = make_layout(work)
    src = write_file(Path(layout.inbox) / "z.jpg", jpeg_bytes())
    store = ClaimStore(layout)
    claim = store.claim(str(src), "z.jpg", "c")
    Path(store.sidecar(claim.image_id)).write_text("{not json")
    [rebuilt] = ClaimStore(layout).recover("c")
    assert rebuilt.image_id == claim.image_id


def test_completion_moves_to_done_failed_with_reason_or_deletes(work: Path) -> None:
    layout = make_layout(work)
    store = ClaimStore(layout)
    claims = [store.claim(str(write_file(Path(layout.inbox) / f"{i}.jpg", jpeg_bytes(seed=i))),
                          f"{i}.jpg", "c") for i in range(3)]
    done = store.complete(claims[0], DONE)
    failed = store.complete(claims[1], FAILED, {"reason": "decode failed"})
    gone = store.complete(claims[2], DELETE)
    assert done is not None and Path(done).parent.parent == Path(layout.done)
    assert failed is not None and Path(failed).exists()
    assert json.loads(Path(failed + REASON_SUFFIX).read_text())["reason"] == "decode failed"
    assert gone is None and not Path(claims[2].path).exists()
    assert os.listdir(layout.processing) == []


def test_non_ascii_and_undecodable_names_become_valid_utf8_paths(work: Path) -> None:
    layout = make_layout(work)
    store = ClaimStore(layout)
    nice = write_file(Path(layout.inbox) / "prüfteil_検査.jpg", jpeg_bytes())
    raw = os.path.join(os.fsencode(layout.inbox), b"bad\xff\xfename.jpg")
    with open(raw, "wb") as f:
        f.write(jpeg_bytes(seed=9))
    a = store.claim(str(nice), "prüfteil_検査.jpg", "c")
    b = store.claim(os.fsdecode(raw), os.fsdecode(b"bad\xff\xfename.jpg"), "c")
    assert a.path.endswith("__prüfteil_検査.jpg")
    assert b.path.endswith("__bad__name.jpg")
    b.path.encode("utf-8")  # would raise on surrogates
    assert Path(b.path).read_bytes() == jpeg_bytes(seed=9)


def test_an_image_with_the_longest_name_can_fail_with_its_reason(work: Path) -> None:
    layout = make_layout(work)
    store = ClaimStore(layout)
    name = "検査" * 40 + ".jpg"  # 244 bytes, a legal name; kept as 200 bytes when claimed
    claim = store.claim(str(write_file(Path(layout.inbox) / name, jpeg_bytes())), name, "c")
    failed = store.complete(claim, FAILED, {"reason": "decode failed"})
    assert failed is not None and Path(failed).exists()
    assert json.loads(Path(failed + REASON_SUFFIX).read_text())["reason"] == "decode failed"
    assert os.listdir(layout.processing) == []


def test_claiming_a_vanished_file_fails_cleanly(work: Path) -> None:
    layout = make_layout(work)
    with pytest.raises(ClaimError):
        ClaimStore(layout).claim(os.path.join(layout.inbox, "nope.jpg"), "nope.jpg", "c")
    assert os.listdir(layout.processing) == []


def test_symlink_is_never_claimed(work: Path, tmp_path: Path) -> None:
    layout = make_layout(work)
    outside = write_file(tmp_path / "secret.jpg", jpeg_bytes())
    link = Path(layout.inbox) / "link.jpg"
    link.symlink_to(outside)
    with pytest.raises(ClaimError):
        ClaimStore(layout).claim(str(link), "link.jpg", "c")
    assert link.is_symlink() and outside.exists()


def test_a_link_found_in_processing_is_quarantined_never_published(work: Path,
                                                                    tmp_path: Path) -> None:
    layout = make_layout(work)
    target = write_file(tmp_path / "elsewhere.jpg", jpeg_bytes())
    Path(layout.processing, "abc-123__evil.jpg").symlink_to(target)
    assert ClaimStore(layout).recover("c") == []
    [reason] = Path(layout.quarantine).rglob("*.reason.json")
    assert "not a regular file in processing/" in json.loads(reason.read_text())["reason"]
    assert target.read_bytes() == jpeg_bytes()


def test_a_folder_swapped_for_a_link_cannot_make_a_claim_reach_outside(work: Path,
                                                                       tmp_path: Path) -> None:
    layout = make_layout(work)
    outside = write_file(tmp_path / "outside" / "x.jpg", jpeg_bytes())
    (Path(layout.inbox) / "cam").symlink_to(outside.parent)
    with pytest.raises(ClaimError, match="inside the inbox"):
        ClaimStore(layout).claim(os.path.join(layout.inbox, "cam", "x.jpg"), "cam/x.jpg", "c")
    assert outside.exists() and os.listdir(layout.processing) == []
