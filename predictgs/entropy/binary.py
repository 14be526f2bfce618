"""Binary data under one global Bernoulli (HAC's ``get_binary_vxl_size``): the binarised hash tables
and the offset masks. Estimate N H(p) + 32 bits; the stream is range coded with p stored as float32."""

from __future__ import annotations

import torch
from torch import Tensor

from ..codec.arithmetic import decode_bernoulli, encode_bernoulli
from ..codec.container import ByteReader
from .functional import binary_bits


def table_tensors(encoding) -> list[Tensor]:
    """The raw parameters of an encoding's binarised tables, in coding order (3D grid, then planes)."""
    return [table.params for table in encoding.tables()]


def tables_bits(encoding) -> float:
    return float(binary_bits((encoding.binary_params() + 1) / 2))


@torch.no_grad()
def compress_tables(encoding) -> bytes:
    """The signs of every table entry (+1 -> 1, -1 -> 0), row-major per table."""
    return encode_bernoulli(encoding.sign_tables().flat() > 0)


@torch.no_grad()
def decompress_tables(reader: ByteReader, encoding) -> None:
    """Write the decoded +-1 values into the encoding's tables."""
    tables = table_tensors(encoding)
    bits = decode_bernoulli(reader, sum(t.numel() for t in tables))
    start = 0
    for table in tables:
        n = table.numel()
        table.data.copy_((bits[start:start + n].float() * 2 - 1).reshape(table.shape).to(table.device))
        start += n
    reader.expect_end()


def mask_bits(masks01: Tensor) -> float:
    return float(binary_bits(masks01.float()))


def compress_masks(masks01: Tensor) -> bytes:
    return encode_bernoulli(masks01.reshape(-1))


def decompress_masks(reader: ByteReader, count: int) -> Tensor:
    masks = decode_bernoulli(reader, count)
    reader.expect_end()
    return masks
