"""Fakes of host software the driver talks to (NVML, an NVIDIA driver root)."""
