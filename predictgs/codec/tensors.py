"""Float sections: MLP weights of every method, and Scaffold-GS's per-anchor tensors.

Layout: u8 mode (0 raw float32, 1 deflated float32, 2 raw float16, 3 deflated float16), then the
little-endian values of the tensors, concatenated in a fixed order that the decoder knows from the
configuration. Deflate is used only where it makes the section smaller (float weights rarely shrink by
more than a few percent). Float32 is lossless; float16 (``encode --mlp-precision fp16``, MLPs only) is
lossless for tensors already rounded with :func:`round_to_half_`, which the encoder does first.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from .container import ByteReader, ByteWriter

RAW, DEFLATED, RAW_HALF, DEFLATED_HALF = 0, 1, 2, 3
HALF_MAX = float(np.finfo(np.float16).max)


@torch.no_grad()
def round_to_half_(tensors: list[Tensor], what: str = "MLP weights") -> None:
    """Round float tensors in place to the nearest float16 values (kept as float32), so that what the
    encoder codes with, and evaluates, is what a float16 section decodes to."""
    for t in tensors:
        if t.is_floating_point() and t.numel():
            if not torch.isfinite(t).all() or t.abs().max() > HALF_MAX:
                raise ConfigError(f"{what} exceed the float16 range (|x| > {HALF_MAX:g}): encode with "
                                  "--mlp-precision fp32")
            t.copy_(t.to(torch.float16).to(t.dtype))


def encode_floats(tensors: list[Tensor], half: bool = False) -> bytes:
    """The tensors as float32 (lossless) or, with ``half``, float16 (round them first: round_to_half_)."""
    flat = [t.detach().cpu().to(torch.float32).reshape(-1).numpy() for t in tensors]
    raw = np.concatenate(flat).astype("<f2" if half else "<f4").tobytes() if flat else b""
    packed = zlib.compress(raw, 9)
    if len(packed) < len(raw):
        return ByteWriter().pack("B", DEFLATED_HALF if half else DEFLATED).raw(packed).getvalue()
    return ByteWriter().pack("B", RAW_HALF if half else RAW).raw(raw).getvalue()


def decode_floats(reader: ByteReader, shapes: list[tuple[int, ...]]) -> list[Tensor]:
    """Tensors of the given shapes; the section must hold exactly their values."""
    mode = reader.unpack("B", "storage mode")
    if mode not in (RAW, DEFLATED, RAW_HALF, DEFLATED_HALF):
        raise reader.error(f"unknown storage mode {mode}")
    half = mode in (RAW_HALF, DEFLATED_HALF)
    expected = (2 if half else 4) * sum(int(np.prod(s)) for s in shapes)
    payload = bytes(reader.take(reader.remaining, "values"))
    if mode in (RAW, RAW_HALF):
        raw = payload
    else:
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(payload, expected + 1)  # never more than one byte past the size
        except zlib.error as err:
            raise reader.error(f"deflate stream is corrupt ({err})") from None
        if not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
            raise reader.error("deflate stream is truncated, too long, or followed by junk")
    if len(raw) != expected:
        kind = "float16" if half else "float32"
        raise reader.error(f"holds {len(raw)} bytes of {kind} values, the configuration needs {expected}")
    values = np.frombuffer(raw, dtype="<f2" if half else "<f4").astype(np.float32)
    out, start = [], 0
    for shape in shapes:
        n = int(np.prod(shape))
        out.append(torch.from_numpy(values[start:start + n].copy()).reshape(shape))
        start += n
    return out
