"""End to end: the sample images through the real, built components under the local runtime."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "components" / "model" / "samples"
SCHEMA = json.loads((REPO / "shared/schemas/inference-result.schema.json").read_text())


def expected() -> dict:
    boxes = json.loads((SAMPLES / "expected.json").read_text())["images"]
    return {name: ("DEFECT" if b else "OK") for name, b in boxes.items()}


def original_name(path: str) -> str:
    name = Path(path).name
    return name.split("__", 1)[1] if "__" in name else name


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    for folder in sorted((REPO / "components").iterdir()):
        subprocess.run([sys.executable, str(REPO / "scripts/build-component")], cwd=folder,
                       check=True, capture_output=True, timeout=300)
    root = tmp_path_factory.mktemp("e2e") / "root"
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'scripts'}:{REPO}")
    proc = subprocess.run(
        [sys.executable, "-m", "vqitools.demo", "--root", str(root), "--timeout", "240"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800,
    )
    return root, proc


@pytest.mark.timeout(1900)
def test_the_demo_finishes_successfully_and_prints_a_summary(run):
    root, proc = run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| DEFECT" in proc.stdout and "report:" in proc.stdout
    if os.geteuid() == 0:  # as on a device: the nucleus runs components as ggc_user
        assert "components run as ggc_user:ggc_group" in proc.stdout


def test_the_results_topic_carries_the_expected_verdicts(run):
    root, _ = run
    text = (root / "report/results.jsonl").read_text()
    results = [json.loads(line) for line in text.splitlines()]
    for result in results:
        jsonschema.validate(result, SCHEMA)
    assert {original_name(r["path"]): r["verdict"] for r in results} == expected()


def test_iot_core_received_every_result_under_the_thing_name(run):
    root, _ = run
    lines = [json.loads(line) for line in (root / "cloud/iotcore.jsonl").read_text().splitlines()]
    results = [m["payload"] for m in lines if m["topic"] == "vqi/local-thing/results"]
    assert {original_name(r["path"]): r["verdict"] for r in results} == expected()


def test_review_images_and_label_sidecars_are_in_the_local_bucket(run):
    root, _ = run
    objects = [p for p in (root / "cloud/s3").rglob("*")
               if p.is_file() and ".metadata" not in p.parts]
    defects = sum(v == "DEFECT" for v in expected().values())
    images = [p for p in objects if p.suffix == ".jpg"]
    labels = {p.stem: p for p in objects if p.suffix == ".txt"}
    defect_images = [p for p in images if "/defect/" in p.as_posix()]
    assert len(defect_images) == defects
    for image in images:
        lines = labels[image.stem].read_text().split("\n")
        rows = [line.split() for line in lines if line.strip()]
        assert all(len(r) == 5 and r[0] == "0" for r in rows)
        if "/defect/" in image.as_posix():
            assert rows, f"a defect image needs at least one label: {image}"


def test_the_inbox_is_empty_and_nothing_failed(run):
    root, _ = run
    assert not [p for p in (root / "inbox").rglob("*") if p.is_file()]
    assert not [p for p in (root / "images/processing").rglob("*") if p.is_file()]
    assert not [p for p in (root / "images/failed").rglob("*") if p.is_file()]
    done = [p for p in (root / "images/done").rglob("*") if p.is_file()]
    assert sorted(original_name(str(p)) for p in done) == sorted(expected())


def test_the_report_embeds_an_annotated_image_per_defect(run):
    root, _ = run
    page = (root / "report/report.html").read_text()
    defects = sum(v == "DEFECT" for v in expected().values())
    assert page.count("<img src='data:image/png;base64,") == defects
    assert len(list((root / "report/thumbnails").glob("*.png"))) == defects


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def live(run, tmp_path_factory):
    """The graph deployed with the fleet's example site file, as on a default core device."""
    from localgg.runtime import LocalRuntime, RuntimeOptions
    from vqitools import venvcache
    from vqitools.demo import Observed, demo_overrides, observe, prepare_folders

    root = tmp_path_factory.mktemp("live") / "root"
    overrides = demo_overrides(root, REPO / "scripts/sites/example.yaml")
    # A non-default port, set only where a deployment sets it: Stream Manager's configuration.
    overrides["aws.greengrass.StreamManager"] = {"merge": {
        "STREAM_MANAGER_SERVER_PORT": str(free_port())}}
    options = RuntimeOptions(root=root, components_dir=REPO / "components", overrides=overrides,
                             extra_env=venvcache.runtime_env(overrides))
    runtime = LocalRuntime(options)
    client = None
    try:
        runtime.start(prepare=lambda run_as: prepare_folders(root, run_as))
        states = runtime.wait_settled(900)
        assert set(states.values()) <= {"RUNNING", "FINISHED"}, states
        observed = Observed()
        client = observe(runtime, observed)
        yield runtime, observed
    finally:
        if client is not None:
            client.close()
        runtime.stop()


@pytest.mark.timeout(1200)
def test_components_run_unprivileged_in_private_work_folders(live):
    runtime, _ = live
    services = ["com.example.vqi.ImageSource", "com.example.vqi.Inference",
                "com.example.vqi.Uploader"]
    for name in services:
        pid = runtime.supervisor.status(name).pid
        uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
        assert uid == os.geteuid() if os.geteuid() != 0 else uid != 0, (name, uid)
    for name in [*services, "com.example.vqi.Model"]:
        work = runtime.root / "work" / name
        assert stat.S_IMODE(work.stat().st_mode) == 0o700, name
        if os.geteuid() == 0:
            assert work.stat().st_uid == runtime.run_as.uid != 0


@pytest.mark.timeout(1200)
def test_example_site_publishes_defects_to_iot_core_on_a_default_nucleus(live):
    runtime, observed = live
    (runtime.root / "inbox" / "defect.jpg").write_bytes((SAMPLES / "defective_01.jpg").read_bytes())
    cloud = runtime.root / "cloud/iotcore.jsonl"

    def published() -> list:
        if not cloud.is_file():
            return []
        lines = [json.loads(line) for line in cloud.read_text().splitlines()]
        return [m for m in lines if m["topic"] == "vqi/local-thing/results"
                and original_name(m["payload"]["path"]) == "defect.jpg"]

    assert wait_for(lambda: published(), 120), "no IoT Core result for the defect image"
    assert published()[0]["payload"]["verdict"] == "DEFECT"
    held = json.loads((runtime.root / "config/config.json").read_text())
    assert not held["aws.greengrass.Nucleus"]["interpolateComponentConfiguration"]


@pytest.mark.timeout(1200)
def test_bad_files_go_to_failed_or_quarantine_with_a_reason_and_the_rest_goes_on(live):
    runtime, observed = live
    root = runtime.root
    inbox = root / "inbox"
    good = (SAMPLES / "good_01.jpg").read_bytes()
    corrupt = good[:200] + bytes(len(good) - 210) + good[-10:]  # JPEG start and end, no data
    (inbox / "corrupt.jpg").write_bytes(corrupt)
    (inbox / "notes.jpg").write_text("not an image")
    (inbox / "good.jpg").write_bytes(good)

    def files(folder: str) -> list:
        return sorted(p.name for p in (root / "images" / folder).rglob("*") if p.is_file())

    def verdicts() -> dict:
        return {original_name(r["path"]): r["verdict"] for r in observed.results.values()}

    assert wait_for(lambda: len(files("failed")) == 2 and len(files("quarantine")) == 2
                    and "good.jpg" in str(files("done")), 120), (files("failed"),
                                                                 files("quarantine"))
    failed_reason = next(p for p in (root / "images/failed").rglob("*.reason.json"))
    assert "corrupt_image" in failed_reason.read_text()
    quarantine_reason = next(p for p in (root / "images/quarantine").rglob("*.reason.json"))
    assert "not an image" in quarantine_reason.read_text()
    assert {k: v for k, v in verdicts().items() if k != "defect.jpg"} == {
        "corrupt.jpg": "ERROR", "good.jpg": "OK"}
    assert not [p for p in inbox.rglob("*") if p.is_file()]
    kinesis = root / "cloud/kinesis.jsonl"
    results = len(observed.results)
    assert wait_for(lambda: kinesis.is_file() and len(kinesis.read_text().splitlines())
                    == results, 30), "every result, errors included, goes to Kinesis"


@pytest.mark.timeout(1200)
def test_the_uploader_reaches_stream_manager_on_the_port_from_its_configuration(live):
    runtime, _ = live
    held = json.loads((runtime.root / "config/config.json").read_text())
    port = int(held["aws.greengrass.StreamManager"]["STREAM_MANAGER_SERVER_PORT"])
    assert runtime.stream_manager.port == port != 8088
    env = runtime.component_env["com.example.vqi.Uploader"]
    assert env["STREAM_MANAGER_SERVER_PORT"] == str(port)  # from the recipe's setEnv
    kinesis = runtime.root / "cloud/kinesis.jsonl"
    assert wait_for(lambda: kinesis.is_file() and kinesis.read_text().strip(), 60), \
        "the Uploader never appended a result to Stream Manager"
