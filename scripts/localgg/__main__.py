"""Command line of the local Greengrass runtime.

    python -m localgg run --root .local-gg      deploy the built components and run them
    python -m localgg nucleus --root DIR        only the runtime; writes DIR/env/<name>.env
    python -m localgg status --root DIR         print the component states of a running runtime
    python -m localgg deploy --root DIR DOC.json [--components-dir D]
                                                a deployment into a running `run`; waits for it

run and nucleus last until SIGINT/SIGTERM, then stop every component and server and exit 0.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from localgg.deploy import DeployError
from localgg.deployments import QueueWatcher
from localgg.recipes import RecipeError
from localgg.runtime import (
    ExtraEnvError,
    LocalRuntime,
    OverrideError,
    RootBusyError,
    RuntimeOptions,
    load_overrides,
    parse_env_assignment,
)
from localgg.supervisor import RestartPolicy


def _env_assignment(text: str) -> tuple[str, str]:
    try:
        return parse_env_assignment(text)
    except ExtraEnvError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m localgg", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode, help_text in (("run", "run the built components under the local runtime"),
                            ("nucleus", "start only the runtime and write env/<name>.env files")):
        p = sub.add_parser(mode, help=help_text)
        p.add_argument("--root", type=Path, default=Path(".local-gg"),
                       help="runtime root folder (default .local-gg)")
        p.add_argument("--components-dir", type=Path, default=Path("components"),
                       help="folder holding <component>/greengrass-build/ (default components)")
        p.add_argument("--thing-name", default="local-thing", help="{iot:thingName}")
        p.add_argument("--region", default="us-east-1", help="AWS_REGION given to components")
        p.add_argument("--config-overrides", type=Path,
                       help='a deployment: JSON {"<component>": {"merge": {...}, "reset": '
                            '["/Key"]}} applied to the configuration the root holds')
        p.add_argument("--only", nargs="+", metavar="NAME",
                       help="only these components (and what they depend on)")
        p.add_argument("--env", action="append", default=[], type=_env_assignment,
                       metavar="NAME=VALUE",
                       help="add NAME=VALUE to every component's environment (repeatable; the "
                            "last one of a name wins, a recipe's setEnv wins over it): a local "
                            "convenience, on a device set it in the recipe's setEnv")
        p.add_argument("--stream-manager-port", type=int, default=None,
                       help="set aws.greengrass.StreamManager's STREAM_MANAGER_SERVER_PORT "
                            "(0: a free port; default: its deployed configuration, 8088)")
        p.add_argument("--max-errors", type=int, default=3,
                       help="errors before a component is BROKEN (default 3)")
        p.add_argument("--backoff", type=float, default=0.0,
                       help="first restart delay in seconds, doubled per error (default 0: "
                            "at once, as the nucleus)")
    status = sub.add_parser("status", help="print DIR/status.json as a table")
    status.add_argument("--root", type=Path, default=Path(".local-gg"))
    deploy = sub.add_parser("deploy", help="deploy into the runtime running on --root (versions "
                            "and configuration; rolled back on failure if the document says so)")
    deploy.add_argument("document", type=Path,
                        help="CreateDeployment-shaped JSON (scripts/make-deployment's output)")
    deploy.add_argument("--root", type=Path, default=Path(".local-gg"))
    deploy.add_argument("--components-dir", type=Path,
                        help="where versions that are not running are built "
                             "(<component>/greengrass-build/)")
    deploy.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds to wait for the outcome (default 1800)")
    return parser


def deploy_command(args: argparse.Namespace) -> int:
    """Queue a deployment for a running runtime and follow it: 0 SUCCEEDED, 1 otherwise."""
    from localgg.deployments import submit, wait_for_record

    try:
        document = json.loads(args.document.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"localgg: error: {args.document}: {exc}", file=sys.stderr)
        return 2
    if not runtime_running(args.root):
        print(f"localgg: error: no runtime is running on {args.root} (start `python -m localgg "
              "run` there first)", file=sys.stderr)
        return 2
    deployment_id = submit(args.root, document, args.components_dir)
    print(f"localgg: deployment {deployment_id} queued", file=sys.stderr, flush=True)
    record = wait_for_record(args.root, deployment_id, args.timeout,
                             echo=lambda line: print(line, flush=True))
    if record is None:
        print(f"localgg: error: no outcome after {args.timeout:g}s; see "
              f"{args.root / 'deployments' / (deployment_id + '.json')}", file=sys.stderr)
        return 1
    print(f"{record['status']} {record['detailedStatus']}", flush=True)
    return 0 if record["status"] == "SUCCEEDED" else 1


def runtime_running(root: Path) -> bool:
    """Whether a runtime holds ROOT/localgg.lock."""
    import fcntl

    try:
        handle = (root / "localgg.lock").open("a")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def print_status(root: Path) -> int:
    """A table of ROOT/status.json, for a second terminal while `run` is going."""
    try:
        status = json.loads((root / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"localgg: error: no readable status in {root}: {exc}", file=sys.stderr)
        return 2
    print(f"{status.get('mode')} mode, updated {status.get('updated')}, "
          f"thing {status.get('thingName')}")
    for name, entry in status.get("components", {}).items():
        print(f"  {name:<40} {entry.get('state', '?'):<10} errors={entry.get('errors', 0)} "
              f"{entry.get('message') or ''}".rstrip())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.mode == "status":
        return print_status(args.root)
    if args.mode == "deploy":
        return deploy_command(args)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        overrides = load_overrides(args.config_overrides) if args.config_overrides else {}
    except OverrideError as exc:
        print(f"localgg: error: {exc}", file=sys.stderr)
        return 2
    options = RuntimeOptions(
        root=args.root,
        components_dir=args.components_dir,
        thing_name=args.thing_name,
        region=args.region,
        overrides=overrides,
        only=args.only,
        extra_env=dict(args.env),
        stream_manager_port=args.stream_manager_port,
        policy=RestartPolicy(max_errors=args.max_errors, backoff_initial_s=args.backoff),
    )
    runtime = LocalRuntime(options, echo=True)
    try:
        runtime.start(run_components=args.mode == "run")
    except (RecipeError, DeployError, OverrideError, RootBusyError, OSError, ValueError) as exc:
        runtime.stop()
        print(f"localgg: error: {exc}", file=sys.stderr)
        return 2
    except BaseException:
        runtime.stop()
        raise
    root = runtime.root
    print(f"localgg: {args.mode} mode, root {root}; status in {root / 'status.json'}, logs in "
          f"{root / 'logs'}" + (f", env files in {root / 'env'}" if args.mode == "nucleus" else "")
          + "; Ctrl-C to stop", file=sys.stderr, flush=True)
    queue = QueueWatcher(runtime) if args.mode == "run" else None
    try:
        while not stop.wait(0.5):
            runtime.write_status()
            runtime.save_configuration()
            if queue is not None:
                queue.poll()
    finally:
        print("localgg: stopping", file=sys.stderr, flush=True)
        runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
