"""Model toolchain behind scripts/model: synthetic data, offline training, ONNX export with
metadata and parity check, int8 quantization, onnxruntime mAP, packaging into components/model.

The toolchain runs the device's own code (the Inference component's package and the repo's
shared/), so both are put on the import path here, once for every module of the toolchain.
"""

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[3]
for _path in (_REPO, _REPO / "components" / "inference"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
