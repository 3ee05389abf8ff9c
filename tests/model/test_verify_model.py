"""The Install check passes the committed model and fails a tampered one, clearly."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COMPONENT = Path(__file__).resolve().parents[2] / "components" / "model"
VERIFY = COMPONENT / "verify_model.py"


def _run(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(VERIFY), str(folder)], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture()
def copy(tmp_path: Path) -> Path:
    for name in ("model.onnx", "model.json", "verify_model.py"):
        shutil.copy2(COMPONENT / name, tmp_path / name)
    return tmp_path


@pytest.mark.timeout(60)
def test_committed_model_passes() -> None:
    res = _run(COMPONENT)
    assert res.returncode == 0, res.stderr
    assert "model OK" in res.stdout


@pytest.mark.timeout(60)
def test_defaults_to_its_own_folder(copy: Path) -> None:
    res = subprocess.run([sys.executable, str(copy / "verify_model.py")], capture_output=True,
                         text=True, timeout=60, cwd="/")
    assert res.returncode == 0, res.stderr


@pytest.mark.timeout(60)
def test_one_flipped_byte_fails_with_sha_mismatch(copy: Path) -> None:
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    res = _run(copy)
    assert res.returncode == 1
    assert "MODEL VERIFICATION FAILED" in res.stderr and "sha256 mismatch" in res.stderr


@pytest.mark.timeout(60)
def test_truncated_model_fails_on_size(copy: Path) -> None:
    data = (copy / "model.onnx").read_bytes()
    (copy / "model.onnx").write_bytes(data[:-100])
    res = _run(copy)
    assert res.returncode == 1 and "truncated or replaced" in res.stderr


@pytest.mark.timeout(60)
def test_missing_model_file_fails(copy: Path) -> None:
    (copy / "model.onnx").unlink()
    res = _run(copy)
    assert res.returncode == 1 and "missing model file" in res.stderr


@pytest.mark.timeout(60)
def test_unparseable_metadata_fails(copy: Path) -> None:
    (copy / "model.json").write_text("{not json")
    res = _run(copy)
    assert res.returncode == 1 and "not valid JSON" in res.stderr


@pytest.mark.timeout(60)
def test_output_shape_inconsistent_with_classes_fails(copy: Path) -> None:
    meta = json.loads((copy / "model.json").read_text())
    meta["class_names"] = ["scratch", "dent"]
    (copy / "model.json").write_text(json.dumps(meta))
    res = _run(copy)
    assert res.returncode == 1 and "4+nc" in res.stderr


@pytest.mark.timeout(60)
def test_runs_on_the_oldest_supported_python_syntax() -> None:
    import ast

    # Python 3.9 grammar: no match statements, no PEP 604 unions at runtime (annotations are
    # postponed by the __future__ import), and only standard-library imports.
    tree = ast.parse(VERIFY.read_text(), feature_version=(3, 9))
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
            for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree)
             if isinstance(n, ast.ImportFrom) and n.module}
    assert mods <= set(sys.stdlib_module_names)


@pytest.mark.timeout(60)
def test_a_challenger_is_checked_the_same_way(copy: Path, tmp_path: Path) -> None:
    challenger = tmp_path / "challenger"
    challenger.mkdir()
    for name in ("model.onnx", "model.json"):
        shutil.copy2(COMPONENT / name, challenger / name)
    command = [sys.executable, str(VERIFY), str(copy), "--challenger", str(challenger)]
    ok = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "challenger OK" in ok.stdout, ok.stderr
    data = bytearray((challenger / "model.onnx").read_bytes())
    data[100] ^= 0xFF
    (challenger / "model.onnx").write_bytes(bytes(data))
    bad = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "MODEL VERIFICATION FAILED (challenger): sha256 mismatch" in bad.stderr


@pytest.mark.timeout(60)
def test_a_version_without_a_challenger_passes(copy: Path, tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, str(VERIFY), str(copy), "--challenger",
                          str(tmp_path / "absent")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "challenger" not in res.stdout
