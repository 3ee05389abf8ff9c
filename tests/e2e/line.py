"""The whole line for end-to-end tests: built components under a running local runtime, camera
images dropped into its inbox, Model versions made from the shipped one, deployments into it,
and what the local cloud received."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator

from vqitools.graphrun import Graph, wait

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "components" / "model" / "samples"
MODEL = "com.example.vqi.Model"
INFERENCE = "com.example.vqi.Inference"


def build_components() -> None:
    """Build every component in place, as run-local does."""
    for folder in sorted((REPO / "components").iterdir()):
        subprocess.run([sys.executable, str(REPO / "scripts/build-component")], cwd=folder,
                       check=True, capture_output=True, timeout=300)


@contextmanager
def running_graph(root: Path, merges: Dict[str, Dict[str, Any]] | None = None
                  ) -> Iterator[Graph]:
    """The graph RUNNING on `root` (with `merges` into components' configuration); stopped
    cleanly after the block, killed if it fails."""
    graph = Graph(root, merges)
    try:
        graph.start()
        wait(graph.ready, 1500, "the graph to be RUNNING")
        yield graph
        graph.stop()
    finally:
        graph.kill()


def model_version(folder: Path, version: str) -> Path:
    """A copy of the Model component's project at `version`, to change and then build."""
    shutil.copytree(REPO / "components" / "model", folder,
                    ignore=shutil.ignore_patterns("greengrass-build", "challenger"))
    gdk = json.loads((folder / "gdk-config.json").read_text())
    gdk["component"][MODEL]["version"] = version
    (folder / "gdk-config.json").write_text(json.dumps(gdk))
    return folder


def deployment_of(graph: Graph, **policies: Any) -> Dict[str, Any]:
    """A deployment document naming every running component at its running version."""
    running = {name: entry["version"] for name, entry in graph.status().items()}
    document: Dict[str, Any] = {
        "components": {n: {"componentVersion": v} for n, v in running.items()}}
    if policies:
        document["deploymentPolicies"] = policies
    return document


def deploy(root: Path, document: dict, components_dir: Path, tmp_path: Path) -> subprocess.Popen:
    """`python -m localgg deploy` against the running graph, followed to its outcome."""
    doc = tmp_path / f"deployment-{time.monotonic_ns()}.json"
    doc.write_text(json.dumps(document))
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'scripts'}:{REPO}")
    return subprocess.Popen([sys.executable, "-m", "localgg", "deploy", "--root", str(root),
                             "--components-dir", str(components_dir), str(doc)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def expected_verdicts() -> dict:
    images = json.loads((SAMPLES / "expected.json").read_text())["images"]
    return {name: "DEFECT" if boxes else "OK" for name, boxes in images.items()}


def drop(inbox: Path, tag: str) -> list:
    """Every sample into the inbox as `<tag>_<name>`, each renamed in whole."""
    names = []
    for sample in sorted(SAMPLES.glob("*.jpg")):
        name = f"{tag}_{sample.name}"
        shutil.copyfile(sample, inbox / f".{name}.part")
        os.rename(inbox / f".{name}.part", inbox / name)
        names.append(name)
    return names


def by_image(root: Path) -> dict:
    """The results Kinesis received, by camera file name."""
    path = root / "cloud" / "kinesis.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    found = [json.loads(json.loads(line)["dataUtf8"]) for line in lines if line.strip()]
    return {Path(r["path"]).name.split("__", 1)[-1]: r for r in found}


def cloud_alerts(root: Path) -> list:
    path = root / "cloud" / "iotcore.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [m["payload"] for m in map(json.loads, lines) if m["topic"].endswith("/alerts")]
