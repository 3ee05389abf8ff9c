"""The uploader as a real process with the real SDKs against the local IPC and Stream Manager."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Iterator

import jsonschema
import pytest

from shared.messages import ChallengerDisagreement, Feedback, InspectionResult
from vqi_uploader.keys import review_keys

from .rig import BUCKET, REPO, THING, Rig, make_result

SCHEMA = REPO / "shared" / "schemas" / "inference-result.schema.json"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    made = Rig(tmp_path, monkeypatch, {"OkSampleRate": 0.0, "ExportRetryBaseSeconds": 0.2,
                                       "ExportRetryLimit": 2})
    try:
        yield made
    finally:
        made.close()


def batch(rig: Rig, prefix: str, n: int) -> list:
    """Alternating DEFECT (reviewed) and confident OK (not reviewed) results."""
    out = []
    for i in range(n):
        image_id = f"{prefix}-{i:03d}"
        if i % 2 == 0:
            out.append(make_result(image_id, rig.image(image_id), "DEFECT", [0.91, 0.42]))
        else:
            out.append(make_result(image_id, rig.image(image_id), "OK", []))
    return out


def keys_for(result: dict) -> tuple:
    k = review_keys("vqi/review", result["time"], THING, result["verdict"], result["image_id"],
                    result["path"])
    return k.image, k.labels, k.result


def test_offline_period_then_recovery_loses_no_result_and_no_image(rig: Rig):
    rig.start_sm(online=False)
    rig.start_uploader()
    rig.connect_peer()
    results = batch(rig, "off", 10)
    for r in results:
        rig.publish(r)
    rig.redeliver_until_confirmed(results, 30)
    # Buffered in Stream Manager, confirmed to ImageSource, nothing in the cloud yet.
    assert rig.kinesis_ids() == [] and rig.s3_keys() == []
    assert len(rig.staged()) == 5 * 3
    for r in results:
        Path(r["path"]).unlink()  # ImageSource completes the image once confirmed
    rig.sm.set_online(True)
    rig.wait(lambda: len(rig.kinesis_ids()) == 10 and len(rig.s3_keys()) == 15, 30, "exports")
    rig.wait(lambda: rig.staged() == [], 15, "staged files removed")
    assert sorted(rig.kinesis_ids()) == sorted(r["image_id"] for r in results)
    with open(SCHEMA, encoding="utf-8") as fh:
        schema = json.load(fh)
    for record in rig.kinesis_records():
        jsonschema.validate(record, schema)
        assert record["thing_name"] == THING
    expected = sorted(k for r in results if r["verdict"] == "DEFECT" for k in keys_for(r))
    assert rig.s3_keys() == sorted(k.split(f"{BUCKET}/")[-1] for k in expected)
    first = results[0]
    image_key, labels_key, result_key = keys_for(first)
    assert rig.s3_read(image_key) == b"\xff\xd8\xff" + first["image_id"].encode() * 50
    assert rig.s3_read(labels_key).decode() == (
        "0 0.150000 0.100000 0.300000 0.100000\n0 0.250000 0.100000 0.300000 0.100000\n"
    )
    assert b'"image_id":"off-000"' in rig.s3_read(result_key)


def test_confirmation_carries_the_result_and_its_archive_record(rig: Rig, assert_valid_metrics):
    rig.config["MetricsIntervalSeconds"] = 1
    rig.start_sm()
    rig.start_uploader()
    rig.connect_peer()
    defect, ok = batch(rig, "conf", 2)
    rig.redeliver_until_confirmed([defect, ok], 20)
    rig.wait(lambda: any(m["totals"].get("results_appended") == 2 for m in rig.metrics), 10,
             "metrics")
    last = rig.metrics[-1]
    assert last["component"] == "com.example.vqi.Uploader" and last["thing_name"] == THING
    assert last["totals"]["review_staged"] == 1
    assert sum(m["counts"].get("results_appended", 0) for m in rig.metrics) == 2
    for message in rig.metrics:
        assert_valid_metrics(message)
    got = rig.confirmed()
    archive = got[defect["image_id"]][0]["archive"]
    assert archive["review"] is True and archive["reason"] == "defect"
    assert archive["s3_key"] == keys_for(defect)[0]
    assert isinstance(archive["result_sequence"], int)
    assert got[ok["image_id"]][0]["archive"]["review"] is False
    assert got[ok["image_id"]][0]["verdict"] == "OK"


def test_a_result_delivered_again_is_confirmed_again_but_not_exported_twice(rig: Rig):
    rig.start_sm()
    rig.start_uploader()
    rig.connect_peer()
    results = batch(rig, "dup", 2)
    rig.redeliver_until_confirmed(results, 20)
    rig.wait(lambda: len(rig.kinesis_ids()) == 2 and rig.staged() == [], 20, "export")
    rig.stop_uploader()  # the record of handled ids survives a restart
    rig.start_uploader()
    for r in results:
        rig.publish(r)
    rig.wait(lambda: all(len(v) == 2 for v in rig.confirmed().values()), 20, "re-confirmation")
    again = rig.confirmed()[results[0]["image_id"]][1]["archive"]
    assert again["duplicate"] is True
    assert again["result_sequence"] == rig.confirmed()[results[0]["image_id"]][0][
        "archive"]["result_sequence"]
    assert sorted(rig.kinesis_ids()) == sorted(r["image_id"] for r in results)
    assert rig.staged() == []


def test_restart_of_uploader_and_stream_manager_loses_nothing(rig: Rig):
    rig.start_sm(online=False)
    rig.start_uploader()
    rig.connect_peer()
    first = batch(rig, "r1", 6)
    rig.redeliver_until_confirmed(first, 30)
    # Kill both while exports are still buffered; results arriving meanwhile are not confirmed.
    rig.stop_uploader(signal.SIGKILL)
    rig.stop_sm()
    second = batch(rig, "r2", 6)
    for r in second:
        rig.publish(r)  # nobody listens: lost on the bus, so ImageSource must redeliver
    rig.start_sm(online=False)
    rig.start_uploader()
    rig.stop_sm()  # Stream Manager goes away under a running uploader
    for r in second[:3]:
        rig.publish(r)
    rig.wait(lambda: False, 1.5, None)
    assert not any(r["image_id"] in rig.confirmed() for r in second)
    rig.start_sm(online=True)
    rig.redeliver_until_confirmed(second, 40)
    everything = first + second
    rig.wait(lambda: len(set(rig.kinesis_ids())) == 12 and len(rig.s3_keys()) == 18, 40,
             "every export")
    rig.wait(lambda: rig.staged() == [], 20, "staged files removed")
    assert sorted(set(rig.kinesis_ids())) == sorted(r["image_id"] for r in everything)


def test_failed_export_keeps_the_staged_files_and_a_restart_retries_them(rig: Rig):
    rig.start_sm()
    rig.start_uploader()
    rig.connect_peer()
    result = make_result("fail-1", rig.image("fail-1"), "DEFECT", [0.8])
    image_key = keys_for(result)[0]
    blocker = rig.sm_root / "s3" / BUCKET / image_key
    blocker.mkdir(parents=True)  # the object path is a folder: every upload of it fails
    rig.redeliver_until_confirmed([result], 20)
    rig.wait(lambda: "failed for good" in rig.log_path.read_text(), 30, "final failure")
    assert rig.staged() == ["fail-1/fail-1.jpg"]  # sidecars exported, the image kept
    blocker.rmdir()
    rig.stop_uploader()
    rig.start_uploader()
    rig.wait(lambda: rig.staged() == [], 30, "retry after restart")
    assert rig.s3_read(image_key) == Path(result["path"]).read_bytes()


def test_error_missing_image_uncertain_and_bad_messages(rig: Rig):
    rig.start_sm()
    rig.start_uploader()
    rig.connect_peer()
    error = make_result("err-1", rig.image("err-1"), "ERROR", [])
    missing = make_result("gone-1", str(rig.inbox / "gone-1.jpg"), "DEFECT", [0.9])
    uncertain = make_result("unc-1", rig.image("unc-1"), "OK", [0.45])
    rig.publish({"not": "a result"})
    rig.publish({**error, "verdict": "MAYBE"})
    rig.redeliver_until_confirmed([error, missing, uncertain], 20)
    got = {k: v[0]["archive"] for k, v in rig.confirmed().items()}
    assert set(got) == {"err-1", "gone-1", "unc-1"}
    assert got["err-1"]["review"] is False
    assert got["gone-1"]["review"] is False and got["gone-1"]["error"] == "image missing"
    assert got["unc-1"]["review"] is True and got["unc-1"]["reason"] == "uncertain"
    rig.wait(lambda: len(rig.kinesis_ids()) == 3 and rig.staged() == [], 20, "exports")
    assert rig.s3_keys() == sorted(k for k in keys_for(uncertain))


def test_a_live_configuration_update_changes_the_selection(rig: Rig):
    rig.start_sm()
    rig.start_uploader()
    rig.connect_peer()
    before = make_result("ok-before", rig.image("ok-before"), "OK", [])
    rig.redeliver_until_confirmed([before], 20)
    assert rig.confirmed()["ok-before"][0]["archive"]["review"] is False
    rig.ipc.update_configuration("com.example.vqi.Uploader", [], {"OkSampleRate": 1.0})
    rig.wait(lambda: "configuration updated" in rig.log_path.read_text(), 10, "update")
    after = make_result("ok-after", rig.image("ok-after"), "OK", [])
    rig.redeliver_until_confirmed([after], 20)
    assert rig.confirmed()["ok-after"][0]["archive"]["reason"] == "drift_sample"
    rig.ipc.update_configuration("com.example.vqi.Uploader", [], {"OkSampleRate": 7})
    rig.wait(lambda: "update rejected" in rig.log_path.read_text(), 10, "rejection")


def test_a_stream_manager_that_lost_its_streams_gets_them_back(rig: Rig):
    import shutil

    rig.start_sm(online=False)
    rig.start_uploader()
    rig.connect_peer()
    before = batch(rig, "lost-a", 4)
    rig.redeliver_until_confirmed(before, 20)
    assert len(rig.staged()) == 6  # staged, their export tasks still in Stream Manager
    rig.stop_sm()
    shutil.rmtree(rig.sm_root)  # a Memory-persisted or wiped Stream Manager loses them
    rig.start_sm()
    after = batch(rig, "lost-b", 4)
    rig.redeliver_until_confirmed(after, 30)
    rig.wait(lambda: len(rig.s3_keys()) == 12, 30, "every staged file exported")
    rig.wait(lambda: rig.staged() == [], 30, "status read from the new stream's start")
    # Results still in the lost streams are gone with them; later ones all arrive.
    rig.wait(lambda: len(rig.kinesis_ids()) == 4, 30, "results")
    assert sorted(rig.kinesis_ids()) == sorted(r["image_id"] for r in after)


def disagreement(rig: Rig, image_id: str) -> dict:
    """What Inference publishes when its challenger disagrees: the image it kept, both results."""
    kept = rig.kernel / "work" / "com.example.vqi.Inference" / "disagreements"
    kept.mkdir(parents=True, exist_ok=True)
    path = kept / f"{image_id}.jpg"
    path.write_bytes(b"\xff\xd8\xff" + image_id.encode() * 50)
    champion = make_result(image_id, str(rig.inbox / f"{image_id}.jpg"), "DEFECT", [0.9])
    challenger = make_result(image_id, champion["path"], "OK", [])
    return ChallengerDisagreement(
        image_id=image_id, image_path=str(path), champion=champion, challenger=challenger,
        comparison={"verdict_agrees": False, "per_class": {}, "score_deltas": []},
        thing_name=THING, time="2026-03-07T10:00:00.000Z").to_dict()


def test_a_disagreement_reaches_the_bucket_with_both_label_sets(rig: Rig):
    rig.start_sm()
    rig.start_uploader()
    rig.connect_peer()
    message = disagreement(rig, "dis-001")
    rig.publish_disagreement(message)
    base = f"vqi/review/disagreement/2026/03/07/{THING}/dis-001"
    rig.wait(lambda: f"{base}.json" in rig.s3_keys(), 20, "disagreement export")
    assert {f"{base}.jpg", f"{base}.champion.txt", f"{base}.challenger.txt"} <= set(rig.s3_keys())
    assert rig.s3_read(f"{base}.champion.txt").decode().startswith("0 ")
    assert rig.s3_read(f"{base}.challenger.txt") == b""  # the challenger found nothing
    assert json.loads(rig.s3_read(f"{base}.json"))["comparison"]["verdict_agrees"] is False
    rig.wait(lambda: not Path(message["image_path"]).exists(), 10, "the kept image deleted")
    assert rig.confirmed() == {}  # nothing for ImageSource: no camera image waits on it


def test_a_disagreement_naming_another_file_is_refused_and_the_file_kept(rig: Rig):
    rig.start_sm()
    rig.start_uploader()
    rig.connect_peer()
    victim = rig.tmp / "precious.jpg"
    victim.write_bytes(b"keep me")
    message = {**disagreement(rig, "dis-002"), "image_path": str(victim)}
    rig.publish_disagreement(message)
    rig.wait(lambda: "not an image Inference kept" in rig.log_tail(), 10, "refusal logged")
    assert victim.read_bytes() == b"keep me"
    assert not any("dis-002" in key for key in rig.s3_keys())


def feedback(rig: Rig, image_id: str, label: str, boxes: list) -> dict:
    """What the Dashboard publishes when an operator judges a result: its copy of the image."""
    kept = rig.kernel / "work" / "com.example.vqi.Dashboard" / "feedback"
    kept.mkdir(parents=True, exist_ok=True)
    fid = f"{abs(hash((image_id, label))):032x}"[-32:]
    path = kept / f"{fid}.jpg"
    path.write_bytes(b"\xff\xd8\xff" + image_id.encode() * 50)
    result = make_result(image_id, str(rig.inbox / f"{image_id}.jpg"), "DEFECT", [0.9])
    return Feedback(feedback_id=fid, image_id=image_id, label=label, image_path=str(path),
                    result=result, boxes=boxes, thing_name=THING).to_dict()


@pytest.mark.parametrize("label,boxes,lines", [
    ("confirm", [], 1), ("false_alarm", [], 0), ("missed_defect", [[0.5, 0.5, 0.7, 0.6]], 2),
])
def test_feedback_reaches_the_bucket_with_the_prelabel_and_the_operators_label(
        rig: Rig, label: str, boxes: list, lines: int):
    rig.start_sm()
    rig.start_uploader()
    rig.connect_peer()
    message = feedback(rig, "fb-001", label, boxes)
    image = Path(message["image_path"]).read_bytes()
    rig.publish_feedback(message)
    when = InspectionResult.from_dict(message["result"]).time[:10].replace("-", "/")
    base = f"vqi/review/feedback/{when}/{THING}/fb-001"
    rig.wait(lambda: f"{base}.json" in rig.s3_keys(), 20, "feedback export")
    assert {f"{base}.jpg", f"{base}.prelabel.txt", f"{base}.label.txt"} <= set(rig.s3_keys())
    assert rig.s3_read(f"{base}.jpg") == image
    assert rig.s3_read(f"{base}.prelabel.txt").decode().count("\n") == 1
    label_text = rig.s3_read(f"{base}.label.txt").decode()
    assert label_text.count("\n") == lines
    if boxes:
        assert label_text.splitlines()[-1] == "0 0.600000 0.550000 0.200000 0.100000"
    assert json.loads(rig.s3_read(f"{base}.json"))["label"] == label
    rig.wait(lambda: not Path(message["image_path"]).exists(), 10, "the copy deleted")
    assert rig.confirmed() == {}


def test_feedback_naming_another_file_is_refused_and_the_file_kept(rig: Rig):
    rig.start_sm()
    rig.start_uploader()
    rig.connect_peer()
    victim = rig.tmp / "precious.jpg"
    victim.write_bytes(b"keep me")
    rig.publish_feedback({**feedback(rig, "fb-002", "confirm", []), "image_path": str(victim)})
    rig.wait(lambda: "not an image the Dashboard kept" in rig.log_tail(), 10, "refusal logged")
    assert victim.read_bytes() == b"keep me"
    assert not any("fb-002" in key for key in rig.s3_keys())


def test_a_feedback_folder_of_another_component_is_not_trusted(rig: Rig):
    rig.start_sm()
    rig.start_uploader()
    rig.connect_peer()
    lookalike = rig.kernel / "work" / "com.example.Other" / "feedback"
    lookalike.mkdir(parents=True)
    victim = lookalike / "0123.jpg"
    victim.write_bytes(b"keep me")
    rig.publish_feedback({**feedback(rig, "fb-003", "confirm", []), "image_path": str(victim)})
    rig.wait(lambda: "not an image the Dashboard kept" in rig.log_tail(), 10, "refusal logged")
    assert victim.read_bytes() == b"keep me"
