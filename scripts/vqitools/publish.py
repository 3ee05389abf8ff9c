"""CodeBuild's build phase: `gdk component build` + `gdk component publish` per changed component.

Every changed component is attempted even when an earlier one fails, so one broken component does
not hide the state of the others; the phase still fails at the end if any component failed.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from vqitools.build import REPO_ROOT, find_recipe, load_recipe

VERSION_IN_NAME = re.compile(r"-(\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?)\.(?:ya?ml|json)$")


def published_version(component_dir: Path, name: str) -> Optional[str]:
    """The version GDK published: it writes greengrass-build/recipes/<name>-<version>.<ext>.

    GDK 1.6.2 names that file in ComponentPublishConfiguration with the resolved version and
    writes it before CreateComponentVersion; callers read it only after publish exited 0.
    """
    recipes = component_dir / "greengrass-build" / "recipes"
    found = []
    for path in recipes.glob(f"{name}-*"):
        match = VERSION_IN_NAME.search(path.name)
        if match:
            found.append((path.stat().st_mtime, match.group(1)))
    return max(found)[1] if found else None


def run_step(command: Sequence[str], cwd: Path) -> subprocess.CompletedProcess:
    print(f"::: ({cwd.relative_to(REPO_ROOT)}) {' '.join(command)}", flush=True)
    return subprocess.run(list(command), cwd=cwd, check=False)


def publish_all(folders: List[str], results_file: Path, gdk: str = "gdk") -> int:
    results_file.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    with open(results_file, "a", encoding="utf-8") as out:
        for folder in folders:
            component_dir = REPO_ROOT / folder
            name = load_recipe(find_recipe(component_dir))["ComponentName"]
            record: Dict[str, object] = {"folder": folder, "component": name, "time": time.time()}
            for step in ("build", "publish"):
                proc = run_step([gdk, "component", step], component_dir)
                if proc.returncode != 0:
                    record.update(status="failed", failed_step=step, exit_code=proc.returncode)
                    break
            else:
                record.update(status="published", version=published_version(component_dir, name))
            failures += record["status"] != "published"
            out.write(json.dumps(record) + "\n")
            print(f"::: {name}: {record['status']}", flush=True)
    return 1 if failures else 0


def write_report(results_file: Path, report_file: Path) -> Dict[str, object]:
    records = []
    if results_file.is_file():
        records = [json.loads(line) for line in results_file.read_text().splitlines() if line]
    report = {
        "published": [
            {"componentName": r["component"], "componentVersion": r.get("version")}
            for r in records
            if r["status"] == "published"
        ],
        "failed": [
            {"componentName": r["component"], "step": r.get("failed_step")}
            for r in records
            if r["status"] != "published"
        ],
    }
    report_file.parent.mkdir(parents=True, exist_ok=True)
    report_file.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
