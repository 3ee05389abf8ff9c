"""A Model version that fails its acceptance set never inspects a part: the whole graph runs, a
deployment brings a model whose thresholds flip verdicts, the Inference gate refuses it, the
runtime rolls back, and every image dropped before, during and after gets the old model's verdict,
none lost. With AcceptancePolicy WARN the same model goes through, with an alert."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.inference.helpers import blind_model
from vqitools.build import build_component
from vqitools.graphrun import INFERENCE, Graph, archived, wait

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "components" / "model" / "samples"
MODEL = "com.example.vqi.Model"
BAD_VERSION = "1.1.1"


def expected_verdicts() -> dict:
    images = json.loads((SAMPLES / "expected.json").read_text())["images"]
    return {name: "DEFECT" if boxes else "OK" for name, boxes in images.items()}


def build_blind_model(folder: Path) -> None:
    """Model 1.1.1: the same weights, a confidence threshold no scratch reaches."""
    shutil.copytree(REPO / "components" / "model", folder,
                    ignore=shutil.ignore_patterns("greengrass-build"))
    gdk = json.loads((folder / "gdk-config.json").read_text())
    gdk["component"][MODEL]["version"] = BAD_VERSION
    (folder / "gdk-config.json").write_text(json.dumps(gdk))
    blind_model(folder, BAD_VERSION)  # model.onnx + model.json over the copied ones
    build_component(folder)


def drop(inbox: Path, tag: str) -> list:
    names = []
    for sample in sorted(SAMPLES.glob("*.jpg")):
        name = f"{tag}_{sample.name}"
        shutil.copyfile(sample, inbox / f".{name}.part")
        os.rename(inbox / f".{name}.part", inbox / name)
        names.append(name)
    return names


def results(root: Path) -> list:
    path = root / "cloud" / "kinesis.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(json.loads(line)["dataUtf8"]) for line in lines if line.strip()]


def by_image(root: Path) -> dict:
    return {Path(r["path"]).name.split("__", 1)[-1]: r for r in results(root)}


def cloud_alerts(root: Path) -> list:
    path = root / "cloud" / "iotcore.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [m["payload"] for m in map(json.loads, lines) if m["topic"].endswith("/alerts")]


def deploy(root: Path, document: dict, components_dir: Path, tmp_path: Path) -> subprocess.Popen:
    doc = tmp_path / f"deployment-{time.monotonic_ns()}.json"
    doc.write_text(json.dumps(document))
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'scripts'}:{REPO}")
    return subprocess.Popen([sys.executable, "-m", "localgg", "deploy", "--root", str(root),
                             "--components-dir", str(components_dir), str(doc)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.timeout(1800)
def test_a_model_that_fails_its_acceptance_set_is_rolled_back_and_nothing_is_lost(
        tmp_path: Path) -> None:
    for folder in sorted((REPO / "components").iterdir()):
        subprocess.run([sys.executable, str(REPO / "scripts/build-component")], cwd=folder,
                       check=True, capture_output=True, timeout=300)
    build_blind_model(tmp_path / "next" / "model")
    root = tmp_path / "root"
    graph = Graph(root)
    try:
        graph.start()
        wait(graph.ready, 1500, "the graph to be RUNNING")
        running = {name: entry["version"] for name, entry in graph.status().items()}
        names = drop(root / "inbox", "before")
        wait(lambda: len(by_image(root)) >= len(names), 300, "results of the first images")
        document = {"components": {n: {"componentVersion": v} for n, v in running.items()},
                    "deploymentPolicies": {"failureHandlingPolicy": "ROLLBACK"}}
        document["components"][MODEL]["componentVersion"] = BAD_VERSION
        proc = deploy(root, document, tmp_path / "next", tmp_path)
        wait(lambda: graph.state(INFERENCE)[0] != "RUNNING", 60, "Inference to restart")
        names += drop(root / "inbox", "during")
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 1, out
        assert out.strip().splitlines()[-1] == "FAILED FAILED_ROLLBACK_COMPLETE", out
        assert graph.status()[MODEL]["version"] == running[MODEL]
        names += drop(root / "inbox", "after")
        wait(lambda: len(by_image(root)) >= len(names), 300, "every image's result")
        got = by_image(root)
        verdicts = expected_verdicts()
        wrong = {n: (r["verdict"], r["model"]["version"]) for n, r in got.items()
                 if r["verdict"] != verdicts[n.split("_", 1)[1]]
                 or r["model"]["version"] == BAD_VERSION}
        assert not wrong, wrong
        assert sorted(got) == sorted(names)
        # ImageSource moves an image to done/ just after its result is stored
        wait(lambda: len(archived(root)) >= len(names), 60, "every image archived")
        assert sorted(archived(root)) == sorted(names)  # each exactly once
        refused = [a for a in cloud_alerts(root) if a["model"]["version"] == BAD_VERSION]
        assert refused and {a["state"] for a in refused} == {"RAISED"}
        assert refused[0]["details"]["failed"] == 6

        document["components"][INFERENCE]["configurationUpdate"] = {
            "merge": {"AcceptancePolicy": "WARN"}}
        warned = deploy(root, document, tmp_path / "next", tmp_path)
        out, _ = warned.communicate(timeout=600)
        assert warned.returncode == 0 and out.strip().endswith("SUCCEEDED SUCCESSFUL"), out
        assert any(a["state"] == "WARNING" for a in cloud_alerts(root))
        late = drop(root / "inbox", "warned")
        wait(lambda: len(by_image(root)) >= len(names) + len(late), 300, "results under WARN")
        assert {by_image(root)[n]["model"]["version"] for n in late} == {BAD_VERSION}
        graph.stop()
    finally:
        graph.kill()
