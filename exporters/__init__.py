"""PyTorch -> ONNX exporters (installed as samedge.exporters; needs the `export` extra)."""
