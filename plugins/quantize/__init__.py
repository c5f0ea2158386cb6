"""Quantize stage: esp-ppq ``.espdl`` export, the host reader and integer interpreter of that file,
quantization-aware fine-tuning, calibration images and the device cost report."""
