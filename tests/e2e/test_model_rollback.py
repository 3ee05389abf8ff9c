"""A Model version that fails its acceptance set never inspects a part: the whole graph runs, a
deployment brings a model whose thresholds flip verdicts, the Inference gate refuses it, the
runtime rolls back, and every image dropped before, during and after gets the old model's verdict,
none lost. With AcceptancePolicy WARN the same model goes through, with an alert."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.inference.helpers import blind_model
from vqitools.build import build_component
from vqitools.graphrun import archived, wait

from .line import (
    INFERENCE,
    MODEL,
    build_components,
    by_image,
    cloud_alerts,
    deploy,
    deployment_of,
    drop,
    expected_verdicts,
    model_version,
    running_graph,
)

BAD_VERSION = "1.1.1"


@pytest.mark.timeout(1800)
def test_a_model_that_fails_its_acceptance_set_is_rolled_back_and_nothing_is_lost(
        tmp_path: Path) -> None:
    build_components()
    # Model 1.1.1: the same weights, a confidence threshold no scratch reaches
    bad = model_version(tmp_path / "next" / "model", BAD_VERSION)
    blind_model(bad, BAD_VERSION)
    build_component(bad)
    root = tmp_path / "root"
    with running_graph(root) as graph:
        document = deployment_of(graph, failureHandlingPolicy="ROLLBACK")
        old_model = document["components"][MODEL]["componentVersion"]
        names = drop(root / "inbox", "before")
        wait(lambda: len(by_image(root)) >= len(names), 300, "results of the first images")
        document["components"][MODEL]["componentVersion"] = BAD_VERSION
        proc = deploy(root, document, tmp_path / "next", tmp_path)
        wait(lambda: graph.state(INFERENCE)[0] != "RUNNING", 60, "Inference to restart")
        names += drop(root / "inbox", "during")
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 1, out
        assert out.strip().splitlines()[-1] == "FAILED FAILED_ROLLBACK_COMPLETE", out
        assert graph.status()[MODEL]["version"] == old_model
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
