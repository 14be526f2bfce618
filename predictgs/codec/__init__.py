"""Bitstreams of trained models: one .pgs file that decodes to the model that is evaluated.

    result = encode_model(model, method, model_config)      # -> EncodedModel (bytes + section sizes)
    decoded = decode_model(result.data)                      # -> DecodedModel (method, header, model)

Scaffold-GS is stored losslessly; HAC and Predict-GS (and its variants) are arithmetic-coded with their
entropy models. The format is described in docs/bitstream.md; ``container`` holds the file structure,
``streams`` the entropy-coded sections, ``arithmetic`` the torchac coders, ``positions`` the anchor
positions, ``tensors`` the float32 sections, ``decoded`` the decoded model, ``run`` the commands.
Every corrupt or foreign input raises :class:`predictgs.errors.BitstreamError` naming the part concerned.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ..errors import BitstreamError, ConfigError
from .container import Container, read_container, write_container
from .layout import (MAX_ANCHORS, build_model, has_entropy_model, header_field, mlp_tensors, parse_config,
                     section_names)
from .scaffold import decode_scaffold, decode_scaffold_positions, encode_scaffold
from .streams import DEFAULT_CHUNK_ANCHORS, decode_anchor_codes, decode_entropy_model, encode_entropy_model
from .tensors import round_to_half_

MLP_PRECISIONS = ("fp32", "fp16")

__all__ = ["EncodedModel", "DecodedModel", "encode_model", "decode_model", "BitstreamError",
           "DEFAULT_CHUNK_ANCHORS", "MLP_PRECISIONS"]


@dataclass
class EncodedModel:
    data: bytes
    section_bytes: dict[str, int]  # payload bytes per section, plus "container" (preamble, header, table)
    expected: dict = field(default_factory=dict)  # what the decoder must reproduce (tests, diagnostics)


@dataclass
class DecodedModel:
    method: str
    header: dict
    model: object
    section_bytes: dict[str, int]


def encode_model(model, method: str, model_config: dict, info: dict | None = None,
                 chunk_anchors: int = DEFAULT_CHUNK_ANCHORS, mlp_precision: str = "fp32") -> EncodedModel:
    """Encode a trained model. ``model_config`` is the run's model configuration (config.yaml's
    ``model``), ``info`` optional JSON-able facts carried in the header (scene, protocol, ...).

    ``mlp_precision="fp16"`` stores every network weight as float16: the encoder codes with a copy of
    the model whose weights are rounded to float16 (the context model's CDFs included), so the file still
    decodes exactly to the model it describes; that model differs from the trained one by the rounding."""
    if mlp_precision not in MLP_PRECISIONS:
        raise ConfigError(f"mlp precision must be one of {', '.join(MLP_PRECISIONS)}, got {mlp_precision!r}")
    half = mlp_precision == "fp16"
    if half:
        model = copy.deepcopy(model)
        round_to_half_([t for _, t in mlp_tensors(model)])
    header = {"model": model_config, "extent": float(model.extent), "voxel_size": float(model.voxel_size)}
    if info:
        header["run"] = info
    if has_entropy_model(model):
        fields, sections, expected = encode_entropy_model(model, chunk_anchors, half_mlps=half)
    else:
        (fields, sections), expected = encode_scaffold(model, half_mlps=half), {}
    header.update(fields)
    data = write_container(Container(method, header, sections))
    sizes = {name: len(payload) for name, payload in sections.items()}
    sizes["container"] = len(data) - sum(sizes.values())
    return EncodedModel(data, sizes, expected)


def decode_model(data: bytes) -> DecodedModel:
    """Decode a .pgs file's bytes into the method's model, in eval mode on the CPU.

    Order of checks: container (magic, version, method, CRCs), header and configuration limits, the
    section list, then the anchor positions, whose count must match the header's, and only then the
    model is allocated and the other sections decoded."""
    from ..methods import registry

    container = read_container(data, set(registry()))
    header = container.header
    num_anchors = header_field(header, "num_anchors", int, lambda v: 0 <= v <= MAX_ANCHORS)
    config, extent, voxel = parse_config(container.method, header, num_anchors)
    wanted = section_names(config)
    if list(container.sections) != wanted:
        raise BitstreamError(f"section table: a {container.method} file has sections {', '.join(wanted)}; "
                             f"this one has {', '.join(container.sections) or 'none'}")
    if has_entropy_model(config):
        codes = decode_anchor_codes(container.sections, num_anchors)
        model = build_model(container.method, config, extent, voxel, num_anchors)
        decode_entropy_model(model, header, container.sections, codes)
    else:
        positions = decode_scaffold_positions(container.sections, num_anchors)
        model = build_model(container.method, config, extent, voxel, num_anchors)
        decode_scaffold(model, container.sections, positions)
    sizes = container.section_bytes()
    sizes["container"] = len(data) - sum(sizes.values())
    return DecodedModel(container.method, header, model.eval(), sizes)
