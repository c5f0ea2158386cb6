"""Models stage: the shipped architectures, ONNX export, model file formats and ``evaluate``."""
