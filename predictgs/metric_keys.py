"""Names of the quality metrics in a run's ``metrics.json`` (and in a decoded model's evaluation).

Torch-free on purpose: the workflow's light per-run script (``workflow/scripts/run_summary.py``) imports it
without loading the library, and the codec pipeline, which merges a decoded evaluation into a run's
metrics, uses the same tuple.
"""

from __future__ import annotations

# PSNR, SSIM, LPIPS-VGG in the 3DGS convention (the published tables' LPIPS), correctly normalised
# LPIPS-VGG and LPIPS-Alex (predictgs.metrics).
QUALITY_KEYS = ("psnr", "ssim", "lpips", "lpips_vgg", "lpips_alex")

__all__ = ["QUALITY_KEYS"]
