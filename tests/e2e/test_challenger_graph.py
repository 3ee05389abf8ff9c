"""Champion/challenger over the whole graph: a Model version that carries a challenger is
deployed into a running line; the champion's verdicts stand, the challenger's record reaches
the cloud, its disagreements reach the bucket with both label sets, and the report sums it up."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.inference.helpers import blind_model
from vqitools.build import build_component
from vqitools.graphrun import wait
from vqitools.model.package import add_challenger

from .line import (
    INFERENCE,
    MODEL,
    REPO,
    build_components,
    by_image,
    deploy,
    deployment_of,
    drop,
    expected_verdicts,
    model_version,
    running_graph,
)

VERSION = "1.2.0"


def model_with_blind_challenger(folder: Path, tmp_path: Path) -> None:
    """The shipped champion, plus a challenger with the same weights and a confidence no scratch
    reaches: it disagrees on every defective sample."""
    add_challenger(blind_model(tmp_path / "blind"), model_version(folder, VERSION))
    build_component(folder)


def s3_disagreements(root: Path) -> list:
    s3 = root / "cloud" / "s3"
    return sorted(p.name for p in s3.rglob("*") if "/disagreement/" in p.as_posix()
                  and "/.metadata/" not in p.as_posix() and p.is_file()) if s3.is_dir() else []


@pytest.mark.timeout(1800)
def test_a_deployed_challenger_is_scored_silently_and_its_disagreements_reviewed(
        tmp_path: Path) -> None:
    build_components()
    model_with_blind_challenger(tmp_path / "next" / "model", tmp_path)
    root = tmp_path / "root"
    with running_graph(root) as graph:
        document = deployment_of(graph)
        document["components"][MODEL]["componentVersion"] = VERSION
        # WARN: the blind challenger fails the acceptance set and is kept (with an alert);
        # REQUIRE would refuse to score with it.
        document["components"][INFERENCE]["configurationUpdate"] = {
            "merge": {"AcceptancePolicy": "WARN", "MetricsIntervalSeconds": 1}}
        proc = deploy(root, document, tmp_path / "next", tmp_path)
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0 and out.strip().endswith("SUCCEEDED SUCCESSFUL"), out
        names = drop(root / "inbox", "c")
        wait(lambda: len(by_image(root)) >= len(names), 300, "the champion's results")
        verdicts = expected_verdicts()
        got = by_image(root)
        assert {n: got[n]["verdict"] for n in names} == {
            n: verdicts[n.split("_", 1)[1]] for n in names}  # only the champion acts
        env = dict(os.environ, PYTHONPATH=f"{REPO / 'scripts'}:{REPO}")

        def summary() -> dict:
            done = subprocess.run([str(REPO / "scripts" / "model"), "challenger-report",
                                   "--root", str(root), "--json"], env=env,
                                  capture_output=True, text=True, timeout=120)
            return json.loads(done.stdout) if done.returncode == 0 else {"images": 0}

        # A burst: the challenger scores what its one thread has time for and skips the rest.
        wait(lambda: summary()["images"] + summary().get("skipped", 0) >= len(names), 60,
             "the challenger's windows")
        body = summary()
        assert body["challenger"]["version"] == "9.0.0-blind" and body["images"] >= 1
        kinds = (".jpg", ".champion.txt", ".challenger.txt", ".json")

        def exported() -> dict:
            files = s3_disagreements(root)
            return {k: sum(n.endswith(k) for n in files) for k in kinds}

        # every scored defective sample is a disagreement (the blind one sees nothing)
        assert body["disagreements"] == round(body["images"] * (1 - body["verdict_agreement"]))
        if body["disagreements"]:
            wait(lambda: min(exported().values()) >= body["disagreements"], 120,
                 "the disagreements in the bucket")
        assert exported() == {k: body["disagreements"] for k in kinds}
        assert summary()["disagreements_uploaded"] == body["disagreements"]
        assert not list((root / "work" / INFERENCE / "disagreements").glob("*.jpg"))
