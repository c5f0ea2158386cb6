"""Deploy stage: partition tables, the CrowPanel target (esptool), flash bundles, ``deploy``."""
