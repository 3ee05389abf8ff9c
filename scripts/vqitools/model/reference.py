"""model.json `reference`: what the model sees and says on validation images, for drift alarms.

Every image goes through the device's own path (Runner.run_one, the component's default
configuration resolved against model.json, the result's verdict rules), so the defect rate and
score distribution are those the line would produce on such images, and the input statistics
come from the same `imagestats.measure` the component runs per image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vqi_inference import drift, results, settings
from vqi_inference.pipeline import Job, Limits, Runner
from vqitools.model.evaluate import open_model, split_images


def reference_stats(model_dir: Path, images: list[Path]) -> dict[str, Any]:
    loaded = open_model(model_dir)
    eff = settings.resolve(settings.parse({}), loaded.spec)
    runner = Runner(loaded)
    limits = Limits(eff.thresholds, input_stats=True)
    buffer = runner.new_buffer()
    verdicts, scores, stats = [], [], []
    for path in images:
        outcome = runner.run_one(Job(path.name, str(path)), limits, buffer)
        result = results.build(outcome, loaded.spec, eff.rules, "")
        if result.error or outcome.input_stats is None:
            raise ValueError(f"{path}: {result.error}")
        verdicts.append(result.verdict)
        scores.append(result.top_score)
        stats.append(outcome.input_stats)
    if not verdicts:
        raise ValueError("no images")
    return drift.reference_from(verdicts, scores, stats)


def write_reference(model_dir: Path, data_yaml: Path, split: str, command: str) -> dict[str, Any]:
    """Compute the reference from `split` of `data_yaml` and store it in model.json."""
    ref = reference_stats(model_dir, split_images(data_yaml, split))
    ref.update({"data": str(data_yaml), "split": split, "command": command})
    drift.Reference.from_json(ref)  # the component must be able to read what we write
    path = Path(model_dir) / "model.json"
    meta = json.loads(path.read_text())
    meta["reference"] = ref
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return ref
