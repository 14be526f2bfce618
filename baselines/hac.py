"""HAC (Chen et al., ECCV 2024): Scaffold-GS plus a hash-grid-assisted context model, adaptive
quantisation, learnable offset masks and 16-bit anchor positions.

Curriculum (fractions of the run; the reference's iterations at 30k in brackets):
- up to ``noise_from`` (3k): plain Scaffold-GS training, masks on the opacities;
- to ``entropy_from`` (10k): uniform noise U(-1/2, 1/2) Q0 on the visible anchors' features, scaling and
  offsets, simulating quantisation with the fixed base steps;
- after: the context gives mu, sigma and the adaptive step Q per anchor; noise U(-1/2, 1/2) Q is added
  (and rendered); the rate term (bits per parameter over 5% of the visible anchors that keep a
  Gaussian + hash bits per anchor parameter, weighted by lambda in the loss) and the mask penalty
  5e-4 mean(sigmoid(m)) are added;
- the anchor box is recomputed at ``bbox_update_at`` (10k); densification pauses from 3k to 4k.
Test time: rounding with the adaptive Q, exactly the values the bitstream stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from predictgs.codec import CodedState, section_reader
from predictgs.codec.positions import decode_positions, encode_positions, morton_order
from predictgs.codec.tensors import decode_floats, encode_floats
from predictgs.config import bounded
from predictgs.entropy.anchor import MAX_CHUNK_ANCHORS, AnchorEntropyModel, ContextConfig
from predictgs.entropy.binary import (compress_masks, compress_tables, decompress_masks, decompress_tables, mask_bits,
                                      tables_bits)
from predictgs.errors import BitstreamError
from predictgs.methods.base import (BITS_PER_FLOAT, AnchorConfig, AnchorMethod, header_box, header_number, lr,
                                    lr_field)
from predictgs.methods.registry import register_method
from predictgs.model.anchors import AnchorBounds
from predictgs.nn.hashgrid import HAC_GRID_RESOLUTIONS, HAC_PLANE_RESOLUTIONS, level_table_sizes
from predictgs.train.curriculum import CurriculumConfig
from predictgs.train.densify import DensifyConfig
from predictgs.train.optim import ParamGroup
from predictgs.train.schedule import paper_fraction

ANCHOR_BITS = 48  # 16 bits per axis
MASKED_OFF_LOGIT = -10.0  # raw mask of a decoded masked-off offset: sigmoid(-10) < HAC's 0.01 threshold
MASKED_ON_LOGIT = 10.0
MAX_TABLE_VALUES = 1 << 26  # binary hash-table values of one encoding the decoder accepts


def _hac_densify() -> DensifyConfig:
    return DensifyConfig(pause_from=paper_fraction(3000), pause_until=paper_fraction(4000))


def _hac_curriculum() -> CurriculumConfig:
    return CurriculumConfig(noise_from=paper_fraction(3000), entropy_from=paper_fraction(10000),
                            bbox_update_at=paper_fraction(10000))


@dataclass
class HACConfig(AnchorConfig):
    feat_dim: int = field(default=50, metadata=bounded(1, 4096))
    use_distance: bool = True
    entropy_sample_rate: float = field(default=0.05, metadata=bounded(0.0, 1.0))
    mask_threshold: float = field(default=0.01, metadata=bounded(0.0, 1.0, low_open=True, high_open=True))
    mask_loss_weight: float = field(default=5e-4, metadata=bounded(0.0, None))
    lr_masks_scaled: tuple[float, float] = lr_field(0.01, 0.0001)
    lr_hash: tuple[float, float] = lr_field(0.005, 0.00001)
    lr_mlp_grid: tuple[float, float] = lr_field(0.005, 0.00001)
    context: ContextConfig = field(default_factory=ContextConfig)
    densify: DensifyConfig = field(default_factory=_hac_densify)
    curriculum: CurriculumConfig = field(default_factory=_hac_curriculum)


def table_values(config: ContextConfig) -> int:
    """Binary values of one grid + planes encoding of the given configuration."""
    grid = sum(level_table_sizes(HAC_GRID_RESOLUTIONS, 3, config.log2_grid))
    planes = 3 * sum(level_table_sizes(HAC_PLANE_RESOLUTIONS, 2, config.log2_plane))
    return (grid + planes) * config.features_per_level


@dataclass
class CodedAnchors:
    """The anchors a bitstream stores, in file order (Morton order of their 16-bit codes)."""

    rows: Tensor  # indices into the model's anchors
    codes: Tensor  # [n, 3] int64
    positions: Tensor  # [n, 3] the 16-bit grid positions
    masks: Tensor  # [n, K, 1] bool
    values: dict[str, Tensor]  # the coded groups, unquantised
    centres: dict[str, Tensor]  # HAC's clamp centres (parameter means over all anchors)


@dataclass
class RateSample:
    """The anchors the rate term is measured on: ``rows`` (indices) or ``weights`` (0/1, [n, 1]), and the
    share of visible anchors that keep a Gaussian."""

    anchor_rate: Tensor
    rows: Tensor | None
    weights: Tensor | None


class StepTables(dict):
    """The binarised tables of a training step, by section name, binarised on first use (once per step:
    the lookups and the rate term share them)."""

    def __init__(self, encodings: dict):
        super().__init__()
        self.encodings = encodings

    def __missing__(self, name: str):
        tables = self[name] = self.encodings[name].binarised()
        return tables


@register_method
class HAC(AnchorMethod):
    name = "hac"
    label = "HAC"
    config_class = HACConfig
    default_lmbda = 0.001  # "HAC-highrate" on Mip-NeRF360, Tanks&Temples and Deep Blending
    with_masks = True
    attribute_group = "feat"  # the name of the attribute vector's stream and bit category

    def __init__(self, config: HACConfig, anchors, extent: float, voxel_size: float):
        super().__init__(config, anchors, extent, voxel_size)
        self.context = self.build_entropy_model(config)
        self.bounds = AnchorBounds.around(anchors.positions) if anchors.num_anchors else AnchorBounds()

    def build_entropy_model(self, config) -> AnchorEntropyModel:
        c = config.context
        groups = {self.attribute_group: self.attr_dim(config), "scaling": 6, "offsets": 3 * config.n_offsets}
        steps = {self.attribute_group: c.q0_attributes, "scaling": c.q0_scaling, "offsets": c.q0_offsets}
        return AnchorEntropyModel(groups, steps, c)

    def entropy_model(self) -> AnchorEntropyModel:
        return self.context

    # -- optimisation --------------------------------------------------------------------------------
    def param_groups(self) -> list[ParamGroup]:
        c = self.config
        return super().param_groups() + [
            ParamGroup("masks", [self.anchors.masks], lr(c.lr_masks_scaled, self.extent)),
            ParamGroup("hash", list(self.context.encoding.parameters()), lr(c.lr_hash)),
            ParamGroup("mlp_grid", list(self.context.mlp_grid.parameters()), lr(c.lr_mlp_grid)),
        ]

    def begin_step(self, step) -> None:
        if step.update_bounds:
            self.bounds.fit(self.anchors.positions)

    # -- attributes ----------------------------------------------------------------------------------
    def anchor_positions(self) -> Tensor:
        return self.bounds.quantize(self.anchors.positions)

    def coded_values(self, rows: Tensor) -> dict[str, Tensor]:
        """The coded groups of the given anchors: attributes, activated scaling, flattened raw offsets."""
        a = self.anchors
        return {
            self.attribute_group: a.attributes[rows],
            "scaling": a.scaling_activated()[rows],
            "offsets": a.offsets[rows].reshape(-1, 3 * a.n_offsets),
        }

    def parameter_centres(self) -> dict[str, Tensor]:
        """HAC clamps coded values to mean(parameter) +- 15000 Q; the means over the whole model."""
        a = self.anchors
        return {self.attribute_group: a.attributes.mean().detach(), "scaling": a.scaling_activated().mean().detach(),
                "offsets": a.offsets.mean().detach()}

    def rows_from_values(self, positions: Tensor, values: dict[str, Tensor], masks: Tensor) -> dict[str, Tensor]:
        """Per-anchor tensors for render_anchors from the coded groups."""
        return {"positions": positions, "attributes": values[self.attribute_group], "scaling": values["scaling"],
                "offsets": values["offsets"].reshape(positions.shape[0], -1, 3), "masks": masks}

    # -- training ------------------------------------------------------------------------------------
    def training_gaussians(self, view, step):
        positions = self.anchor_positions()
        visible = self.visible_anchors(view, positions)
        positions = positions[visible]
        values = self.coded_values(visible)
        masks = self.anchors.mask_hard(self.config.mask_threshold)[visible]
        tables = StepTables(self.binary_tables())  # each encoding binarised once per step, when used
        terms = {}
        if step.quantisation == "noise":
            values = self.context.add_noise(values)
        elif step.quantisation == "entropy":
            dist = self.context.distributions(self.bounds.normalise(positions), tables["hash"])
            values, terms = self.entropy_step(values, dist, masks, tables)
        rows = self.training_rows(self.rows_from_values(positions, values, masks), tables)
        neural = self.render_anchors(view, visible, rows, residual=step.residual)
        return neural, {**self.loss_terms(neural), **terms}

    def training_rows(self, rows: dict[str, Tensor], tables: "StepTables") -> dict[str, Tensor]:
        """Method-specific per-anchor inputs of a training step (Predict-GS's predicted features)."""
        return rows

    def entropy_step(self, values: dict[str, Tensor], dist, masks: Tensor, tables: "StepTables"):
        """The entropy phase: the visible anchors' values with the adaptive steps' noise (rendered), and
        the rate terms, measured on a sample of them (:meth:`rate_sample`). -> (values, terms)."""
        centres = self.parameter_centres()
        values = self.context.quantise(values, dist, centres)
        sample = self.rate_sample(masks)
        likelihoods = self.context.likelihoods(values, dist, centres, rows=sample.rows)
        return values, self.rate_terms(likelihoods, masks, tables, sample)

    def rate_sample(self, masks: Tensor, by_rows: bool | None = None) -> "RateSample":
        """HAC's sample of the rate term: each visible anchor that keeps a Gaussian with probability
        ``entropy_sample_rate``. On the CPU the sampled rows are indexed, so only their likelihoods are
        computed (as the reference code does); on CUDA they are selected by weights, so that the step needs
        no host synchronisation (the unsampled ones contribute exact zeros). ``by_rows`` forces either."""
        keeps_gaussian = masks.sum(dim=(1, 2)) > 0
        chosen = (torch.rand(keeps_gaussian.shape[0], device=masks.device) <= self.config.entropy_sample_rate) \
            & keeps_gaussian
        anchor_rate = keeps_gaussian.float().mean().detach()
        if by_rows is None:
            by_rows = masks.device.type != "cuda"
        if by_rows:
            return RateSample(anchor_rate, rows=torch.nonzero(chosen).squeeze(1), weights=None)
        return RateSample(anchor_rate, rows=None, weights=chosen.to(masks.dtype)[:, None])

    def rate_terms(self, likelihoods: dict[str, Tensor], masks: Tensor, tables: "StepTables",
                   sample: "RateSample | None" = None) -> dict[str, Tensor]:
        """HAC's entropy loss: bits per coded value over the sampled anchors (``likelihoods`` of those rows
        only when ``sample.rows`` is set, else of every visible anchor, weighted), times the share of
        anchors that keep a Gaussian, plus the hash bits per anchor parameter (unweighted: the loss applies
        lambda); and the mask penalty. Without ``sample``, one is drawn by weights (``likelihoods`` of every
        visible anchor)."""
        c = self.config
        sample = self.rate_sample(masks, by_rows=False) if sample is None else sample
        terms = {"mask": c.mask_loss_weight * torch.sigmoid(self.anchors.masks).mean()}
        hash_term = self.hash_bits(tables) / (self.anchors.num_anchors * self.hash_values_per_anchor())
        if sample.rows is not None:
            masks = masks.index_select(0, sample.rows)
        offsets_coded = masks.expand(-1, -1, 3).reshape(masks.shape[0], -1)
        total_bits = masks.new_zeros(())
        total_values = masks.new_zeros(())
        for group, likelihood in likelihoods.items():
            bits = -torch.log2(likelihood)
            if group == "offsets":  # offsets of masked Gaussians are not coded
                bits = bits * offsets_coded
            if sample.weights is None:
                total_bits = total_bits + bits.sum()
                total_values = total_values + likelihood.numel()
            else:
                total_bits = total_bits + (bits * sample.weights).sum()
                total_values = total_values + sample.weights.sum() * likelihood.shape[1]
        terms["rate"] = total_bits / total_values.clamp(min=1.0) * sample.anchor_rate + hash_term
        return terms

    def hash_values_per_anchor(self) -> int:
        """What divides the hash bits (per anchor) in the rate term: the values the entropy model codes per
        anchor (HAC: 50 + 6 + 30 = 86, the reference's feat_dim + 6 + 3K)."""
        return self.context.values_per_anchor

    def hash_bits(self, tables: "StepTables") -> Tensor:
        """Bits of the binarised hash tables of the rate term (the context's; Predict-GS adds its SFP)."""
        return self.context.table_bits(tables["hash"])

    # -- the test-time model -------------------------------------------------------------------------
    def kept_anchors(self) -> Tensor:
        """Anchors with at least one active offset; the others are dropped by the encoder."""
        return torch.nonzero((self.anchors.mask_hard(self.config.mask_threshold) > 0).any(dim=(1, 2))).squeeze(1)

    # -- anchor positions in the bitstream (HAC: 16-bit codes in the box; HAC++ overrides) -------------
    def anchor_codes(self, positions: Tensor) -> Tensor:
        """Integer codes [n, 3] of anchor positions, as stored."""
        return self.bounds.to_codes(positions)

    def positions_from_codes(self, codes: Tensor) -> Tensor:
        """The positions the codes stand for (what the model renders with)."""
        return self.bounds.from_codes(codes)

    def code_order(self, codes: Tensor) -> Tensor:
        return morton_order(codes)

    def encode_anchor_codes(self, codes: Tensor) -> bytes:
        return encode_positions(codes.cpu(), octree=False)  # see predictgs/codec/positions.py

    @classmethod
    def decode_anchor_codes(cls, reader, count: int) -> Tensor:
        return decode_positions(reader, count)

    def anchor_bits(self, codes: Tensor) -> float:
        """HAC's cost of the positions: 16 bits per axis."""
        return float(codes.shape[0] * ANCHOR_BITS)

    @torch.no_grad()
    def coded_anchors(self) -> CodedAnchors:
        kept = self.kept_anchors()
        codes = self.anchor_codes(self.anchors.positions[kept])
        order = self.code_order(codes.cpu()).to(kept.device)
        rows, codes = kept[order], codes[order]
        masks = self.anchors.mask_hard(self.config.mask_threshold)[rows].detach() > 0
        values = {g: v.detach() for g, v in self.coded_values(rows).items()}
        return CodedAnchors(rows, codes, self.positions_from_codes(codes), masks, values, self.parameter_centres())

    @torch.no_grad()
    def test_state(self) -> dict[str, Tensor]:
        coded = self.coded_anchors()
        quantised = self.context.quantised(coded.values, self.bounds.normalise(coded.positions), coded.centres)
        device = coded.positions.device
        quantised = {g: v.to(device) for g, v in quantised.items()}
        masks = coded.masks
        offsets = quantised["offsets"].reshape(masks.shape[0], -1, 3)
        quantised["offsets"] = torch.where(masks, offsets, torch.zeros((), device=device)).reshape(masks.shape[0], -1)
        return self.extend_test_state(self.rows_from_values(coded.positions, quantised, masks.float()))

    def extend_test_state(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Method-specific per-anchor values that depend only on the anchors (Predict-GS's f_c)."""
        return state

    # -- size ----------------------------------------------------------------------------------------
    def kept_anchor_count(self) -> int:
        return int(self.kept_anchors().shape[0])

    def active_gaussian_count(self) -> int:
        masks = self.anchors.mask_hard(self.config.mask_threshold).detach()
        return int((masks[self.kept_anchors()] > 0).sum())

    def networks(self) -> dict:
        return {**super().networks(), "mlp_grid": self.context.mlp_grid}

    def binary_tables(self) -> dict:
        """Binarised hash encodings stored as Bernoulli streams, by section name."""
        return {"hash": self.context.encoding}

    def boxes(self) -> dict[str, AnchorBounds]:
        """Boxes stored in the header, by key."""
        return {"bounds": self.bounds}

    @torch.no_grad()
    def estimated_bits(self) -> dict[str, float]:
        """HAC's categories: anchors at 48 bits, the entropy model's streams as the coder spends them,
        binary tables and masks as one Bernoulli each, networks at 32 bits per parameter."""
        coded = self.coded_anchors()
        streams = self.context.bits(coded.values, self.bounds.normalise(coded.positions), coded.centres,
                                    self.element_masks(coded.masks))
        bits = {"anchor": self.anchor_bits(coded.codes), **streams}
        for name, encoding in self.binary_tables().items():
            bits[name] = tables_bits(encoding)
        bits["masks"] = mask_bits(coded.masks)
        bits["mlps"] = float(self.mlp_parameter_count() * BITS_PER_FLOAT)
        return {key: bits[key] for key in self.bit_categories()}

    reference_accounting = (
        "HAC's (estimate_final_bits / conduct_encoding): anchor positions at 48 bits (16 per axis, the box "
        "not counted); features, scaling and offsets (masked offsets excluded) as entropy-coded; the hash "
        "grid and the offset masks as one Bernoulli each + 32 bits; mlp_opacity, mlp_cov, mlp_color and "
        "mlp_grid at 32 bits per parameter. This is estimated_bits.")

    def bit_categories(self) -> list[str]:
        """The keys of estimated_bits, in the reference's order."""
        return ["anchor", self.attribute_group, "scaling", "offsets", "hash", "masks", "mlps"]

    @staticmethod
    def element_masks(masks: Tensor) -> dict[str, Tensor]:
        """Which coded values exist: offsets only where their mask is on."""
        return {"offsets": masks.expand(-1, -1, 3).reshape(masks.shape[0], -1)}

    # -- bitstream -----------------------------------------------------------------------------------
    @classmethod
    def section_names(cls, config) -> list[str]:
        return ["anchor", "masks", *cls.table_sections(config), cls.attribute_group, "scaling", "offsets", "mlps"]

    @classmethod
    def table_sections(cls, config) -> list[str]:
        """The sections of :meth:`binary_tables`, known from the configuration alone."""
        return ["hash"]

    @torch.no_grad()
    def coded_state(self, *, half_networks: bool = False, chunk_anchors: int | None = None) -> CodedState:
        if chunk_anchors is not None:
            self.context.chunk_anchors = int(chunk_anchors)
        coded = self.coded_anchors()
        streams, _ = self.context.compress(coded.values, self.bounds.normalise(coded.positions), coded.centres,
                                           self.element_masks(coded.masks))
        sections = {"anchor": self.encode_anchor_codes(coded.codes), "masks": compress_masks(coded.masks.cpu())}
        for name, encoding in self.binary_tables().items():
            sections[name] = compress_tables(encoding)
        sections.update({g: streams[g] for g in self.context.groups})
        sections["mlps"] = encode_floats(self.network_tensors(), half=half_networks)
        header = {**self.base_header(), "chunk_anchors": self.context.chunk_anchors}
        header.update({key: box.as_json() for key, box in self.boxes().items()})
        return CodedState(header, sections)

    @classmethod
    @torch.no_grad()
    def from_coded(cls, config, coded: CodedState) -> "HAC":
        for part in (config.context, getattr(config, "sfp", None)):
            if part is not None and table_values(part) > MAX_TABLE_VALUES:
                raise BitstreamError(f"header: hash tables of {table_values(part)} values exceed the decoder's "
                                     f"limit of {MAX_TABLE_VALUES}")
        n, extent, voxel = cls.coded_size(coded, config)
        chunk = header_number(coded.header, "chunk_anchors", int, 1, MAX_CHUNK_ANCHORS)
        # The anchor positions first: their count must match the header's before the model is allocated.
        codes = cls.decode_anchor_codes(section_reader(coded.sections, "anchor"), n)
        model = cls.empty(config, extent, voxel, n)
        for key, box in model.boxes().items():
            box.assign(*header_box(coded.header, key))
        model.context.chunk_anchors = chunk
        k = config.n_offsets
        masks = decompress_masks(section_reader(coded.sections, "masks"), n * k).reshape(n, k, 1)
        for name, encoding in model.binary_tables().items():
            decompress_tables(section_reader(coded.sections, name), encoding)
        tensors = model.network_tensors()
        values = decode_floats(section_reader(coded.sections, "mlps"), [tuple(t.shape) for t in tensors])
        for target, value in zip(tensors, values):
            target.copy_(value)
        positions = model.positions_from_codes(codes)
        streams = {g: section_reader(coded.sections, g) for g in model.context.groups}
        values = model.context.decompress(streams, model.bounds.normalise(positions), model.element_masks(masks))
        a = model.anchors
        a.positions.copy_(positions)
        # The raw parameters hold the decoded values (scaling back in log space, masks as saturated
        # logits), so that the decoded model is an ordinary model of its method.
        a.attributes.copy_(values[cls.attribute_group])
        a.offsets.copy_(values["offsets"].reshape(n, k, 3))
        a.scaling.copy_(torch.log(values["scaling"].clamp_min(1e-30)))
        a.masks.copy_(torch.where(masks, MASKED_ON_LOGIT, MASKED_OFF_LOGIT))
        model.eval()
        # Its test-time values are the decoded ones (recomputing them would round again).
        model.render_cache.fill(model.extend_test_state(model.rows_from_values(positions, values, masks.float())))
        return model
