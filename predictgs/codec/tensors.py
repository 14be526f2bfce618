"""Lossless float32 sections: MLP weights of every method, and Scaffold-GS's per-anchor tensors.

Layout: u8 mode (0 raw, 1 deflated), then the little-endian float32 values of the tensors, concatenated
in a fixed order that the decoder knows from the configuration. Deflate is used only where it makes the
section smaller (float32 weights rarely shrink by more than a few percent).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import Tensor

from .container import ByteReader, ByteWriter

RAW, DEFLATED = 0, 1


def encode_floats(tensors: list[Tensor]) -> bytes:
    flat = [t.detach().cpu().to(torch.float32).reshape(-1).numpy() for t in tensors]
    raw = np.concatenate(flat).astype("<f4").tobytes() if flat else b""
    packed = zlib.compress(raw, 9)
    if len(packed) < len(raw):
        return ByteWriter().pack("B", DEFLATED).raw(packed).getvalue()
    return ByteWriter().pack("B", RAW).raw(raw).getvalue()


def decode_floats(reader: ByteReader, shapes: list[tuple[int, ...]]) -> list[Tensor]:
    """Tensors of the given shapes; the section must hold exactly their values."""
    expected = 4 * sum(int(np.prod(s)) for s in shapes)
    mode = reader.unpack("B", "storage mode")
    payload = bytes(reader.take(reader.remaining, "values"))
    if mode == RAW:
        raw = payload
    elif mode == DEFLATED:
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(payload, expected + 1)  # never more than one byte past the size
        except zlib.error as err:
            raise reader.error(f"deflate stream is corrupt ({err})") from None
        if not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
            raise reader.error("deflate stream is truncated, too long, or followed by junk")
    else:
        raise reader.error(f"unknown storage mode {mode}")
    if len(raw) != expected:
        raise reader.error(f"holds {len(raw)} bytes of float32 values, the configuration needs {expected}")
    values = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    out, start = [], 0
    for shape in shapes:
        n = int(np.prod(shape))
        out.append(torch.from_numpy(values[start:start + n].copy()).reshape(shape))
        start += n
    return out
