"""VQI_VENV_CACHE: one cache of the Install steps' virtual environments for all local runs.

The Install step (`shared/envinstall.py`) keeps a component's environments in `<work>/venvs`,
or under `$VQI_VENV_CACHE` when that is set. A device never sets it. The local tooling (the demo,
the graph runner behind the benchmarks, `scripts/run-local run|nucleus`, the end-to-end tests)
does, through the local runtime's generic extra environment (`--env NAME=VALUE`,
`RuntimeOptions.extra_env`), so that a fresh root reuses the environments earlier runs built.

The folder is `$VQI_VENV_CACHE` of the caller when set, else `<home>/.cache/vqi/venvs` of the
user the components run as: as root, `runWithDefault.posixUser` of the deployment's
`aws.greengrass.Nucleus` (default `ggc_user:ggc_group`, created if missing, as the runtime does),
otherwise the caller. It is created and given to that user (with the folders made for it under
that user's home), and must be reachable by them.

    python -m vqitools.venvcache [--posix-user USER[:GROUP]]   prints VQI_VENV_CACHE=<folder>
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from localgg.builtins import NUCLEUS, NUCLEUS_DEFAULTS
from localgg.runtime import parse_configuration_update
from localgg.supervisor import RunAs
from localgg.users import check_reachable, ensure_run_as, is_root

ENV = "VQI_VENV_CACHE"


def posix_user(overrides: Optional[Dict[str, Any]] = None) -> str:
    """The posixUser a deployment with these configuration overrides runs components as."""
    _, merge = parse_configuration_update((overrides or {}).get(NUCLEUS))
    chosen = (merge.get("runWithDefault") or {}).get("posixUser")
    return str(chosen or NUCLEUS_DEFAULTS["runWithDefault"]["posixUser"])


def component_user(overrides: Optional[Dict[str, Any]] = None) -> Optional[RunAs]:
    """The components' user (None: the caller's own, as when not root)."""
    return ensure_run_as(posix_user(overrides)) if is_root() else None


def venv_cache(run_as: Optional[RunAs]) -> Path:
    """The cache folder, created and owned by the components' user."""
    if os.environ.get(ENV):
        cache = Path(os.environ[ENV]).expanduser()
    else:
        home = run_as.home if run_as else os.path.expanduser("~")
        cache = Path(home) / ".cache" / "vqi" / "venvs"
    cache = cache.absolute()
    cache.mkdir(parents=True, exist_ok=True)
    if run_as is not None:
        home_dir = Path(run_as.home)
        for folder in (cache, *cache.parents):  # what was made for it under the user's home
            if home_dir not in folder.parents:
                break
            os.chown(folder, run_as.uid, run_as.gid)
        os.chown(cache, run_as.uid, run_as.gid)
        check_reachable(cache, run_as)
    return cache


def runtime_env(overrides: Optional[Dict[str, Any]] = None) -> Dict[str, str]:
    """The extra environment the local runtime gives every component in this product's runs."""
    return {ENV: str(venv_cache(component_user(overrides)))}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vqitools.venvcache",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--posix-user", help="the components' user[:group] (default: "
                                             f"{NUCLEUS_DEFAULTS['runWithDefault']['posixUser']})")
    args = parser.parse_args(argv)
    overrides = ({NUCLEUS: {"merge": {"runWithDefault": {"posixUser": args.posix_user}}}}
                 if args.posix_user else None)
    try:
        env = runtime_env(overrides)
    except (OSError, RuntimeError) as exc:
        print(f"venvcache: error: {exc}", file=sys.stderr)
        return 2
    for name, value in env.items():
        print(f"{name}={value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
