"""S3 key layout for review images and their sidecars.

<prefix>/<yyyy>/<mm>/<dd>/<thing>/<verdict>/<image_id>.<ext>, with <image_id>.txt (YOLO labels)
and <image_id>.json (the result) beside it. The date is the result's UTC time, so a result
delivered again maps to the same keys and a re-export overwrites instead of duplicating.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Dict

_UNSAFE = re.compile(r"[^A-Za-z0-9._=\-]")


def safe_part(value: str, fallback: str = "unknown") -> str:
    """One key segment: characters S3 and Stream Manager's key check accept, never empty or dots."""
    cleaned = _UNSAFE.sub("_", value).strip(".")
    return cleaned[:200] or fallback


def parse_time(value: str) -> datetime:
    """The result's ISO 8601 time as UTC; now when missing or unreadable."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return datetime.now(timezone.utc)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def image_extension(path: str) -> str:
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    return safe_part(ext, "bin") if ext else "bin"


@dataclass(frozen=True)
class ReviewKeys:
    image: str
    labels: str
    result: str


def disagreement_keys(prefix: str, time: str, thing: str, image_id: str) -> Dict[str, str]:
    """<prefix>/disagreement/<yyyy>/<mm>/<dd>/<thing>/<image_id>.jpg with `.champion.txt`,
    `.challenger.txt` (YOLO labels of each model) and `.json` (both results) beside it."""
    when = parse_time(time)
    parts = [p for p in prefix.strip("/").split("/") if p] + ["disagreement"]
    parts += [f"{when:%Y}", f"{when:%m}", f"{when:%d}", safe_part(thing), safe_part(image_id)]
    base = "/".join(parts)
    return {"image": f"{base}.jpg", "champion": f"{base}.champion.txt",
            "challenger": f"{base}.challenger.txt", "json": f"{base}.json"}


def feedback_keys(prefix: str, time: str, thing: str, image_id: str, ext: str
                  ) -> Dict[str, str]:
    """<prefix>/feedback/<yyyy>/<mm>/<dd>/<thing>/<image_id>.<ext> with `.prelabel.txt` (the
    model's YOLO labels), `.label.txt` (the operator's) and `.json` (the feedback with the
    result) beside it. Keyed by image: a later judgement of the same image replaces the
    earlier one, so the training set holds the operator's last word."""
    when = parse_time(time)
    parts = [p for p in prefix.strip("/").split("/") if p] + ["feedback"]
    parts += [f"{when:%Y}", f"{when:%m}", f"{when:%d}", safe_part(thing), safe_part(image_id)]
    base = "/".join(parts)
    return {"image": f"{base}.{safe_part(ext.lstrip('.').lower(), 'bin')}",
            "prelabel": f"{base}.prelabel.txt", "label": f"{base}.label.txt",
            "json": f"{base}.json"}


def review_keys(
    prefix: str, time: str, thing: str, verdict: str, image_id: str, image_path: str
) -> ReviewKeys:
    when = parse_time(time)
    parts = [p for p in prefix.strip("/").split("/") if p]
    parts += [f"{when:%Y}", f"{when:%m}", f"{when:%d}"]
    parts += [safe_part(thing), safe_part(verdict.lower())]
    base = "/".join(parts + [safe_part(image_id)])
    return ReviewKeys(
        image=f"{base}.{image_extension(image_path)}", labels=f"{base}.txt", result=f"{base}.json"
    )
