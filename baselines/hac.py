"""HAC (Chen et al., ECCV 2024): Scaffold-GS plus a hash-grid-assisted context model, adaptive
quantisation, learnable offset masks and 16-bit anchor positions.

Schedule (fractions of the run; the reference's iterations at 30k in brackets):
- up to ``noise_from`` (3k): plain Scaffold-GS training, masks on the opacities;
- to ``entropy_from`` (10k): uniform noise U(-1/2, 1/2) Q0 on the visible anchors' features, scaling and
  offsets, simulating quantisation with the fixed base steps;
- after: the context gives mu, sigma and the adaptive step Q per anchor; noise U(-1/2, 1/2) Q is added
  (and rendered); the rate loss lambda (bits per parameter over 5% of the visible anchors that keep a
  Gaussian + hash bits per anchor parameter) and the mask loss 5e-4 mean(sigmoid(m)) are added;
- the anchor box is recomputed at ``bbox_update_at`` (10k); densification pauses from 3k to 4k.
Test time: rounding with the adaptive Q (what the bitstream stores).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from predictgs.entropy import binary_bits, hash_table_bits
from predictgs.model.anchor_method import BITS_PER_FLOAT, AnchorConfig, AnchorMethod, lr
from predictgs.model.anchors import AnchorBounds
from predictgs.model.context import ContextConfig, ContextModel, group_bits, quantise_groups
from predictgs.render import visible_mask
from predictgs.train.densify import DensifyConfig
from predictgs.train.optim import ParamGroup
from predictgs.train.schedule import at_fraction, paper_fraction

ANCHOR_BITS = 48  # 16 bits per axis
ESTIMATE_CHUNK = 3000  # anchors per context evaluation when costing the whole model (HAC's batch size)


def _hac_densify() -> DensifyConfig:
    return DensifyConfig(pause_from=paper_fraction(3000), pause_until=paper_fraction(4000))


@dataclass
class HACConfig(AnchorConfig):
    feat_dim: int = 50
    use_distance: bool = True
    lmbda: float = 0.001
    noise_from: float = paper_fraction(3000)
    entropy_from: float = paper_fraction(10000)
    bbox_update_at: float = paper_fraction(10000)
    entropy_sample_rate: float = 0.05
    mask_threshold: float = 0.01
    mask_loss_weight: float = 5e-4
    lr_masks_scaled: tuple[float, float] = (0.01, 0.0001)
    lr_hash: tuple[float, float] = (0.005, 0.00001)
    lr_mlp_grid: tuple[float, float] = (0.005, 0.00001)
    context: ContextConfig = field(default_factory=ContextConfig)
    densify: DensifyConfig = field(default_factory=_hac_densify)


class HAC(AnchorMethod):
    name = "hac"
    config_class = HACConfig
    with_masks = True

    def __init__(self, config: HACConfig, anchors, extent: float, voxel_size: float):
        super().__init__(config, anchors, extent, voxel_size)
        self.context = ContextModel(self.attr_dim(config), config.n_offsets, config.context)
        self.bounds = AnchorBounds.around(anchors.positions) if anchors.num_anchors else None
        self.decoded = None  # decoded mode (predictgs.codec): see forward_decoded

    # -- optimisation --------------------------------------------------------------------------------
    def param_groups(self) -> list[ParamGroup]:
        c = self.config
        return super().param_groups() + [
            ParamGroup("masks", [self.anchors.masks], lr(c.lr_masks_scaled, self.extent)),
            ParamGroup("hash", list(self.context.encoding.parameters()), lr(c.lr_hash)),
            ParamGroup("mlp_grid", list(self.context.mlp_grid.parameters()), lr(c.lr_mlp_grid)),
        ]

    def on_iteration_start(self, iteration: int, total: int) -> None:
        if iteration == at_fraction(self.config.bbox_update_at, total):
            self.bounds = AnchorBounds.around(self.anchors.positions)

    def phase(self, iteration: int, total: int, training: bool) -> str:
        if not training:
            return "test"
        if iteration <= at_fraction(self.config.noise_from, total):
            return "plain"
        if iteration <= at_fraction(self.config.entropy_from, total):
            return "noise"
        return "entropy"

    # -- attributes ----------------------------------------------------------------------------------
    def anchor_positions(self):
        return self.bounds.quantize(self.anchors.positions)

    def coded_values(self, rows) -> dict:
        """The coded groups of the given anchors: attributes, activated scaling, flattened raw offsets."""
        a = self.anchors
        return {
            "attributes": a.attributes[rows],
            "scaling": a.scaling_activated()[rows],
            "offsets": a.offsets[rows].reshape(-1, 3 * a.n_offsets),
        }

    def parameter_centres(self) -> dict:
        """HAC clamps coded values to mean(parameter) +- 15000 Q; the means over the whole model."""
        a = self.anchors
        return {"attributes": a.attributes.mean().detach(), "scaling": a.scaling_activated().mean().detach(),
                "offsets": a.offsets.mean().detach()}

    def base_steps(self) -> dict:
        return {g: torch.tensor(self.context.base_step(g)) for g in ("attributes", "scaling", "offsets")}

    def neural_gaussians(self, view, visible, positions, values: dict, masks, iteration: int, total: int,
                         training: bool):
        """Scaffold-GS's MLPs read the (quantised) feature f itself in HAC."""
        k = self.config.n_offsets
        return self.decode(view, visible, positions, values["attributes"], values["offsets"].reshape(-1, k, 3),
                           values["scaling"], masks)

    # -- forward -------------------------------------------------------------------------------------
    def forward(self, view, iteration: int, total: int, training: bool):
        if self.decoded is not None and not training:
            return self.forward_decoded(view, iteration, total)
        positions = self.anchor_positions()
        visible = self.visible_anchors(view, positions)
        values = self.coded_values(visible)
        masks = self.anchors.mask_hard(self.config.mask_threshold)[visible]
        phase = self.phase(iteration, total, training)
        losses = {}
        if phase == "noise":
            values = quantise_groups(values, self.base_steps(), "noise")
        elif phase in ("entropy", "test"):
            dist = self.context(self.bounds.normalise(positions[visible]))
            if phase == "test":
                values = quantise_groups(values, dist.step, "round", self.parameter_centres())
            else:
                values = quantise_groups(values, dist.step, "noise")
                losses = self.rate_losses(values, dist, masks)
        neural = self.neural_gaussians(view, visible, positions[visible], values, masks, iteration, total, training)
        return neural, losses

    # -- decoded mode (added for predictgs.codec) ---------------------------------------------------
    # A model rebuilt from a bitstream holds in ``self.decoded`` (predictgs.codec.decoded.DecodedAnchors)
    # the decoded, already quantised values of every anchor, and its anchor positions are already the
    # 16-bit grid positions. Test-time rendering uses them as they are: re-quantising per view would
    # recompute Q with the context on another batch of anchors, whose float results can differ in the
    # last bit from those the bitstream was coded with.
    def forward_decoded(self, view, iteration: int, total: int):
        d = self.decoded
        positions = self.anchors.positions
        visible = torch.nonzero(visible_mask(positions, d.scaling[:, 0:3], **view.render_args())).squeeze(1)
        values = {"attributes": d.attributes[visible], "scaling": d.scaling[visible],
                  "offsets": d.offsets[visible].reshape(visible.shape[0], -1)}
        neural = self.neural_gaussians(view, visible, positions[visible], values, d.masks[visible], iteration,
                                       total, training=False)
        return neural, {}

    def rate_losses(self, values: dict, dist, masks) -> dict:
        c = self.config
        keeps_gaussian = masks.sum(dim=(1, 2)) > 0
        anchor_rate = keeps_gaussian.float().mean().detach()
        chosen = (torch.rand(keeps_gaussian.shape[0], device=masks.device) <= c.entropy_sample_rate) & keeps_gaussian
        losses = {"mask": c.mask_loss_weight * torch.sigmoid(self.anchors.masks).mean()}
        hash_bits = self.hash_bits()
        per_anchor_params = sum(self.context.dims.values())
        hash_term = hash_bits / (self.anchors.num_anchors * per_anchor_params)
        if not chosen.any():
            losses["rate"] = c.lmbda * hash_term
            return losses
        sub = dist.rows(chosen)
        bits = group_bits({g: v[chosen] for g, v in values.items()}, sub, self.parameter_centres())
        bits = self.mask_offset_bits(bits, masks[chosen])
        total_bits = sum(b.sum() for b in bits.values())
        total_elems = sum(b.numel() for b in bits.values())
        losses["rate"] = c.lmbda * (total_bits / total_elems * anchor_rate + hash_term)
        return losses

    def hash_bits(self):
        """Bits of the binarised hash tables (the context's; Predict-GS adds its SFP)."""
        return hash_table_bits(self.context.encoding)

    @staticmethod
    def mask_offset_bits(bits: dict, masks) -> dict:
        """Offsets of masked Gaussians are not coded."""
        bits = dict(bits)
        bits["offsets"] = bits["offsets"] * masks.expand(-1, -1, 3).reshape(masks.shape[0], -1)
        return bits

    # -- size ----------------------------------------------------------------------------------------
    def kept_anchors(self):
        """Anchors with at least one active offset; the others are dropped by the encoder."""
        return torch.nonzero((self.anchors.mask_hard(self.config.mask_threshold) > 0).any(dim=(1, 2))).squeeze(1)

    def kept_anchor_count(self) -> int:
        return int(self.kept_anchors().shape[0])

    def active_gaussian_count(self) -> int:
        masks = self.anchors.mask_hard(self.config.mask_threshold).detach()
        return int((masks[self.kept_anchors()] > 0).sum())

    def mlp_parameter_count(self) -> int:
        return super().mlp_parameter_count() + sum(p.numel() for p in self.context.mlp_grid.parameters())

    @torch.no_grad()
    def coded_bits(self) -> dict[str, float]:
        """Entropy-model bits of the rounded attributes of the kept anchors, per group."""
        kept = self.kept_anchors()
        positions = self.anchor_positions()
        masks = self.anchors.mask_hard(self.config.mask_threshold)
        centres = self.parameter_centres()
        totals = {"attributes": 0.0, "scaling": 0.0, "offsets": 0.0}
        for start in range(0, kept.shape[0], ESTIMATE_CHUNK):
            rows = kept[start:start + ESTIMATE_CHUNK]
            dist = self.context(self.bounds.normalise(positions[rows]))
            values = quantise_groups(self.coded_values(rows), dist.step, "round", centres)
            bits = self.mask_offset_bits(group_bits(values, dist, centres), masks[rows])
            for g in totals:
                totals[g] += float(bits[g].sum())
        return totals

    @torch.no_grad()
    def estimated_bits(self) -> dict[str, float]:
        kept = self.kept_anchors()
        coded = self.coded_bits()
        mask_bits = (self.anchors.mask_hard(self.config.mask_threshold)[kept] > 0).float()
        return {
            "anchor": float(kept.shape[0] * ANCHOR_BITS),
            "feat": coded["attributes"],
            "scaling": coded["scaling"],
            "offsets": coded["offsets"],
            "hash": float(hash_table_bits(self.context.encoding)),
            "masks": float(binary_bits(mask_bits)),
            "mlps": float(self.mlp_parameter_count() * BITS_PER_FLOAT),
        }

    def extra_state(self) -> dict:
        return {"bounds": self.bounds.state_dict() if self.bounds is not None else None}

    def load_extra_state(self, state: dict) -> None:
        if state.get("bounds") is not None:
            self.bounds = AnchorBounds.from_state_dict(state["bounds"])

