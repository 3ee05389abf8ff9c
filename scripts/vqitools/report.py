"""A self-contained HTML inspection report: annotated defects, verdicts, latency, model card.

Everything (thumbnails, histogram) is embedded, so the file can be mailed or archived as is; the
PNG thumbnails are also written beside it for other tools.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np

from shared.metrics import percentiles

THUMB_MAX = 360
BOX_COLOUR = (40, 40, 230)  # BGR red


@dataclass
class Summary:
    images: int
    ok: int
    defect: int
    errors: int
    latency_ms: Dict[str, float]
    throughput: Optional[float]


def total_latency_ms(result: Dict[str, Any]) -> Optional[float]:
    timings = result.get("timings_ms") or {}
    for key in ("total", "total_ms"):
        if isinstance(timings.get(key), (int, float)):
            return float(timings[key])
    values = [v for v in timings.values() if isinstance(v, (int, float))]
    return float(sum(values)) if values else None


def summarise(results: List[Dict[str, Any]], wall_seconds: Optional[float] = None) -> Summary:
    verdicts = [r.get("verdict") for r in results]
    latencies = [v for v in (total_latency_ms(r) for r in results) if v is not None]
    throughput = len(results) / wall_seconds if wall_seconds else None
    return Summary(
        images=len(results),
        ok=verdicts.count("OK"),
        defect=verdicts.count("DEFECT"),
        errors=verdicts.count("ERROR"),
        latency_ms=percentiles(latencies) if latencies else {},
        throughput=throughput,
    )


def annotate(image: np.ndarray, detections: List[Dict[str, Any]]) -> np.ndarray:
    out = image.copy()
    thickness = max(1, round(max(out.shape[:2]) / 300))
    for det in detections:
        x1, y1, x2, y2 = (int(round(v)) for v in det["box"])
        cv2.rectangle(out, (x1, y1), (x2, y2), BOX_COLOUR, thickness)
        label = f"{det.get('class_name', det.get('class_id'))} {det['score']:.2f}"
        cv2.putText(out, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thickness, BOX_COLOUR, thickness, cv2.LINE_AA)
    return out


def thumbnail(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    scale = min(1.0, THUMB_MAX / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, int(w * scale)), max(1, int(h * scale))),
                           interpolation=cv2.INTER_AREA)
    return image


def histogram_svg(values: Sequence[float], bins: int = 20, width: int = 560,
                  height: int = 160) -> str:
    if not values:
        return "<p>No latency figures.</p>"
    counts, edges = np.histogram(np.asarray(values, dtype=float), bins=bins)
    peak = max(int(counts.max()), 1)
    bar_w = width / bins
    bars = []
    for i, count in enumerate(counts):
        bar_h = (height - 30) * count / peak
        x = i * bar_w
        tip = f"{edges[i]:.1f}-{edges[i + 1]:.1f} ms: {count}"
        bars.append(
            f'<rect x="{x:.1f}" y="{height - 20 - bar_h:.1f}" width="{bar_w - 2:.1f}" '
            f'height="{bar_h:.1f}" fill="#3b6ea5"><title>{tip}</title></rect>'
        )
    labels = (
        f'<text x="0" y="{height - 4}" font-size="11">{edges[0]:.1f} ms</text>'
        f'<text x="{width}" y="{height - 4}" font-size="11" text-anchor="end">'
        f"{edges[-1]:.1f} ms</text>"
    )
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="latency histogram">'
            f'{"".join(bars)}{labels}</svg>')


def display_name(path: str) -> str:
    """The camera's file name (ImageSource claims files as <image id>__<name>)."""
    name = Path(path).name
    return name.split("__", 1)[1] if "__" in name else name


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _model_section(model_dir: Optional[Path]) -> str:
    if model_dir is None or not (model_dir / "model.json").is_file():
        return "<p>Model metadata not found.</p>"
    meta = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    rows = [
        ("Name", meta.get("name")), ("Version", meta.get("version")),
        ("Classes", ", ".join(meta.get("class_names", []))),
        ("Input", "x".join(str(v) for v in meta.get("input", {}).get("shape", []))),
        ("sha256", meta.get("sha256", "")[:16] + "..."),
    ]
    for split, metrics in (meta.get("metrics") or {}).items():
        if isinstance(metrics, dict):
            shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()
                              if isinstance(v, (int, float)))
            rows.append((f"Metrics ({split})", shown))
    card = model_dir / "MODEL_CARD.md"
    intro = ""
    if card.is_file():
        paragraphs = [p.strip() for p in card.read_text(encoding="utf-8").split("\n\n")]
        text = next((p for p in paragraphs if p and not p.startswith("#")), "")
        intro = f"<p>{html.escape(text.replace('**', '').replace('`', ''))}</p>"
    table = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                    for k, v in rows)
    return f"{intro}<table class='kv'>{table}</table>"


STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1100px}
h1{margin-bottom:.2rem} .muted{color:#666}
.cards{display:flex;gap:1rem;margin:1rem 0}
.card{border:1px solid #ddd;border-radius:8px;padding:.8rem 1.2rem;min-width:7rem}
.card b{display:block;font-size:1.6rem}
.DEFECT{color:#b3261e} .OK{color:#1e7b34} .ERROR{color:#a15c00}
.gallery{display:flex;flex-wrap:wrap;gap:1rem}
figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:.4rem;background:#fafafa}
figcaption{font-size:.8rem;max-width:360px;word-break:break-all}
table{border-collapse:collapse;font-size:.85rem} td,th{padding:.25rem .6rem;text-align:left}
table.results tr:nth-child(even){background:#f4f4f4} table.kv th{color:#555}
"""


def write_report(
    results: List[Dict[str, Any]],
    out_dir: Path,
    find_image: Callable[[Dict[str, Any]], Optional[Path]],
    model_dir: Optional[Path] = None,
    wall_seconds: Optional[float] = None,
    exported: Optional[Dict[str, int]] = None,
    title: str = "Inspection report",
) -> Path:
    """Write out_dir/report.html and out_dir/thumbnails/*.png; returns the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    thumbs = out_dir / "thumbnails"
    thumbs.mkdir(exist_ok=True)
    summary = summarise(results, wall_seconds)
    figures = []
    for result in sorted(results, key=lambda r: str(r.get("path", ""))):
        if result.get("verdict") != "DEFECT":
            continue
        source = find_image(result)
        image = cv2.imread(str(source), cv2.IMREAD_COLOR) if source else None
        if image is None:
            continue
        thumb_path = thumbs / f"{result['image_id']}.png"
        cv2.imwrite(str(thumb_path), thumbnail(annotate(image, result.get("detections") or [])))
        caption = (f"{display_name(str(result.get('path', '')))} - "
                   f"{len(result.get('detections') or [])} scratch(es), top score "
                   f"{max((d['score'] for d in result.get('detections') or []), default=0):.2f}")
        figures.append(f"<figure><img src='{_png_data_uri(thumb_path)}' alt='annotated defect'>"
                       f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    rows = []
    for result in sorted(results, key=lambda r: str(r.get("path", ""))):
        dets = result.get("detections") or []
        latency = total_latency_ms(result)
        rows.append(
            "<tr>"
            f"<td>{html.escape(display_name(str(result.get('path', ''))))}</td>"
            f"<td class='{html.escape(str(result.get('verdict')))}'>"
            f"{html.escape(str(result.get('verdict')))}</td>"
            f"<td>{len(dets)}</td>"
            f"<td>{max((d['score'] for d in dets), default=0):.2f}</td>"
            f"<td>{'' if latency is None else f'{latency:.1f}'}</td>"
            f"<td>{html.escape(str(result.get('error') or ''))}</td>"
            f"<td class='muted'>{html.escape(str(result.get('image_id')))}</td>"
            "</tr>"
        )
    lat = summary.latency_ms
    cards = [("Images", summary.images, ""), ("OK", summary.ok, "OK"),
             ("DEFECT", summary.defect, "DEFECT"), ("Errors", summary.errors, "ERROR")]
    if summary.throughput:
        cards.append(("Images/s", f"{summary.throughput:.1f}", ""))
    if lat:
        cards.append(("p50 / p99 ms", f"{lat['p50']:.0f} / {lat['p99']:.0f}", ""))
    card_html = "".join(f"<div class='card {cls}'>{label}<b>{value}</b></div>"
                        for label, value, cls in cards)
    exported_html = ""
    if exported:
        exported_html = "<p>Exported: " + ", ".join(
            f"{html.escape(k)} {v}" for k, v in exported.items()) + "</p>"
    latencies = [v for v in (total_latency_ms(r) for r in results) if v is not None]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<div class="cards">{card_html}</div>{exported_html}
<h2>Defects ({len(figures)})</h2>
<div class="gallery">{''.join(figures) or '<p>No defects found.</p>'}</div>
<h2>Latency per image (decode to result)</h2>{histogram_svg(latencies)}
<h2>Model</h2>{_model_section(model_dir)}
<h2>All results</h2>
<table class="results"><tr><th>Image</th><th>Verdict</th><th>Detections</th><th>Top score</th>
<th>Latency ms</th><th>Error</th><th>Image id</th></tr>{''.join(rows)}</table>
</body></html>
"""
    report = out_dir / "report.html"
    report.write_text(page, encoding="utf-8")
    return report
