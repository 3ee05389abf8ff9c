"""The local demo: the whole graph on the bundled sample images, then a summary and a report.

It runs the real components, built and installed by the local runtime exactly as on a device, drops
the sample images into the inbox the way a camera does (write, then rename), and follows the
results on the results topic through a real IPC client with its own read-only identity.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from vqitools import venvcache
from vqitools.build import REPO_ROOT
from vqitools.deployment import load_site, local_overrides
from vqitools.report import summarise, write_report

OBSERVER = "vqi.local.Observer"
IMAGE_SOURCE = "com.example.vqi.ImageSource"
INFERENCE = "com.example.vqi.Inference"
UPLOADER = "com.example.vqi.Uploader"
DASHBOARD = "com.example.vqi.Dashboard"
SAMPLES = REPO_ROOT / "components" / "model" / "samples"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


@dataclass
class Observed:
    results: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    archived: set = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Event = field(default_factory=threading.Event)


def demo_overrides(root: Path, site_file: Path) -> Dict[str, Any]:
    overrides = local_overrides(load_site(site_file))
    folders = {
        IMAGE_SOURCE: {"InboxDir": str(root / "inbox"), "StateDir": str(root / "images")},
        INFERENCE: {"AnnotatedImageDir": str(root / "annotated")},
        UPLOADER: {"StagingDir": str(root / "images" / "upload-staging")},
    }
    for name, merge in folders.items():
        overrides.setdefault(name, {}).setdefault("merge", {}).update(merge)
    return overrides


def observe(runtime: Any, observed: Observed) -> Any:
    """Subscribe to results and archive confirmations as a separate, read-only identity."""
    import awsiot.greengrasscoreipc as gg
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    access = {"aws.greengrass.ipc.pubsub": {f"{OBSERVER}:read": {
        "operations": ["aws.greengrass#SubscribeToTopic"],
        "resources": ["vqi/results", "vqi/archived"],
    }}}
    svcuid = runtime.ipc.add_component(OBSERVER, {}, access)
    client = GreengrassCoreIPCClientV2(
        client=gg.connect(ipc_socket=str(runtime.ipc.socket_path), authtoken=svcuid))

    def on_result(event: Any) -> None:
        message = event.json_message.message
        with observed.lock:
            observed.results.setdefault(message["image_id"], message)
        observed.changed.set()

    def on_archived(event: Any) -> None:
        with observed.lock:
            observed.archived.add(event.json_message.message["image_id"])
        observed.changed.set()

    client.subscribe_to_topic(topic="vqi/results", on_stream_event=on_result)
    client.subscribe_to_topic(topic="vqi/archived", on_stream_event=on_archived)
    return client


def dashboard_url(root: Path) -> str:
    """The URL the Dashboard wrote into its work folder once listening ('' if not running)."""
    try:
        return (root / "work" / DASHBOARD / "dashboard.url").read_text().strip()
    except OSError:
        return ""


def prepare_folders(root: Path, run_as: Any) -> None:
    """What an operator does before the deployment: folders outside the 0700 work folders that
    the component user owns; the inbox also writable for the group a camera writes as (2770)."""
    for folder, mode in (("inbox", 0o2770), ("images", 0o750), ("annotated", 0o750)):
        path = root / folder
        path.mkdir(parents=True, exist_ok=True)
        if run_as is not None:
            os.chown(path, run_as.uid, run_as.gid)
        os.chmod(path, mode)


def drop_like_a_camera(images: List[Path], inbox: Path) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    for image in images:
        part = inbox / f"{image.name}.part"
        shutil.copyfile(image, part)
        part.rename(inbox / image.name)


def files_in(folder: Path) -> List[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def exported(root: Path) -> Dict[str, int]:
    s3 = [p for p in files_in(root / "cloud" / "s3") if ".metadata" not in p.parts]
    kinesis = root / "cloud" / "kinesis.jsonl"
    iot = root / "cloud" / "iotcore.jsonl"
    return {
        "Kinesis records": len(kinesis.read_text().splitlines()) if kinesis.is_file() else 0,
        "S3 review images": sum(p.suffix.lower() in IMAGE_SUFFIXES for p in s3),
        "S3 label files": sum(p.suffix == ".txt" for p in s3),
        "IoT Core messages": len(iot.read_text().splitlines()) if iot.is_file() else 0,
    }


def summary_table(results: List[Dict[str, Any]], wall: float, export: Dict[str, int]) -> str:
    s = summarise(results, wall)
    lat = s.latency_ms
    rows = [
        ("images", str(s.images)), ("OK", str(s.ok)), ("DEFECT", str(s.defect)),
        ("errors", str(s.errors)),
        ("throughput", f"{s.throughput:.1f} images/s" if s.throughput else "-"),
        ("latency p50/p95/p99",
         f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} ms" if lat else "-"),
    ] + [(k, str(v)) for k, v in export.items()]
    width = max(len(k) for k, _ in rows)
    line = "+" + "-" * (width + 2) + "+" + "-" * 26 + "+"
    body = "\n".join(f"| {k:<{width}} | {v:<24} |" for k, v in rows)
    return f"{line}\n{body}\n{line}"


def original_name(path: str) -> str:
    """The camera's file name: ImageSource claims files as <image id>__<name>."""
    name = Path(path).name
    return name.split("__", 1)[1] if "__" in name else name


def expected_verdicts(samples: Path) -> Dict[str, str]:
    path = samples / "expected.json"
    if not path.is_file():
        return {}
    boxes = json.loads(path.read_text()).get("images", {})
    return {name: ("DEFECT" if b else "OK") for name, b in boxes.items()}


def all_counted(done: int, archived: int, images: List[Path]) -> bool:
    """Every image has a result and the uploader's archive confirmation."""
    return done >= len(images) and archived >= len(images)


def finish(root: Path, samples: Path, results: List[Dict[str, Any]], wall: float,
           expected_count: int) -> bool:
    """Print the summary table, write results.jsonl and the HTML report; True when all is well."""
    time.sleep(1.0)  # let the last S3 export tasks land before counting them
    export = exported(root)
    print(summary_table(results, wall, export), flush=True)
    expected = expected_verdicts(samples)
    by_name = {original_name(r["path"]): r["verdict"] for r in results}
    if expected:
        matched = sum(by_name.get(name) == verdict for name, verdict in expected.items())
        print(f"expected verdicts matched: {matched}/{len(expected)}")
    done_dir = root / "images" / "done"

    def find_image(result: Dict[str, Any]) -> Optional[Path]:
        """The image in done/, else the uploader's copy in the local bucket."""
        name = Path(str(result.get("path", ""))).name
        hits = [p for p in files_in(done_dir) if p.name == name]
        hits += [p for p in files_in(root / "cloud" / "s3")
                 if p.stem == result["image_id"] and p.suffix.lower() in IMAGE_SUFFIXES]
        return hits[0] if hits else None

    (root / "report").mkdir(parents=True, exist_ok=True)
    with open(root / "report" / "results.jsonl", "w", encoding="utf-8") as out:
        for result in sorted(results, key=lambda r: r["image_id"]):
            out.write(json.dumps(result, separators=(",", ":")) + "\n")
    report = write_report(results, root / "report", find_image,
                          model_dir=REPO_ROOT / "components" / "model",
                          wall_seconds=wall, exported=export,
                          title="Scratch inspection - local run")
    print(f"report: {report}", flush=True)
    failed = files_in(root / "images" / "failed")
    if failed:
        print(f"run-local: {len(failed)} file(s) in failed/: {[p.name for p in failed]}")
    return len(results) >= expected_count and not failed


def run_demo(
    root: Path,
    samples: Path = SAMPLES,
    site_file: Path = REPO_ROOT / "scripts" / "sites" / "local.yaml",
    watch: bool = False,
    install_timeout: float = 1800.0,
    result_timeout: float = 180.0,
    keep: bool = False,
) -> int:
    from localgg.runtime import LocalRuntime, RuntimeOptions

    root = root.resolve()
    if root.exists() and not keep:
        for sub in ("work", "cloud", "stream-manager", "inbox", "images", "annotated",
                    "report", "logs", "packages", "env"):
            shutil.rmtree(root / sub, ignore_errors=True)
    images = sorted(p for p in samples.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    overrides = demo_overrides(root, site_file)
    options = RuntimeOptions(root=root, components_dir=REPO_ROOT / "components",
                             overrides=overrides, extra_env=venvcache.runtime_env(overrides))
    runtime = LocalRuntime(options)
    print(f"run-local: root {root} (logs in {root / 'logs'})", flush=True)
    print("run-local: installing and starting components "
          "(the first run builds their virtual environments; minutes)", flush=True)
    client = None
    try:
        # Ctrl-C until the components settle: KeyboardInterrupt, then stop. The services use a
        # Startup step, so RUNNING means each has reported that its set-up is done.
        runtime.start(prepare=lambda run_as: prepare_folders(root, run_as))
        states = runtime.wait_settled(install_timeout)
        user = runtime.run_as
        print(f"run-local: components run as "
              f"{user.user + ':' + user.group if user else 'you (not root)'}", flush=True)
        for name, state in sorted(states.items()):
            print(f"  {name:<30} {state}", flush=True)
        bad = {n: s for n, s in states.items() if s not in ("RUNNING", "FINISHED")}
        if bad:
            for name in bad:
                log = root / "logs" / f"{name}.log"
                tail = log.read_text(errors="replace").splitlines()[-15:] if log.is_file() else []
                print(f"run-local: {name} is {bad[name]}; last log lines:\n  " + "\n  ".join(tail))
            return 1
        url = dashboard_url(root)
        if url:
            print(f"run-local: dashboard {url}" + ("" if watch else
                  " (until the demo ends; --watch keeps it up)"), flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        observed = Observed()
        client = observe(runtime, observed)
        print(f"run-local: dropping {len(images)} sample images into {root / 'inbox'}", flush=True)
        started = time.monotonic()
        drop_like_a_camera(images, root / "inbox")
        deadline = started + result_timeout
        last_progress = None
        summarised, ok, shown = False, False, set()
        while not stop.is_set():
            with observed.lock:
                done, archived = len(observed.results), len(observed.archived)
                fresh = [r for i, r in observed.results.items() if i not in shown]
            if summarised:  # --watch: one line per new image from the camera
                for result in fresh:
                    shown.add(result["image_id"])
                    print(f"  {result['verdict']:<7} {original_name(result['path'])}", flush=True)
            elif (done, archived) != last_progress:
                line = f"  results {done}/{len(images)}  archived {archived}/{len(images)}"
                if sys.stdout.isatty():  # one line that counts up; a log gets every step
                    print("\r" + line, end="\n" if all_counted(done, archived, images) else "",
                          flush=True)
                else:
                    print(line, flush=True)
                last_progress = (done, archived)
            pending = files_in(root / "inbox") + files_in(root / "images" / "processing")
            settled = all_counted(done, archived, images) and not pending
            timed_out = time.monotonic() > deadline
            if not summarised and (settled or timed_out):
                if timed_out and not settled:
                    print("run-local: timed out waiting for results; see the logs", flush=True)
                with observed.lock:
                    results = list(observed.results.values())
                    shown.update(observed.results)
                ok = finish(root, samples, results, time.monotonic() - started, len(images))
                ok = ok and settled
                summarised = True
                if not watch:
                    break
                print(f"run-local: watching {root / 'inbox'} (Ctrl-C to stop)", flush=True)
            observed.changed.wait(0.5)
            observed.changed.clear()
        return 0 if ok else 1
    finally:
        if client is not None:
            try:
                client.close()
            except Exception:
                pass
        runtime.stop()


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="run-local", description="Run the whole graph locally on the sample images.")
    parser.add_argument("--root", type=Path, default=REPO_ROOT / ".local-gg")
    parser.add_argument("--samples", type=Path, default=SAMPLES,
                        help="folder of images to drop into the inbox")
    parser.add_argument("--site", type=Path, default=REPO_ROOT / "scripts" / "sites" / "local.yaml",
                        help="site settings whose configuration merges apply locally")
    parser.add_argument("--watch", action="store_true",
                        help="keep running and watching the inbox after the samples")
    parser.add_argument("--keep", action="store_true",
                        help="keep the previous run's state under the root")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="seconds to wait for the samples' results")
    args = parser.parse_args(argv)
    return run_demo(args.root, args.samples, args.site, watch=args.watch,
                    result_timeout=args.timeout, keep=args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
