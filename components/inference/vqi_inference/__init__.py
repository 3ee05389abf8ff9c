"""com.example.vqi.Inference: onnxruntime YOLO detector service over Greengrass IPC."""

from __future__ import annotations

COMPONENT_NAME = "com.example.vqi.Inference"
__version__ = "1.0.0"
