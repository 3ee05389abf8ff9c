"""A challenger's record, from what the cloud received: the window summaries Inference sends to
IoT Core (`vqi/<thing>/challenger`) and the disagreement images under the review prefix.

Locally the cloud is a runtime root's `cloud/` folder (`iotcore.jsonl`, `s3/<bucket>/...`); in
AWS, export the same messages (an IoT rule to S3, say) into that shape and point it here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List


def report(root: Path) -> Dict[str, Any]:
    cloud = Path(root) / "cloud"
    windows = []
    log = cloud / "iotcore.jsonl"
    for line in log.read_text(encoding="utf-8").splitlines() if log.exists() else []:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if str(message.get("topic", "")).endswith("/challenger"):
            windows.append(message["payload"])
    images = sum(w["challenger"]["images"] for w in windows)
    agreeing = sum((w["challenger"]["verdict_agreement"] or 0) * w["challenger"]["images"]
                   for w in windows)
    per_class: Dict[str, Dict[str, int]] = {}
    for w in windows:
        for name, counts in w["challenger"]["per_class"].items():
            sums = per_class.setdefault(name, {"both": 0, "champion_only": 0,
                                               "challenger_only": 0})
            for key in sums:
                sums[key] += counts[key]
    both = sum(c["both"] for c in per_class.values())
    seen = sum(sum(c.values()) for c in per_class.values())

    def weighted(key: str) -> float:
        total = sum(w["challenger"][key]["p50"] * w["challenger"]["images"] for w in windows)
        return round(total / images, 2) if images else 0.0

    s3 = cloud / "s3"  # <bucket>/<key>; the local bucket keeps object metadata in .metadata/
    uploads = sorted(str(p.relative_to(s3)) for p in s3.rglob("*.json")
                     if "/disagreement/" in p.relative_to(s3).as_posix()
                     and not p.relative_to(s3).parts[0].startswith(".")) if s3.is_dir() else []
    return {
        "windows": len(windows),
        "things": sorted({w.get("thing_name", "") for w in windows}),
        "champion": windows[-1]["champion"] if windows else None,
        "challenger": windows[-1]["challenger"]["model"] if windows else None,
        "images": images,
        "skipped": sum(w["challenger"]["skipped"] for w in windows),
        "verdict_agreement": round(agreeing / images, 4) if images else None,
        "detection_agreement": round(both / seen, 4) if seen else (1.0 if images else None),
        "per_class": per_class,
        "disagreements": sum(w["challenger"]["disagreements"] for w in windows),
        "disagreements_uploaded": len(uploads),
        "champion_inference_ms_p50": weighted("champion_inference_ms"),
        "challenger_inference_ms_p50": weighted("challenger_inference_ms"),
    }


def summary_lines(body: Dict[str, Any]) -> List[str]:
    if not body["windows"]:
        return ["no challenger windows received (is a challenger deployed, and "
                "IotCoreChallengerTopic set?)"]
    ch, champ = body["challenger"], body["champion"]
    return [
        f"challenger {ch['name']} {ch['version']} ({ch['sha256'][:12]}) against champion "
        f"{champ['name']} {champ['version']} ({champ['sha256'][:12]}), "
        f"{body['windows']} window(s) from {', '.join(body['things'])}",
        f"images scored {body['images']} (skipped while busy: {body['skipped']})",
        f"verdict agreement {body['verdict_agreement']}, detection agreement "
        f"{body['detection_agreement']} (matched at IoU 0.5)",
        f"disagreements {body['disagreements']} ({body['disagreements_uploaded']} uploaded "
        f"for review with both label sets)",
        f"inference p50: champion {body['champion_inference_ms_p50']} ms, challenger "
        f"{body['challenger_inference_ms_p50']} ms",
    ]
