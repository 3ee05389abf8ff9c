"""Model toolchain behind scripts/model: synthetic data, offline training, ONNX export with
metadata and parity check, int8 quantization, onnxruntime mAP, packaging into components/model."""
