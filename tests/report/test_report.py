"""The HTML inspection report: self-contained, annotated defects, verdict table, histogram."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vqitools.report import histogram_svg, summarise, write_report

REPO = Path(__file__).resolve().parents[2]


def result(image_id: str, path: Path, verdict: str, detections=(), total=10.0, error=None):
    return {"image_id": image_id, "path": str(path), "verdict": verdict,
            "detections": list(detections), "timings_ms": {"total": total}, "error": error}


def det(box, score=0.9):
    return {"class_id": 0, "class_name": "scratch", "score": score, "box": box,
            "box_norm": [0, 0, 0, 0]}


def test_summary_counts_verdicts_and_latency_percentiles():
    results = [result("a", Path("a.jpg"), "OK", total=10), result("b", Path("b.jpg"), "DEFECT",
               total=30), result("c", Path("c.jpg"), "ERROR", total=20, error="corrupt")]
    s = summarise(results, wall_seconds=2.0)
    assert (s.images, s.ok, s.defect, s.errors) == (3, 1, 1, 1)
    assert s.latency_ms["p50"] == 20 and s.throughput == 1.5


def test_report_embeds_one_annotated_thumbnail_per_defect_and_lists_every_result(tmp_path):
    image = np.full((240, 320, 3), 128, np.uint8)
    path = tmp_path / "id1__tag.png"
    cv2.imwrite(str(path), image)
    results = [result("id1", path, "DEFECT", [det([10, 20, 100, 60])]),
               result("id2", tmp_path / "id2__good.png", "OK"),
               result("id3", tmp_path / "id3__bad.bin", "ERROR", error="not_an_image: text")]
    out = write_report(results, tmp_path / "out", lambda r: Path(r["path"]), model_dir=None)
    page = out.read_text()
    assert page.count("data:image/png;base64,") == 1
    assert "tag.png" in page and "good.png" in page and "not_an_image: text" in page
    thumb = cv2.imread(str(tmp_path / "out/thumbnails/id1.png"))
    assert thumb is not None
    # the box was drawn in red on the grey image
    assert (thumb[:, :, 2] > 200).any() and not (image[:, :, 2] > 200).any()
    assert "<script" not in page and "http" not in page.split("<body>")[1]


def test_histogram_has_a_bar_per_bin_and_handles_no_data():
    assert histogram_svg([1, 2, 3, 4], bins=4).count("<rect") == 4
    assert "No latency" in histogram_svg([])


def test_report_shows_the_model_card_summary(tmp_path):
    page = write_report([], tmp_path, lambda r: None,
                        model_dir=REPO / "components/model").read_text()
    assert "vqi-scratch-yolo" in page and "mAP50" in page
