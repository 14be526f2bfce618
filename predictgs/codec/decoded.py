"""The decoded model: the method's own class, its anchors and networks filled from a bitstream, plus the
decoded (already quantised) per-anchor values that HAC's decoded mode renders directly.

A decoded directory holds ``model.pt`` (written by :func:`save_decoded`) and ``config.yaml`` (method,
model configuration, evaluation protocol of the run it came from).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..config import dump_yaml, load_yaml
from ..errors import ConfigError
from ..methods import new_model

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.yaml"
FORMAT = "predictgs-decoded-model"


class DecodedAnchors(nn.Module):
    """Decoded values of every anchor: attributes [N, D], activated scaling [N, 6], raw offsets
    [N, K, 3] (zero where masked), binary masks [N, K, 1]. Buffers, so they follow ``.to(device)``
    and are saved with the model."""

    def __init__(self, attributes: Tensor, scaling: Tensor, offsets: Tensor, masks: Tensor):
        super().__init__()
        self.register_buffer("attributes", attributes)
        self.register_buffer("scaling", scaling)
        self.register_buffer("offsets", offsets)
        self.register_buffer("masks", masks)

    @classmethod
    def zeros(cls, num_anchors: int, attr_dim: int, n_offsets: int) -> "DecodedAnchors":
        return cls(torch.zeros(num_anchors, attr_dim), torch.zeros(num_anchors, 6),
                   torch.zeros(num_anchors, n_offsets, 3), torch.zeros(num_anchors, n_offsets, 1))


def save_decoded(model, method: str, model_config: dict, out_dir: Path, info: dict | None = None) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "version": 1,
        "method": method,
        "model": model_config,
        "extent": model.extent,
        "voxel_size": model.voxel_size,
        "state": model.state_dict(),
        "extra": model.extra_state(),
    }
    torch.save(state, out_dir / MODEL_FILE)
    dump_yaml({"method": method, "model": model_config, **(info or {})}, out_dir / CONFIG_FILE)


def load_decoded(directory: Path, device: str | torch.device = "cpu"):
    """(config.yaml content, model in eval mode) of a directory written by ``predictgs decode``."""
    directory = Path(directory)
    path = directory / MODEL_FILE
    if not path.is_file() or not (directory / CONFIG_FILE).is_file():
        raise ConfigError(f"{directory} is not a decoded model directory (needs {MODEL_FILE} and {CONFIG_FILE}; "
                          "write one with `predictgs decode FILE -o DIR`)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged or foreign file
        raise ConfigError(f"{path} cannot be read as a decoded model ({type(err).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a decoded model written by `predictgs decode`")
    weights = state["state"]
    model = new_model(state["method"], state["model"], state["extent"], state["voxel_size"],
                      weights["anchors.positions"].shape[0])
    if "decoded.attributes" in weights:
        model.decoded = DecodedAnchors(*(weights[f"decoded.{k}"] for k in ("attributes", "scaling", "offsets",
                                                                             "masks")))
    model.load_state_dict(weights)
    model.load_extra_state(state["extra"])
    return load_yaml(directory / CONFIG_FILE), model.to(device).eval()
