"""`./scripts/run-local deploy SITE.yaml`: deploy what is built into the runtime running on a root.

The document is `deployment.local_document` (built versions, the site's configuration, the root's
folders kept), handed to `python -m localgg deploy`, which follows it to its outcome: exit 0 when
it SUCCEEDED, 1 when it failed (rolled back unless the site says DO_NOTHING), 2 when it cannot
start (no runtime on that root, an unreadable site file).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from localgg.__main__ import main as localgg_main
from vqitools.deployment import COMPONENTS_DIR, SiteError, load_site, local_document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run-local deploy", description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="site file, e.g. scripts/sites/local.yaml")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--components-dir", type=Path, default=COMPONENTS_DIR)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)
    try:
        held = json.loads((args.root / "config" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        held = {}
    try:
        document = local_document(load_site(args.site), held, args.components_dir)
    except (SiteError, OSError) as exc:
        print(f"run-local deploy: {exc}", file=sys.stderr)
        return 2
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(document, handle, indent=2)
    try:
        return localgg_main(["deploy", "--root", str(args.root), "--components-dir",
                             str(args.components_dir), "--timeout", str(args.timeout),
                             handle.name])
    finally:
        Path(handle.name).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
