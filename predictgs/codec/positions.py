"""Anchor positions: integer codes per axis (HAC's 16-bit quantisation inside the stored box, or HAC++'s
voxel lattice), in Morton (Z-order) order, which is the anchors' order in the file and in the decoded
model (nothing in rendering depends on the order of anchors). One mode byte, then either

- 1, the octree (:mod:`predictgs.codec.octree`): occupancy bits under context models, range coded; or
- 0, the differences of consecutive Morton keys as LEB128 varints, deflated (sorted keys of N points
  in a 2^3B lattice differ by about 2^3B / N, and lattice regularity deflates further);

whichever is smaller (the octree needs distinct codes; measured on the initial anchors of fern and the
synthetic scenes, it is 5-9% smaller: docs/bitstream.md). HAC's 16-bit codes use the Morton differences
only: there the octree saved 0.7% of the section (0.05% of the file) on a trained model, for ~4 us per
anchor of encoding and decoding.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import Tensor

from .container import ByteReader
from .octree import decode_octree, encode_octree

MORTON_MODE, OCTREE_MODE = 0, 1

AXIS_BITS = 16
KEY_BITS = 3 * AXIS_BITS
MAX_VARINT_BYTES = 9  # ceil(63 / 7): up to 21 bits per axis


_SPREAD = ((32, 0x1F00000000FFFF), (16, 0x1F0000FF0000FF), (8, 0x100F00F00F00F00F),
           (4, 0x10C30C30C30C30C3), (2, 0x1249249249249249))


MAX_AXIS_BITS = 21  # 3 x 21 bits fit a 63-bit key


def _spread(values: np.ndarray, bits: int = AXIS_BITS) -> np.ndarray:
    """Insert two zero bits between the bits of each value of at most ``bits`` (<= 21) bits (uint64)."""
    x = values.astype(np.uint64) & np.uint64((1 << bits) - 1)
    for shift, mask in _SPREAD:
        x = (x | (x << np.uint64(shift))) & np.uint64(mask)
    return x


def _compact(keys: np.ndarray, bits: int = AXIS_BITS) -> np.ndarray:
    """Inverse of :func:`_spread`: every third bit of the keys, packed."""
    x = keys & np.uint64(_SPREAD[-1][1])
    masks = [m for _, m in _SPREAD[:-1]][::-1] + [0x1FFFFF]
    for (shift, _), mask in zip(_SPREAD[::-1], masks):
        x = (x ^ (x >> np.uint64(shift))) & np.uint64(mask)
    return x & np.uint64((1 << bits) - 1)


def morton_keys(codes: Tensor, bits: int = AXIS_BITS) -> np.ndarray:
    """[N, 3] non-negative codes of at most ``bits`` bits -> uint64 keys, x in the lowest bit of each triple."""
    c = codes.cpu().numpy()
    return (_spread(c[:, 0], bits) | (_spread(c[:, 1], bits) << np.uint64(1))
            | (_spread(c[:, 2], bits) << np.uint64(2)))


def codes_from_keys(keys: np.ndarray, bits: int = AXIS_BITS) -> Tensor:
    axes = [_compact(keys >> np.uint64(a), bits) for a in range(3)]
    return torch.from_numpy(np.stack(axes, axis=1).astype(np.int64))


def morton_order(codes: Tensor, bits: int = AXIS_BITS) -> Tensor:
    """The permutation that sorts anchors by Morton key (ties in their original order)."""
    return torch.from_numpy(np.argsort(morton_keys(codes, bits), kind="stable").astype(np.int64))


def _varints(values: np.ndarray) -> bytes:
    """LEB128 of uint64 values < 2^63."""
    n = values.shape[0]
    groups = np.zeros((n, MAX_VARINT_BYTES), dtype=np.uint8)
    length = np.ones(n, dtype=np.int64)
    for k in range(MAX_VARINT_BYTES):
        groups[:, k] = ((values >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        if k:
            length += (values >> np.uint64(7 * k)) > 0
    used = np.arange(MAX_VARINT_BYTES)[None, :] < length[:, None]
    more = np.arange(MAX_VARINT_BYTES)[None, :] < (length[:, None] - 1)
    groups |= (more * 0x80).astype(np.uint8)
    return groups[used].tobytes()


def _parse_varints(data: bytes, count: int, reader: ByteReader) -> np.ndarray:
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero((raw & 0x80) == 0)
    if ends.shape[0] != count or (count and ends[-1] != raw.shape[0] - 1) or (not count and raw.size):
        raise reader.error(f"expected {count} position differences, found {ends.shape[0]} "
                           f"in {raw.shape[0]} bytes")
    if count == 0:
        return np.zeros(0, dtype=np.uint64)
    starts = np.concatenate([[0], ends[:-1] + 1])
    if (ends - starts + 1 > MAX_VARINT_BYTES).any():
        raise reader.error("a position difference is longer than 63 bits")
    position = np.arange(raw.shape[0]) - np.repeat(starts, ends - starts + 1)
    parts = (raw & 0x7F).astype(np.uint64) << (np.uint64(7) * position.astype(np.uint64))
    return np.bitwise_or.reduceat(parts, starts)


def morton_section(codes: Tensor, bits: int = AXIS_BITS) -> bytes:
    """The Morton mode's section: mode byte, deflated varint differences of the keys."""
    deltas = np.diff(morton_keys(codes, bits), prepend=np.uint64(0))
    return bytes([MORTON_MODE]) + zlib.compress(_varints(deltas), 9)


def encode_positions(codes: Tensor, bits: int = AXIS_BITS, octree: bool = True) -> bytes:
    """Codes [N, 3] already in Morton order -> mode byte + the octree or the deflated Morton
    differences, whichever is smaller (``octree=False``: the Morton differences only)."""
    best = morton_section(codes, bits)
    deltas = np.diff(morton_keys(codes, bits))
    if octree and codes.shape[0] and (deltas > 0).all():  # distinct points: the octree can code them
        octree = bytes([OCTREE_MODE]) + encode_octree(codes.cpu().numpy(), bits)
        if len(octree) < len(best):
            best = octree
    return best


def decode_positions(reader: ByteReader, count: int, bits: int = AXIS_BITS) -> Tensor:
    """The codes [count, 3] (int64) of a section written by :func:`encode_positions`."""
    mode = reader.unpack("B", "position coding mode")
    if mode == OCTREE_MODE:
        codes = torch.from_numpy(decode_octree(reader, count, bits))
        reader.expect_end()
        return codes
    if mode != MORTON_MODE:
        raise reader.error(f"unknown position coding mode {mode}")
    compressed = bytes(reader.take(reader.remaining, "deflated positions"))
    inflater = zlib.decompressobj()
    max_varint = -(-3 * bits // 7)
    try:
        data = inflater.decompress(compressed, count * max_varint + 1)  # bounded output
    except zlib.error as err:
        raise reader.error(f"deflate stream is corrupt ({err})") from None
    if not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
        raise reader.error("deflate stream is truncated, too long, or followed by junk")
    keys = np.cumsum(_parse_varints(data, count, reader), dtype=np.uint64)
    # Sorted keys never decrease, so a decrease means the sum wrapped around 2^64.
    if count and ((keys[-1] >> np.uint64(3 * bits)) != 0 or (keys[1:] < keys[:-1]).any()):
        raise reader.error(f"a position lies outside the {bits}-bit grid")
    return codes_from_keys(keys, bits)


# -- voxel-lattice positions (HAC++: anchors snapped to the voxel grid) -----------------------------------
def lattice_layout(coords: Tensor) -> tuple[Tensor, int]:
    """(origin [3], bits per axis) of integer lattice coordinates [N, 3]: codes = coords - origin."""
    if coords.shape[0] == 0:
        return torch.zeros(3, dtype=torch.int64), 1
    origin = coords.min(dim=0).values
    span = int((coords - origin).max())
    bits = max(1, span.bit_length())
    if bits > MAX_AXIS_BITS:
        raise ValueError(f"anchor lattice spans {span + 1} voxels on an axis; at most 2^{MAX_AXIS_BITS} can be coded")
    return origin, bits


def encode_lattice(coords: Tensor) -> bytes:
    """Integer lattice coordinates [N, 3] already in Morton order (of ``coords - origin``) ->
    i64 x 3 origin, u8 bits per axis, then :func:`encode_positions` of the codes."""
    origin, bits = lattice_layout(coords)
    head = np.asarray(origin.cpu().numpy(), dtype="<i8").tobytes() + bytes([bits])
    return head + encode_positions(coords - origin, bits)


def decode_lattice(reader: ByteReader, count: int) -> Tensor:
    """The lattice coordinates [count, 3] (int64) of a section written by :func:`encode_lattice`."""
    origin = reader.array("i8", 3, "lattice origin")
    bits = reader.unpack("B", "bits per axis")
    if not 1 <= bits <= MAX_AXIS_BITS:
        raise reader.error(f"implausible {bits} bits per axis")
    if (np.abs(origin) > 1 << 40).any():
        raise reader.error("implausible lattice origin")
    return decode_positions(reader, count, bits) + torch.from_numpy(origin.astype(np.int64))
