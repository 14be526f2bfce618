"""Per-dataset settings, in one place: the command line (``predictgs train --preset NAME``, ``predictgs
presets``) and the workflow (a benchmark's ``preset:``, config/config.yaml and config/paper.yaml) read
them from here.

    from predictgs.presets import PRESETS
    PRESETS["tandt"].voxel_size                 # 0.01
    PRESETS["tandt"].train_config("hacpp")      # the `predictgs train --config` fragment for one method

A preset holds what the reference code changes per dataset (Scaffold-GS / HAC / HAC++ run scripts:
voxel size and growth's initial factor, HAC++'s final mask learning rate per lambda), the evaluation
protocol of the HAC / Predict-GS tables (resolution, test split, background), and, for the embedded
benchmark, what its low resolution needs (a larger anchor-growing threshold: it is in NDC units;
smaller hash tables for a few thousand anchors; see docs/methods.md). A value left None is the
method's own default (the reference value), so that a preset writes only what it changes.

Order of precedence in a run: the method's defaults < the preset < ``--config FILE`` < options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# The reference values that a None stands for (the methods' defaults; tests/test_presets.py checks them).
REFERENCE_GRAD_THRESHOLD = 0.0002
REFERENCE_INIT_FACTOR = 16
REFERENCE_MASK_LR = (5e-4, 1.5e-3)  # HAC++: Mip-NeRF360's final mask lr per lambda/1e-3, and its cap
REFERENCE_HASH_LOG2 = (13, 15)      # HAC's 3D grid and 2D planes (log2 of the table sizes)
PAPER_PROTOCOL = {"resolution": "hac", "max_width": 1600, "llffhold": 8}


@dataclass(frozen=True)
class Preset:
    """One dataset's settings (see the module docstring); None: the method's default."""

    name: str
    description: str
    voxel_size: float | None = None          # None: automatic (median SfM point spacing / 16)
    init_factor: int | None = None           # growth's initial voxel factor (update_init_factor)
    grad_threshold: float | None = None      # anchor growing (densify.grad_threshold) and 3DGS's grow_grad2d
    mask_lr: tuple[float, float | None] | None = None  # HAC++: (final mask lr per lambda/1e-3, cap or None)
    hash_log2: int | None = None             # log2 of the context (and SFP) hash-table sizes, grid and planes
    opacity_reset: bool = True               # 3DGS's periodic opacity reset
    background: str | None = None            # "black", "white"; None: by the scene's format
    protocol: dict = field(default_factory=dict)  # resolution protocol (predictgs.data.Protocol keys)

    def protocol_dict(self) -> dict:
        """The protocol options this preset sets (background included)."""
        protocol = dict(self.protocol)
        if self.background is not None:
            protocol["white_background"] = self.background == "white"
        return protocol

    def model_overrides(self, method: str) -> dict:
        """The ``model:`` keys this preset sets for ``method``: only keys its configuration has."""
        from .methods import method_class

        config = method_class(method).config_class()
        names = {f.name for f in dataclasses.fields(config)}
        model: dict = {}
        if self.voxel_size is not None and "voxel_size" in names:
            model["voxel_size"] = self.voxel_size
        densify_names = {f.name for f in dataclasses.fields(config.densify)} if "densify" in names else set()
        densify = {}
        if self.grad_threshold is not None:
            for key in ("grad_threshold", "grow_grad2d"):
                if key in densify_names:
                    densify[key] = self.grad_threshold
        if self.init_factor is not None and "init_factor" in densify_names:
            densify["init_factor"] = self.init_factor
        if not self.opacity_reset and "reset_every" in densify_names:
            densify["reset_every"] = None
        if densify:
            model["densify"] = densify
        if self.hash_log2 is not None:
            for part in ("context", "sfp"):
                if part in names:
                    model[part] = {"log2_grid": self.hash_log2, "log2_plane": self.hash_log2}
        if self.mask_lr is not None and "mask_lr_final_per_lambda" in names:
            model["mask_lr_final_per_lambda"], model["mask_lr_final_max"] = self.mask_lr
        return model

    def train_config(self, method: str) -> dict:
        """What ``predictgs train --preset NAME --method METHOD`` applies, as a ``--config`` file would
        hold it (sections model and protocol; empty ones left out)."""
        fragment = {"model": self.model_overrides(method), "protocol": self.protocol_dict()}
        return {key: value for key, value in fragment.items() if value}

    def summary(self) -> dict:
        """Every setting with the reference values written out (``predictgs presets``)."""
        per_lambda, cap = self.mask_lr or REFERENCE_MASK_LR
        log2 = (self.hash_log2, self.hash_log2) if self.hash_log2 is not None else REFERENCE_HASH_LOG2
        protocol = {**{"resolution": "hac", "max_width": 1600, "llffhold": 8}, **self.protocol}
        return {
            "preset": self.name,
            "for": self.description,
            "voxel_size": self.voxel_size if self.voxel_size is not None else "auto",
            "init_factor": self.init_factor or REFERENCE_INIT_FACTOR,
            "grad_threshold": self.grad_threshold or REFERENCE_GRAD_THRESHOLD,
            "hacpp_mask_lr": f"{per_lambda:g} x lambda/1e-3" + (f", at most {cap:g}" if cap is not None else ""),
            "hash_tables": f"2^{log2[0]} grid, 2^{log2[1]} planes",
            "3dgs_opacity_reset": self.opacity_reset,
            "resolution": (f"{protocol['resolution']} (width <= {protocol['max_width']})"
                           if protocol["resolution"] == "hac" else protocol["resolution"]),
            "test_views": f"every {protocol['llffhold']}th" + (" (or the dataset's split)"
                                                                if self.name == "nerf_synthetic" else ""),
            "background": self.background or "by format (white: Blender, black: others)",
        }


PRESETS: dict[str, Preset] = {preset.name: preset for preset in (
    Preset("embedded", "the embedded benchmark (`predictgs synth` scenes, about 112x84 to 160x120)",
           grad_threshold=0.0016, hash_log2=11, opacity_reset=False),
    Preset("mipnerf360", "Mip-NeRF360 (360_v2), images/ at width <= 1600",
           voxel_size=0.001, background="black", protocol=dict(PAPER_PROTOCOL)),
    Preset("tandt", "Tanks&Temples (3DGS's tandt_db: train, truck)",
           voxel_size=0.01, mask_lr=(1e-4, None), background="black", protocol=dict(PAPER_PROTOCOL)),
    Preset("db", "Deep Blending (3DGS's tandt_db: playroom, drjohnson)",
           voxel_size=0.005, mask_lr=(8e-5, None), background="black", protocol=dict(PAPER_PROTOCOL)),
    Preset("nerf_synthetic", "NeRF-synthetic (Blender scenes, 800x800, their own split)",
           voxel_size=0.001, init_factor=4, mask_lr=(8e-5, None), background="white",
           protocol=dict(PAPER_PROTOCOL)),
)}


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> Preset:
    from .errors import ConfigError

    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return PRESETS[name]


__all__ = ["Preset", "PRESETS", "preset_names", "get_preset"]
