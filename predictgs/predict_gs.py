"""Predict-GS (Ma et al., "Mitigating Spatial Redundancy: A Predictive Compression Framework for 3D
Gaussian Splatting"): the anchor feature is predicted from a shared Spatial Feature Pool and only a short
per-anchor residual is coded.

    f_c          = F(concat(I(x, H_xyz), I(x, H_xy), I(x, H_xz), I(x, H_yz)))       (eqs. 1-2)
    s, r, a, c   = Scaffold-GS MLPs(f_c, delta_c, d_c)                              (eq. 3)
    ds, dr, da, dc = MGRD_s(f_r, delta_c, d_c), MGRD_a(f_r, delta_c, d_c)            (eq. 4)
    refined      = predicted + correction                                          (eq. 5)

Everything else (offsets, scaling, masks, 16-bit anchors, the context entropy model now coding f_r
instead of f, the rate and mask losses) is HAC's, and so is reused from ``baselines.hac``.

Where the paper is silent, the choices made here (and why):
- eq. 5 is applied to the pre-activation values: scale logits (before the sigmoid that scales the
  anchor's base scale), quaternion logits (before normalisation), opacity before tanh and colour before
  sigmoid. Adding to activated values could leave the valid ranges (negative scales, colours > 1);
  this keeps every refined attribute valid and trains stably.
- MGRD's output layers start at zero, so enabling the residual branch (stage 2) leaves the stage-1
  prediction unchanged at first.
- the SFP is normalised by the anchor box of the initial anchors, kept fixed (HAC's box update at 10k
  would move every SFP lookup); positions outside it are clamped to the box.
- hidden widths (not given): fusion MLP 96 -> 100 -> 50, MGRD heads (f_r + 4) -> 50 -> K x 7 / K x 4;
  learning rates as HAC's context modules (SFP tables as the context tables, fusion MLP as mlp_grid),
  MGRD 0.004 -> 4e-5, the residual f_r as HAC's feature (0.0075).
- SFP tables cost their entropy-coded bits ("sfp"); the fusion MLP and MGRD count as MLPs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from baselines.hac import HAC, HACConfig
from predictgs.entropy import hash_table_bits
from predictgs.model.anchor_method import lr
from predictgs.model.anchors import AnchorBounds
from predictgs.model.scaffold import assemble_gaussians, view_inputs
from predictgs.nn.hashgrid import GridPlaneEncoding
from predictgs.train.optim import ParamGroup
from predictgs.train.schedule import at_fraction, paper_fraction

SCHEDULES = ("cosine", "linear", "none", "off")


def downsampling_scale(schedule: str, t: int, until: int, ds_init: float, ds_final: float = 1.0,
                       stage1_end: int = 0) -> float:
    """Resolution factor delta_t of the training targets at iteration t (0-based).

    cosine (eq. 6): delta_e + (delta_s - delta_e)(1 + cos(pi t / T)) / 2 for t < T, then delta_e;
    linear: delta_s + (delta_e - delta_s) t / T for t < T, then delta_e;
    none: delta_s through stage 1, full resolution in stage 2 (the ablation of Table 6);
    off: full resolution throughout (no progressive training, Table 4)."""
    if schedule == "off":
        return 1.0
    if schedule == "none":
        return ds_init if t < stage1_end else ds_final
    if t >= until:
        return ds_final
    if schedule == "cosine":
        return ds_final + 0.5 * (ds_init - ds_final) * (1.0 + math.cos(math.pi * t / until))
    if schedule == "linear":
        return ds_init + (ds_final - ds_init) * t / until
    raise ValueError(f"unknown downsampling schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


@dataclass
class SFPConfig:
    log2_grid: int = 13
    log2_plane: int = 15
    features_per_level: int = 4
    fusion_hidden: int = 100


@dataclass
class PredictGSConfig(HACConfig):
    feat_dim: int = 50  # f_c, the predicted feature the Scaffold-GS MLPs read
    residual_dim: int = 25  # f_r; 0 = SFP only
    residual_from: float = paper_fraction(5000)  # stage 2
    schedule: str = "cosine"
    ds_init: float = 0.7
    ds_final: float = 1.0
    ds_until: float = paper_fraction(9000)
    mgrd_hidden: int = 50
    lmbda: float = 0.004
    sfp: SFPConfig = field(default_factory=SFPConfig)
    lr_sfp: tuple[float, float] = (0.005, 0.00001)
    lr_fusion: tuple[float, float] = (0.005, 0.00001)
    lr_mgrd: tuple[float, float] = (0.004, 0.00004)


class SpatialFeaturePool(nn.Module):
    """Binarised 3D grid + three 2D planes, fused by a two-layer MLP into f_c."""

    def __init__(self, config: SFPConfig, out_dim: int):
        super().__init__()
        self.encoding = GridPlaneEncoding(log2_grid=config.log2_grid, log2_plane=config.log2_plane,
                                          features_per_level=config.features_per_level)
        self.fusion = nn.Sequential(nn.Linear(self.encoding.output_dim, config.fusion_hidden), nn.ReLU(True),
                                    nn.Linear(config.fusion_hidden, out_dim))

    def forward(self, normalised_positions: Tensor) -> Tensor:
        return self.fusion(self.encoding(normalised_positions.clamp(0.0, 1.0)))


class ResidualDecoder(nn.Module):
    """MGRD: a shape head (scale 3 + rotation 4 per Gaussian) and an appearance head (opacity 1 + colour 3)."""

    def __init__(self, residual_dim: int, hidden: int, n_offsets: int):
        super().__init__()
        in_dim = residual_dim + 4  # f_r, viewing direction, viewing distance
        self.n_offsets = n_offsets
        self.shape_head = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(True), nn.Linear(hidden, 7 * n_offsets))
        self.appearance_head = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(True),
                                             nn.Linear(hidden, 4 * n_offsets))
        for head in (self.shape_head, self.appearance_head):
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    def forward(self, residual: Tensor, dirs: Tensor, dist: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([residual, dirs, dist], dim=1)
        n, k = x.shape[0], self.n_offsets
        return self.shape_head(x).reshape(n, k, 7), self.appearance_head(x).reshape(n, k, 4)


class PredictGS(HAC):
    name = "predictgs"
    config_class = PredictGSConfig

    def __init__(self, config: PredictGSConfig, anchors, extent: float, voxel_size: float):
        if config.schedule not in SCHEDULES:
            from predictgs.errors import ConfigError

            raise ConfigError(f"model.schedule must be one of {', '.join(SCHEDULES)}, got {config.schedule!r}")
        super().__init__(config, anchors, extent, voxel_size)
        self.sfp = SpatialFeaturePool(config.sfp, config.feat_dim)
        self.mgrd = ResidualDecoder(config.residual_dim, config.mgrd_hidden, config.n_offsets) \
            if config.residual_dim > 0 else None
        self.sfp_bounds = AnchorBounds.around(anchors.positions) if anchors.num_anchors else None

    @classmethod
    def attr_dim(cls, config) -> int:
        return config.residual_dim

    # -- schedule ------------------------------------------------------------------------------------
    def residual_active(self, iteration: int, total: int, training: bool) -> bool:
        if self.mgrd is None:
            return False
        return not training or iteration > at_fraction(self.config.residual_from, total)

    def training_scale(self, iteration: int, total: int) -> float:
        c = self.config
        return downsampling_scale(c.schedule, iteration - 1, at_fraction(c.ds_until, total), c.ds_init, c.ds_final,
                                  stage1_end=at_fraction(c.residual_from, total))

    def param_groups(self) -> list[ParamGroup]:
        c = self.config
        groups = super().param_groups() + [
            ParamGroup("sfp", list(self.sfp.encoding.parameters()), lr(c.lr_sfp)),
            ParamGroup("fusion", list(self.sfp.fusion.parameters()), lr(c.lr_fusion)),
        ]
        if self.mgrd is not None:
            groups.append(ParamGroup("mgrd", list(self.mgrd.parameters()), lr(c.lr_mgrd)))
        return groups

    # -- forward -------------------------------------------------------------------------------------
    def neural_gaussians(self, view, visible, positions, values: dict, masks, iteration: int, total: int,
                         training: bool):
        k = self.config.n_offsets
        predicted = self.sfp(self.sfp_bounds.normalise(positions))
        dirs, dist = view_inputs(positions, view.center)
        opacity, cov, color = self.decoder.logits(predicted, dirs, dist)
        scale_logits, rotations = cov[..., 0:3], cov[..., 3:7]
        if self.residual_active(iteration, total, training):
            shape, appearance = self.mgrd(values["attributes"], dirs, dist)
            scale_logits = scale_logits + shape[..., 0:3]
            rotations = rotations + shape[..., 3:7]
            opacity = opacity + appearance[..., 0]
            color = color + appearance[..., 1:4]
        opacity = torch.tanh(opacity) * masks[..., 0]
        return assemble_gaussians(visible, positions, values["offsets"].reshape(-1, k, 3), values["scaling"],
                                  opacity, scale_logits, rotations, torch.sigmoid(color))

    def hash_bits(self):
        return super().hash_bits() + hash_table_bits(self.sfp.encoding)

    # -- size ----------------------------------------------------------------------------------------
    def mlp_parameter_count(self) -> int:
        extra = sum(p.numel() for p in self.sfp.fusion.parameters())
        if self.mgrd is not None:
            extra += sum(p.numel() for p in self.mgrd.parameters())
        return super().mlp_parameter_count() + extra

    @torch.no_grad()
    def estimated_bits(self) -> dict[str, float]:
        bits = super().estimated_bits()
        bits["residual"] = bits.pop("feat")
        bits["sfp"] = float(hash_table_bits(self.sfp.encoding))
        order = ("anchor", "residual", "sfp", "scaling", "offsets", "hash", "masks", "mlps")
        return {key: bits[key] for key in order}

    def extra_metrics(self) -> dict:
        c = self.config
        return {"residual_dim": c.residual_dim, "schedule": c.schedule, "ds_init": c.ds_init}

    def extra_state(self) -> dict:
        return {**super().extra_state(),
                "sfp_bounds": self.sfp_bounds.state_dict() if self.sfp_bounds is not None else None}

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        if state.get("sfp_bounds") is not None:
            self.sfp_bounds = AnchorBounds.from_state_dict(state["sfp_bounds"])


# Ablation variants (Table 4), registered as methods of their own so that runs and tables name them.
@dataclass
class SFPOnlyConfig(PredictGSConfig):
    residual_dim: int = 0
    schedule: str = "off"


class PredictGSSFPOnly(PredictGS):
    """Ours w/ SFP: prediction only, no residual, no progressive training."""

    name = "predictgs_sfp_only"
    config_class = SFPOnlyConfig


@dataclass
class NoProgressiveConfig(PredictGSConfig):
    schedule: str = "off"


class PredictGSNoProgressive(PredictGS):
    """Ours w/ SFP w/ f_r: prediction and residual, no progressive training."""

    name = "predictgs_no_pt"
    config_class = NoProgressiveConfig
