"""Synthetic metal-tag images with scratch labels, in Ultralytics YOLO dataset layout.

No dataset can be downloaded here, so the demo model learns from images this module draws.
Every image is a pure function of (seed, split, index): the same seed always gives the same
bytes and labels, and a different seed gives a disjoint held-out set.

Scene: a brushed-metal tag (rounded rectangle, stamped text, punched holes) on a darker
conveyor background, rotated and shifted a little, under a lighting gradient, blurred and noisy.
Scratches are bright or dark quadratic curves of varied length, width, curvature and contrast,
always on the tag. Label = the scratch pixels' bounding box grown by ``box_margin`` pixels
(a 1-2 px line has a degenerate tight box; the margin keeps IoU meaningful).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

CLASS_NAMES = ["scratch"]
SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "samples": 3}
_TEXT_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789-"


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the generator; recorded in dataset.json so a dataset can be re-made."""

    imgsz: int = 320
    defect_free_fraction: float = 0.25
    scratch_count_weights: tuple[float, ...] = (0.6, 0.3, 0.1)  # P(1), P(2), P(3) scratches
    length_frac: tuple[float, float] = (0.12, 0.42)  # of imgsz
    thickness: tuple[int, int] = (1, 3)
    contrast: tuple[float, float] = (60.0, 110.0)  # grey levels added/subtracted
    bright_fraction: float = 0.6
    box_margin: int = 2
    jpeg_quality: int = 92


@dataclass(frozen=True)
class Box:
    """A label in pixel corners (x0, y0 inclusive; x1, y1 exclusive)."""

    cls: int
    x0: float
    y0: float
    x1: float
    y1: float

    def yolo_line(self, width: int, height: int) -> str:
        cx = (self.x0 + self.x1) / 2 / width
        cy = (self.y0 + self.y1) / 2 / height
        bw = (self.x1 - self.x0) / width
        bh = (self.y1 - self.y0) / height
        return f"{self.cls} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}"


@dataclass
class DatasetInfo:
    """What generate_dataset wrote."""

    root: Path
    data_yaml: Path
    counts: dict[str, int] = field(default_factory=dict)
    boxes: dict[str, int] = field(default_factory=dict)


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), SPLIT_CODES[split], int(index)])


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1] (coarse random grid upsampled)."""
    grid = rng.uniform(-1.0, 1.0, (cells, cells)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def _background(rng: np.random.Generator, s: int) -> np.ndarray:
    base = rng.uniform(25, 75)
    tint = rng.uniform(-8, 8, 3)
    img = np.full((s, s, 3), base, np.float32) + tint
    img += (_smooth_noise(rng, s, 6) * rng.uniform(5, 15))[..., None]
    img += rng.normal(0, 4, (s, s, 1)).astype(np.float32)
    return img


def _tag_layer(rng: np.random.Generator, s: int) -> tuple[np.ndarray, np.ndarray]:
    """An axis-aligned tag centred in an s x s canvas: (grey image, alpha mask)."""
    tw = int(s * rng.uniform(0.6, 0.82))
    th = int(s * rng.uniform(0.38, 0.6))
    x0, y0 = (s - tw) // 2, (s - th) // 2
    radius = int(min(tw, th) * rng.uniform(0.05, 0.2))
    mask = np.zeros((s, s), np.uint8)
    cv2.rectangle(mask, (x0 + radius, y0), (x0 + tw - radius, y0 + th), 255, -1)
    cv2.rectangle(mask, (x0, y0 + radius), (x0 + tw, y0 + th - radius), 255, -1)
    for cx, cy in ((x0 + radius, y0 + radius), (x0 + tw - radius, y0 + radius),
                   (x0 + radius, y0 + th - radius), (x0 + tw - radius, y0 + th - radius)):
        cv2.circle(mask, (cx, cy), radius, 255, -1)

    metal = np.full((s, s), rng.uniform(120, 195), np.float32)
    streaks = rng.normal(0, 1, (s, s)).astype(np.float32)
    streaks = cv2.GaussianBlur(streaks, (0, 0), sigmaX=rng.uniform(6, 14), sigmaY=0.6)
    metal += streaks / (streaks.std() + 1e-6) * rng.uniform(3, 9)
    metal += _smooth_noise(rng, s, 4) * rng.uniform(4, 12)

    # Stamped text: a dark engraving with a thin highlight beside it.
    n_lines = int(rng.integers(1, 3))
    scale = rng.uniform(0.45, 0.75) * s / 320
    thick = max(1, int(round(scale * 2)))
    for line in range(n_lines):
        text = "".join(rng.choice(list(_TEXT_CHARS), int(rng.integers(4, 9))))
        (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        tx = x0 + int(tw * 0.1)
        ty = y0 + int(th * (0.32 + 0.3 * line)) + h // 2
        if tx + w > x0 + tw - radius:
            continue
        depth = rng.uniform(35, 65)
        ink = np.zeros((s, s), np.uint8)  # putText draws on 8-bit images only
        glint = np.zeros((s, s), np.uint8)
        cv2.putText(glint, text, (tx + 1, ty + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, 255,
                    thick, cv2.LINE_AA)
        cv2.putText(ink, text, (tx, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick,
                    cv2.LINE_AA)
        metal += glint.astype(np.float32) / 255.0 * 25.0
        metal -= ink.astype(np.float32) / 255.0 * (depth + 25.0)

    # Punched holes near one or both short ends.
    hole_r = max(3, int(th * rng.uniform(0.06, 0.1)))
    ends = [0, 1] if rng.random() < 0.5 else [int(rng.integers(0, 2))]
    for end in ends:
        hx = x0 + hole_r * 2 + 2 if end == 0 else x0 + tw - hole_r * 2 - 2
        cv2.circle(mask, (hx, s // 2), hole_r, 0, -1)
    return metal, mask


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _scratch(rng: np.random.Generator, inside: np.ndarray, cfg: SynthConfig,
             ) -> tuple[np.ndarray, float] | None:
    """Draw one scratch fully on the tag: (alpha mask in [0,1], signed contrast) or None."""
    s = cfg.imgsz
    ys, xs = np.nonzero(inside)
    if len(xs) == 0:
        return None
    for _ in range(30):
        i = int(rng.integers(len(xs)))
        centre = np.array([xs[i], ys[i]], np.float64)
        length = s * rng.uniform(*cfg.length_frac)
        angle = rng.uniform(0, np.pi)
        d = np.array([np.cos(angle), np.sin(angle)])
        normal = np.array([-d[1], d[0]])
        p0, p2 = centre - d * length / 2, centre + d * length / 2
        p1 = centre + normal * length * rng.uniform(-0.25, 0.25)
        pts = _bezier(p0, p1, p2, 48)
        xi, yi = np.round(pts[:, 0]).astype(int), np.round(pts[:, 1]).astype(int)
        if xi.min() < 0 or yi.min() < 0 or xi.max() >= s or yi.max() >= s:
            continue
        if not inside[yi, xi].all():
            continue
        alpha = np.zeros((s, s), np.float32)
        thickness = int(rng.integers(cfg.thickness[0], cfg.thickness[1] + 1))
        cv2.polylines(alpha, [np.round(pts * 16).astype(np.int32)], False, 1.0, thickness,
                      cv2.LINE_AA, shift=4)
        # Scratches fade in and out along their length a little.
        fade = 0.8 + 0.2 * _smooth_noise(rng, s, 3)
        alpha = np.clip(alpha * fade, 0.0, 1.0)
        sign = 1.0 if rng.random() < cfg.bright_fraction else -1.0
        return alpha, sign * rng.uniform(*cfg.contrast)
    return None


def render(seed: int, split: str, index: int, cfg: SynthConfig | None = None,
           paint_scratches: bool = True) -> tuple[np.ndarray, list[Box]]:
    """Render one BGR uint8 image and its scratch boxes (pixel corners).

    ``paint_scratches=False`` gives the identical scene with the scratch pixels left out (same
    random draws, same boxes returned): a good/defective pair, used to check the labels.
    """
    cfg = cfg or SynthConfig()
    rng = _rng(seed, split, index)
    s = cfg.imgsz
    img = _background(rng, s)
    metal, mask = _tag_layer(rng, s)

    angle = rng.uniform(-25, 25)
    shift = rng.uniform(-0.06, 0.06, 2) * s
    m = cv2.getRotationMatrix2D((s / 2, s / 2), angle, 1.0)
    m[:, 2] += shift
    metal = cv2.warpAffine(metal, m, (s, s), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpAffine(mask, m, (s, s), flags=cv2.INTER_LINEAR)
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    tint = rng.uniform(-6, 6, 3).astype(np.float32)
    img = img * (1 - alpha) + (metal[..., None] + tint) * alpha

    inside = cv2.erode((mask > 200).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    boxes: list[Box] = []
    if rng.random() >= cfg.defect_free_fraction:
        w = np.array(cfg.scratch_count_weights, np.float64)
        n = int(rng.choice(len(w), p=w / w.sum())) + 1
        for _ in range(n):
            drawn = _scratch(rng, inside, cfg)
            if drawn is None:
                continue
            a, contrast = drawn
            if paint_scratches:
                img += (a * contrast)[..., None]
            ys, xs = np.nonzero(a > 0.3)
            if len(xs) == 0:
                continue
            mg = cfg.box_margin
            boxes.append(Box(0, float(max(0, xs.min() - mg)), float(max(0, ys.min() - mg)),
                             float(min(s, xs.max() + 1 + mg)),
                             float(min(s, ys.max() + 1 + mg))))

    # Lighting: a linear gradient and a soft highlight, then optics and sensor.
    gx, gy = np.meshgrid(np.linspace(-1, 1, s), np.linspace(-1, 1, s))
    theta = rng.uniform(0, 2 * np.pi)
    grad = 1 + rng.uniform(0.05, 0.25) * (np.cos(theta) * gx + np.sin(theta) * gy)
    cx, cy = rng.uniform(-0.6, 0.6, 2)
    spot = np.exp(-((gx - cx) ** 2 + (gy - cy) ** 2) / rng.uniform(0.1, 0.5))
    light = (grad * (1 + rng.uniform(0, 0.25) * spot)).astype(np.float32)
    img *= light[..., None] * rng.uniform(0.85, 1.1)
    sigma = rng.uniform(0.0, 1.0)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.normal(0, rng.uniform(1.5, 5.0), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), boxes


def write_sample(path: Path, img: np.ndarray, cfg: SynthConfig) -> None:
    """Encode (JPEG or PNG by suffix) and write; raises on encoder failure."""
    params = [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality] if path.suffix == ".jpg" else []
    ok, buf = cv2.imencode(path.suffix, img, params)
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def _write_one(args: tuple[Path, int, str, int, SynthConfig]) -> int:
    out_dir, seed, split, i, cfg = args
    img, boxes = render(seed, split, i, cfg)
    stem = f"{split}_{i:05d}"
    write_sample(out_dir / "images" / split / f"{stem}.jpg", img, cfg)
    lines = [b.yolo_line(cfg.imgsz, cfg.imgsz) for b in boxes]
    (out_dir / "labels" / split / f"{stem}.txt").write_text("".join(ln + "\n" for ln in lines))
    return len(boxes)


def generate_dataset(out_dir: Path, seed: int, counts: dict[str, int],
                     cfg: SynthConfig | None = None, jobs: int = 1) -> DatasetInfo:
    """Write images/<split>/*.jpg, labels/<split>/*.txt, data.yaml and dataset.json.

    ``jobs`` > 1 renders in worker processes; the output does not depend on it.
    """
    cfg = cfg or SynthConfig()
    out_dir = Path(out_dir).resolve()
    info = DatasetInfo(root=out_dir, data_yaml=out_dir / "data.yaml")
    for split, count in counts.items():
        if split not in SPLIT_CODES:
            raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_CODES)}")
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        (out_dir / "labels" / split).mkdir(parents=True, exist_ok=True)
        tasks = [(out_dir, seed, split, i, cfg) for i in range(count)]
        if jobs > 1 and count > 1:
            from multiprocessing import Pool

            with Pool(jobs) as pool:
                n_boxes = sum(pool.map(_write_one, tasks, chunksize=16))
        else:
            n_boxes = sum(_write_one(t) for t in tasks)
        info.counts[split] = count
        info.boxes[split] = n_boxes
    yaml_lines = [f"path: {out_dir}"]
    made = [sp for sp in ("train", "val", "test") if sp in counts]
    for split in ("train", "val", "test"):
        if split in counts:
            yaml_lines.append(f"{split}: images/{split}")
        elif split != "test" and made:  # Ultralytics requires train and val keys
            yaml_lines.append(f"{split}: images/{made[-1]}  # not generated; stands in")
    yaml_lines.append("names:")
    yaml_lines += [f"  {i}: {n}" for i, n in enumerate(CLASS_NAMES)]
    info.data_yaml.write_text("\n".join(yaml_lines) + "\n")
    meta = {"generator": "vqitools.model.synth", "seed": seed, "counts": info.counts,
            "boxes": info.boxes, "config": asdict(cfg)}
    (out_dir / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return info


# The acceptance set's box tolerance (vqi_inference.acceptance): some detection must overlap one
# of a defective sample's scratches at this IoU.
ACCEPTANCE_BOX_IOU = 0.5


def write_samples(dest: Path, n_defective: int = 6, n_good: int = 4, seed: int = 2024,
                  cfg: SynthConfig | None = None) -> dict[str, list[list[float]]]:
    """Demo images defective_NN.jpg / good_NN.jpg plus expected.json (pixel xyxy boxes)."""
    cfg = cfg or SynthConfig()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    expected: dict[str, list[list[float]]] = {}
    n_d = n_g = 0
    index = 0
    while n_d < n_defective or n_g < n_good:
        img, boxes = render(seed, "samples", index, cfg)
        index += 1
        if boxes and n_d < n_defective:
            n_d += 1
            name = f"defective_{n_d:02d}.jpg"
        elif not boxes and n_g < n_good:
            n_g += 1
            name = f"good_{n_g:02d}.jpg"
        else:
            continue
        write_sample(dest / name, img, cfg)
        expected[name] = [[b.x0, b.y0, b.x1, b.y1] for b in boxes]
    (dest / "expected.json").write_text(json.dumps(
        {"class": CLASS_NAMES[0], "box_format": "xyxy_pixels", "seed": seed,
         "box_iou": ACCEPTANCE_BOX_IOU, "images": expected}, indent=2) + "\n")
    return expected
