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

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from baselines.hac import HAC, HACConfig
from baselines.hacpp import HACppFields, HACppParts
from predictgs.config import bounded
from predictgs.entropy import hash_table_bits
from predictgs.methods.base import lr, lr_field
from predictgs.methods.registry import register_method
from predictgs.model.anchors import AnchorBounds
from predictgs.model.scaffold import view_inputs
from predictgs.nn.hashgrid import GridPlaneEncoding
from predictgs.train.curriculum import CurriculumConfig
from predictgs.train.optim import ParamGroup
from predictgs.train.schedule import paper_fraction


@dataclass
class SFPConfig:
    log2_grid: int = field(default=13, metadata=bounded(1, 24))
    log2_plane: int = field(default=15, metadata=bounded(1, 24))
    features_per_level: int = field(default=4, metadata=bounded(1, 64))
    fusion_hidden: int = field(default=100, metadata=bounded(1, 4096))


def _predictgs_curriculum(schedule: str = "cosine") -> CurriculumConfig:
    """HAC's quantisation phases; stage 2 (the residual branch) from 5k/30k; the training targets
    downsampled from 0.7 to full resolution over the first 9k/30k (eq. 6)."""
    return CurriculumConfig(noise_from=paper_fraction(3000), entropy_from=paper_fraction(10000),
                            bbox_update_at=paper_fraction(10000), residual_from=paper_fraction(5000),
                            schedule=schedule, ds_init=0.7, ds_final=1.0, ds_until=paper_fraction(9000))


@dataclass
class PredictGSConfig(HACConfig):
    feat_dim: int = field(default=50, metadata=bounded(1, 4096))  # f_c, the feature the Scaffold-GS MLPs read
    residual_dim: int = field(default=25, metadata=bounded(0, 4096))  # f_r; 0 = SFP only
    mgrd_hidden: int = field(default=50, metadata=bounded(1, 4096))
    sfp: SFPConfig = field(default_factory=SFPConfig)
    lr_sfp: tuple[float, float] = lr_field(0.005, 0.00001)
    lr_fusion: tuple[float, float] = lr_field(0.005, 0.00001)
    lr_mgrd: tuple[float, float] = lr_field(0.004, 0.00004)
    # What divides the hash bits per anchor in the rate term. None: the values the entropy model codes per
    # anchor (f_r 25 + scaling 6 + offsets 30 = 61); 86 reads HAC's feat_dim as f_c's 50 (HAC's own
    # normaliser): docs/methods.md, "Readings of the paper".
    hash_values_per_anchor: int | None = field(default=None, metadata=bounded(1, 1 << 20, optional=True))
    curriculum: CurriculumConfig = field(default_factory=_predictgs_curriculum)


class SpatialFeaturePool(nn.Module):
    """Binarised 3D grid + three 2D planes, fused by a two-layer MLP into f_c."""

    def __init__(self, config: SFPConfig, out_dim: int):
        super().__init__()
        self.encoding = GridPlaneEncoding(log2_grid=config.log2_grid, log2_plane=config.log2_plane,
                                          features_per_level=config.features_per_level)
        self.fusion = nn.Sequential(nn.Linear(self.encoding.output_dim, config.fusion_hidden), nn.ReLU(True),
                                    nn.Linear(config.fusion_hidden, out_dim))

    def forward(self, normalised_positions: Tensor, tables=None) -> Tensor:
        return self.fusion(self.encoding(normalised_positions.clamp(0.0, 1.0), tables))


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


@register_method
class PredictGS(HAC):
    name = "predictgs"
    label = "Predict-GS"
    config_class = PredictGSConfig
    default_lmbda = 0.004  # "Ours" in the paper's tables (0.0005: "Ours (high rate)")
    attribute_group = "residual"

    def __init__(self, config: PredictGSConfig, anchors, extent: float, voxel_size: float):
        super().__init__(config, anchors, extent, voxel_size)
        self.sfp = SpatialFeaturePool(config.sfp, config.feat_dim)
        self.mgrd = ResidualDecoder(config.residual_dim, config.mgrd_hidden, config.n_offsets) \
            if config.residual_dim > 0 else None
        self.sfp_bounds = AnchorBounds.around(anchors.positions) if anchors.num_anchors else AnchorBounds()

    @classmethod
    def attr_dim(cls, config) -> int:
        return config.residual_dim

    def param_groups(self) -> list[ParamGroup]:
        c = self.config
        groups = super().param_groups() + [
            ParamGroup("sfp", list(self.sfp.encoding.parameters()), lr(c.lr_sfp)),
            ParamGroup("fusion", list(self.sfp.fusion.parameters()), lr(c.lr_fusion)),
        ]
        if self.mgrd is not None:
            groups.append(ParamGroup("mgrd", list(self.mgrd.parameters()), lr(c.lr_mgrd)))
        return groups

    # -- rendering -----------------------------------------------------------------------------------
    def predicted_features(self, positions: Tensor, tables=None) -> Tensor:
        """f_c of anchors at the given (quantised) positions."""
        return self.sfp(self.sfp_bounds.normalise(positions), tables)

    def training_rows(self, rows, tables):
        return {**rows, "predicted": self.predicted_features(rows["positions"], tables["sfp"])}

    def render_anchors(self, view, visible, rows: dict[str, Tensor], residual: bool):
        """The Scaffold-GS MLPs read f_c (computed here in training, cached at test time); MGRD's
        corrections from f_r are added before the output activations in stage 2 and at test time."""
        positions = rows["positions"]
        predicted = rows["predicted"]
        dirs, dist = view_inputs(positions, view.center)
        opacity, cov, color = self.decoder.logits(predicted, dirs, dist)
        scale_logits, rotations = cov[..., 0:3], cov[..., 3:7]
        if residual and self.mgrd is not None:
            shape, appearance = self.mgrd(rows["attributes"], dirs, dist)
            scale_logits = scale_logits + shape[..., 0:3]
            rotations = rotations + shape[..., 3:7]
            opacity = opacity + appearance[..., 0]
            color = color + appearance[..., 1:4]
        return self.spawn(visible, rows, torch.tanh(opacity), scale_logits, rotations, torch.sigmoid(color))

    def extend_test_state(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """f_c depends only on the (fixed) anchor positions: computed once for the test-time model."""
        with torch.no_grad():
            return {**state, "predicted": self.predicted_features(state["positions"])}

    # -- size ----------------------------------------------------------------------------------------
    def hash_values_per_anchor(self) -> int:
        return self.config.hash_values_per_anchor or super().hash_values_per_anchor()

    def hash_bits(self, tables):
        return super().hash_bits(tables) + hash_table_bits(self.sfp.encoding, tables["sfp"])

    def networks(self) -> dict:
        nets = {**super().networks(), "fusion": self.sfp.fusion}
        if self.mgrd is not None:
            nets["mgrd"] = self.mgrd
        return nets

    def binary_tables(self) -> dict:
        return {**super().binary_tables(), "sfp": self.sfp.encoding}

    @classmethod
    def table_sections(cls, config) -> list[str]:
        return ["hash", "sfp"]

    def boxes(self) -> dict[str, AnchorBounds]:
        return {**super().boxes(), "sfp_bounds": self.sfp_bounds}

    def bit_categories(self) -> list[str]:
        return ["anchor", "residual", "sfp", "scaling", "offsets", "hash", "masks", "mlps"]

    reference_accounting = (
        "HAC's, as Predict-GS builds on HAC's code (paper A.2; positions \"quantized to 16 bits and stored "
        "directly\", 3.4): anchor positions at 48 bits; residuals f_r, scaling and offsets (masked offsets "
        "excluded) as entropy-coded; the SFP's and the context's hash tables and the masks as one Bernoulli "
        "each + 32 bits; every MLP (Scaffold-GS's, mlp_grid, the SFP's fusion, MGRD) at 32 bits per "
        "parameter. This is estimated_bits.")

    def extra_metrics(self) -> dict:
        c = self.config
        return {"residual_dim": c.residual_dim, "schedule": c.curriculum.schedule, "ds_init": c.curriculum.ds_init}


# The settings the paper sweeps (Table 6, Figs. 6 and 7): where each lives in the model configuration.
SWEEP_FIELDS = {"residual_dim": ("residual_dim",), "schedule": ("curriculum", "schedule"),
                "ds_init": ("curriculum", "ds_init")}


def paper_settings(config: PredictGSConfig | None = None) -> dict:
    """The swept settings of a configuration (default: the paper's), by sweep name."""
    config = config or PredictGSConfig()
    settings = {}
    for name, path in SWEEP_FIELDS.items():
        value = config
        for key in path:
            value = getattr(value, key)
        settings[name] = value
    return settings


def setting_overrides(name: str, value) -> dict:
    """The model-config overrides (nested mapping) that set one swept setting."""
    path = SWEEP_FIELDS[name]
    overrides = value
    for key in reversed(path):
        overrides = {key: overrides}
    return overrides


# Ablation variants (Table 4), registered as methods of their own so that runs and tables name them.
@dataclass
class SFPOnlyConfig(PredictGSConfig):
    residual_dim: int = field(default=0, metadata=bounded(0, 4096))
    curriculum: CurriculumConfig = field(default_factory=lambda: _predictgs_curriculum("off"))


@register_method
class PredictGSSFPOnly(PredictGS):
    """Ours w/ SFP: prediction only, no residual, no progressive training."""

    name = "predictgs_sfp_only"
    label = "Predict-GS (SFP only)"
    config_class = SFPOnlyConfig


@dataclass
class NoProgressiveConfig(PredictGSConfig):
    curriculum: CurriculumConfig = field(default_factory=lambda: _predictgs_curriculum("off"))


@register_method
class PredictGSNoProgressive(PredictGS):
    """Ours w/ SFP w/ f_r: prediction and residual, no progressive training (reading 1: the two stages
    stay, the residual branch from 5k/30k; only the downsampling is off)."""

    name = "predictgs_no_pt"
    label = "Predict-GS (no progressive training)"
    config_class = NoProgressiveConfig


@dataclass
class OneStageConfig(PredictGSConfig):
    curriculum: CurriculumConfig = field(default_factory=lambda: dataclasses.replace(
        _predictgs_curriculum("off"), residual_from=0.0))


@register_method
class PredictGSOneStage(PredictGS):
    """Ours w/ SFP w/ f_r, reading 2 of "w/o PT": neither part of Sec. 3.3's progressive training, i.e.
    no downsampling and no two stages (the residual branch trains from the first iteration)."""

    name = "predictgs_no_pt_one_stage"
    label = "Predict-GS (no progressive training, one stage)"
    config_class = OneStageConfig


# Predict-GS on HAC++'s entropy model: the paper says its predictive framework is compatible with stronger
# entropy models; this makes it testable. The residual f_r is coded by HAC++'s model (channel context on
# chunks of f_r + the hash context), and the other HAC++ parts (lattice anchors, masks, rate sampling)
# replace HAC's, exactly as in ``hacpp``.
@dataclass
class PredictGSHACppConfig(HACppFields, PredictGSConfig):
    mask_loss_weight: float = field(default=0.0, metadata=bounded(0.0, None))


@register_method
class PredictGSHACpp(HACppParts, PredictGS):
    name = "predictgs_hacpp"
    label = "Predict-GS + HAC++"
    config_class = PredictGSHACppConfig
    reference_accounting = (
        "HAC++'s, with Predict-GS's parts: anchor positions at the size of their coded file + 192 bits for "
        "the box (here our lattice coder's size, marked: HAC++ codes them with G-PCC); residuals f_r "
        "(channel-context mixture), scaling and offsets as entropy-coded; the SFP's and the context's hash "
        "tables and the masks as one Bernoulli each + 32 bits; every MLP at 32 bits per parameter. This is "
        "estimated_bits.")
