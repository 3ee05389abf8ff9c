"""Install-time check of the model artifacts: fail the deployment rather than ship a bad model.

Usage: python3 verify_model.py [ARTIFACTS_DIR] [--challenger DIR]
       (ARTIFACTS_DIR default: this file's folder; DIR: the unpacked challenger.zip, checked the
       same way when the folder exists: a version without a challenger has none)

Checks that model.json parses and is consistent (schema version, class names, input/output
shapes) and that the sha256 it records matches the ONNX file byte for byte. Exits 0 when the
model is good, 1 with a one-line reason on stderr otherwise. Standard library only, Python 3.9+,
so it runs before any dependency is installed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

SUPPORTED_SCHEMA = 1
REQUIRED_KEYS = ("schema_version", "name", "version", "task", "class_names", "onnx_file",
                 "sha256", "input", "output")


class ModelInvalid(Exception):
    """The artifacts must not be used."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _int_list(value: object, what: str) -> list:
    if not isinstance(value, list) or not all(isinstance(v, int) and v > 0 for v in value):
        raise ModelInvalid(f"{what} must be a list of positive integers, got {value!r}")
    return value


def verify(artifacts: Path) -> dict:
    """Return the parsed model.json if the model folder is sound, else raise ModelInvalid."""
    meta_path = artifacts / "model.json"
    if not meta_path.is_file():
        raise ModelInvalid(f"missing {meta_path}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelInvalid(f"{meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ModelInvalid(f"{meta_path} must hold a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelInvalid(f"{meta_path} lacks keys: {', '.join(missing)}")
    if meta["schema_version"] != SUPPORTED_SCHEMA:
        raise ModelInvalid(f"unsupported schema_version {meta['schema_version']!r} "
                           f"(this check knows {SUPPORTED_SCHEMA})")
    names = meta["class_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ModelInvalid("class_names must be a non-empty list of strings")
    onnx_name = meta["onnx_file"]
    if not isinstance(onnx_name, str) or Path(onnx_name).name != onnx_name:
        raise ModelInvalid(f"onnx_file must be a plain file name, got {onnx_name!r}")
    onnx_path = artifacts / onnx_name
    if not onnx_path.is_file():
        raise ModelInvalid(f"missing model file {onnx_path}")
    if "size_bytes" in meta and onnx_path.stat().st_size != meta["size_bytes"]:
        raise ModelInvalid(f"{onnx_name} is {onnx_path.stat().st_size} bytes, model.json says "
                           f"{meta['size_bytes']}: the file is truncated or replaced")
    actual = sha256_file(onnx_path)
    if actual != str(meta["sha256"]).lower():
        raise ModelInvalid(f"sha256 mismatch for {onnx_name}: model.json says {meta['sha256']}, "
                           f"file has {actual}: the model file was modified or corrupted")
    inp, out = meta["input"], meta["output"]
    shape = _int_list(inp.get("shape"), "input.shape")
    if len(shape) != 4 or shape[1] != 3:
        raise ModelInvalid(f"input.shape must be [1, 3, H, W], got {shape}")
    if _int_list(inp.get("imgsz"), "input.imgsz") != shape[2:]:
        raise ModelInvalid(f"input.imgsz {inp.get('imgsz')} disagrees with input.shape {shape}")
    oshape = _int_list(out.get("shape"), "output.shape")
    if len(oshape) != 3 or oshape[1] != 4 + len(names):
        raise ModelInvalid(f"output.shape {oshape} must be [1, 4+nc, N] with nc={len(names)}")
    if not inp.get("name") or not out.get("name"):
        raise ModelInvalid("input.name and output.name are required")
    return meta


def main(argv: list[str]) -> int:
    args = list(argv[1:])
    challenger = None
    if "--challenger" in args:
        at = args.index("--challenger")
        if at + 1 >= len(args):
            print("usage: verify_model.py [ARTIFACTS_DIR] [--challenger DIR]", file=sys.stderr)
            return 2
        challenger = Path(args[at + 1])
        del args[at:at + 2]
    if len(args) > 1:
        print("usage: verify_model.py [ARTIFACTS_DIR] [--challenger DIR]", file=sys.stderr)
        return 2
    folders = [("model", Path(args[0]) if args else Path(__file__).resolve().parent)]
    if challenger is not None and challenger.exists():
        folders.append(("challenger", challenger))
    for role, folder in folders:
        try:
            meta = verify(folder)
        except ModelInvalid as exc:
            print(f"MODEL VERIFICATION FAILED ({role}): {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"MODEL VERIFICATION FAILED ({role}): cannot read {folder}: {exc}",
                  file=sys.stderr)
            return 1
        print(f"{role} OK: {meta['name']} {meta['version']} {meta['onnx_file']} "
              f"sha256={meta['sha256']} classes={meta['class_names']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
