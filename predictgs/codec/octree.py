"""An octree geometry coder for points on an integer lattice (in the spirit of G-PCC's occupancy coding):
distinct points with coordinates in [0, 2^B) per axis, returned in Morton order (x in the lowest bit).

The octree is coded level by level from the root. At each level every occupied node (in Morton order)
has an occupancy byte, whose 8 child bits are coded one child at a time (child j = x + 2 y + 4 z, all
nodes of the level for j = 0, then all for j = 1, ...), each under a binary model chosen by a context
that the decoder knows when it gets there:

- j, and how many of the node's children before j are occupied (0, 1, 2 or more): a node with a
  single child (sparse levels) has each child with probability ~1 / (8 - j); the last child of a node
  with none before it is certain and not coded;
- how many of the parent's face neighbours (at the parent's level) lie on child j's side (0-3):
  occupied surroundings make occupied children likely;
- how many of child j's face neighbours inside the node, already coded (those with lower index), are
  occupied (0-3).

The 384 binary models are static: the encoder counts each context's bits over the whole octree and
stores, for the contexts used, P(1) in 12 bits (a bitmap of the used contexts first), then one
range-coded message of every coded bit (:mod:`predictgs.codec.rangecoder`, P(1) as a count of 2^24).
A context's probability is stored once for all levels, so the table costs ~0.3 bit per anchor at
10k anchors and the coding is vectorised per (level, child).

Layout (B, the bits per axis, is known to the caller): bitmap of the used contexts (48 bytes), u16 per used context
(P(1) in 4096ths, 1..4095), varint byte count, the message. The decoder refuses a level with more nodes
than the points expected, so corrupt input cannot grow the tree beyond the declared count.
"""

from __future__ import annotations

import numpy as np

from . import rangecoder
from .arithmetic import _read_varint, _varint_bytes
from .container import ByteReader, ByteWriter
from .rangecoder import PRECISION

CONTEXTS = 8 * 3 * 4 * 4
PROBABILITY_BITS = 12
PROBABILITY_ONE = 1 << PROBABILITY_BITS
MAX_BITS = 21
_AXES = np.array([1, 2, 4])  # bit of child j for x, y, z


def _spread(values: np.ndarray) -> np.ndarray:
    x = values.astype(np.uint64) & np.uint64(0x1FFFFF)
    for shift, mask in ((32, 0x1F00000000FFFF), (16, 0x1F0000FF0000FF), (8, 0x100F00F00F00F00F),
                        (4, 0x10C30C30C30C30C3), (2, 0x1249249249249249)):
        x = (x | (x << np.uint64(shift))) & np.uint64(mask)
    return x


def morton(coords: np.ndarray) -> np.ndarray:
    """[n, 3] non-negative coordinates (< 2^21) -> uint64 Morton keys, x in the lowest bit."""
    return _spread(coords[:, 0]) | (_spread(coords[:, 1]) << np.uint64(1)) | (_spread(coords[:, 2]) << np.uint64(2))


def _parent_neighbours(nodes: np.ndarray, size: int) -> np.ndarray:
    """[m, 8] count (0-3) of the occupied face neighbours of each node lying on child j's side."""
    keys = morton(nodes)  # nodes are in Morton order: keys sorted
    present = np.zeros((nodes.shape[0], 3, 2), dtype=bool)
    for axis in range(3):
        for side, delta in ((0, -1), (1, 1)):
            moved = nodes.copy()
            moved[:, axis] += delta
            inside = (moved[:, axis] >= 0) & (moved[:, axis] < size)
            key = morton(np.where(inside[:, None], moved, 0))
            at = np.searchsorted(keys, key).clip(max=len(keys) - 1)
            present[:, axis, side] = inside & (keys[at] == key)
    out = np.zeros((nodes.shape[0], 8), dtype=np.int64)
    for j in range(8):
        for axis in range(3):
            out[:, j] += present[:, axis, (j >> axis) & 1]
    return out


def _context(j: int, occupied_before: np.ndarray, parent: np.ndarray, inner: np.ndarray) -> np.ndarray:
    ones = np.minimum(occupied_before, 2)
    return ((j * 3 + ones) * 4 + parent) * 4 + inner


def _inner_neighbours(occupancy: np.ndarray, j: int) -> np.ndarray:
    """Occupied face neighbours of child j inside the node with a lower index (already coded)."""
    count = np.zeros(occupancy.shape[0], dtype=np.int64)
    for bit in _AXES:
        if j & bit:
            count += occupancy[:, j ^ bit]
    return count


def _children(nodes: np.ndarray, occupancy: np.ndarray) -> np.ndarray:
    """The occupied children [k, 3] of ``nodes`` (Morton order, so the children are too)."""
    offsets = np.array([[j & 1, (j >> 1) & 1, (j >> 2) & 1] for j in range(8)], dtype=np.int64)
    child = nodes[:, None, :] * 2 + offsets[None]
    return child[occupancy.astype(bool)]


def _levels(codes: np.ndarray, bits: int):
    """Per level (root first): (nodes [m, 3] in Morton order, occupancy [m, 8] of their children)."""
    keys = np.sort(morton(codes))
    for level in range(bits):
        shift = np.uint64(3 * (bits - level))
        parents = np.unique(keys >> shift)
        children = np.unique(keys >> (shift - np.uint64(3)))
        parent_of = np.searchsorted(parents, children >> np.uint64(3))
        occupancy = np.zeros((len(parents), 8), dtype=np.int64)
        occupancy[parent_of, (children & np.uint64(7)).astype(np.int64)] = 1
        nodes = np.stack([_compact(parents, a) for a in range(3)], axis=1)
        yield nodes, occupancy


def _compact(keys: np.ndarray, axis: int) -> np.ndarray:
    x = (keys >> np.uint64(axis)) & np.uint64(0x1249249249249249)
    for shift, mask in ((2, 0x10C30C30C30C30C3), (4, 0x100F00F00F00F00F), (8, 0x1F0000FF0000FF),
                        (16, 0x1F00000000FFFF), (32, 0x1FFFFF)):
        x = (x ^ (x >> np.uint64(shift))) & np.uint64(mask)
    return x.astype(np.int64)


def _coded_bits(nodes: np.ndarray, occupancy: np.ndarray, size: int):
    """Per child j: (context of each node's bit j, which nodes code it, the bits)."""
    parent = _parent_neighbours(nodes, size)
    before = np.zeros(nodes.shape[0], dtype=np.int64)
    for j in range(8):
        contexts = _context(j, before, parent[:, j], _inner_neighbours(occupancy, j))
        coded = ~((j == 7) & (before == 0))
        yield contexts, coded, occupancy[:, j]
        before = before + occupancy[:, j]


def _rows(probability_one: np.ndarray, contexts: np.ndarray) -> np.ndarray:
    p1 = probability_one[contexts] * (PRECISION // PROBABILITY_ONE)
    return rangecoder.probabilities(np.stack([PRECISION - p1, p1], axis=1))


def encode_octree(codes: np.ndarray, bits: int) -> bytes:
    """Distinct coordinates [n, 3] in [0, 2^bits) -> the section (see the module docstring)."""
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"octree: {bits} bits per axis, at most {MAX_BITS}")
    passes = []
    ones, total = np.zeros(CONTEXTS, dtype=np.int64), np.zeros(CONTEXTS, dtype=np.int64)
    for level, (nodes, occupancy) in enumerate(_levels(codes, bits)):
        for contexts, coded, values in _coded_bits(nodes, occupancy, 1 << level):
            contexts, values = contexts[coded], values[coded]
            np.add.at(ones, contexts, values)
            np.add.at(total, contexts, 1)
            passes.append((contexts, values))
    used = total > 0
    probability = np.zeros(CONTEXTS, dtype=np.int64)
    probability[used] = np.clip(np.round(ones[used] * PROBABILITY_ONE / total[used]), 1, PROBABILITY_ONE - 1)
    encoder = rangecoder.Encoder()
    for contexts, values in passes:
        encoder.rows(values, _rows(probability, contexts))
    message = encoder.getvalue()
    out = ByteWriter().raw(np.packbits(used).tobytes())
    out.array(probability[used], "u2")
    return out.raw(_varint_bytes(len(message))).raw(message).getvalue()


def decode_octree(reader: ByteReader, count: int, bits: int) -> np.ndarray:
    """The coordinates [count, 3] (int64, Morton order) of a section written by :func:`encode_octree`
    with ``bits`` per axis."""
    used = np.unpackbits(np.frombuffer(bytes(reader.take(CONTEXTS // 8, "context bitmap")), dtype=np.uint8)).astype(bool)
    probability = np.zeros(CONTEXTS, dtype=np.int64)
    probability[used] = reader.array("u2", int(used.sum()), "context probabilities")
    if ((probability[used] < 1) | (probability[used] >= PROBABILITY_ONE)).any():
        raise reader.error("a context probability is outside (0, 1)")
    size = _read_varint(reader, "message byte count")
    decoder = rangecoder.Decoder(reader.take(size, "arithmetic-coded message"), reader)
    nodes = np.zeros((1, 3), dtype=np.int64)
    for level in range(bits):
        parent = _parent_neighbours(nodes, 1 << level)
        occupancy = np.zeros((nodes.shape[0], 8), dtype=np.int64)
        before = np.zeros(nodes.shape[0], dtype=np.int64)
        for j in range(8):
            contexts = _context(j, before, parent[:, j], _inner_neighbours(occupancy, j))
            coded = ~((j == 7) & (before == 0))
            if not used[contexts[coded]].all():
                raise reader.error("octree: a bit falls in a context the section has no probability for")
            occupancy[coded, j] = decoder.rows(_rows(probability, contexts[coded]))
            occupancy[~coded, j] = 1
            before = before + occupancy[:, j]
        nodes = _children(nodes, occupancy)
        if nodes.shape[0] > count:
            raise reader.error(f"octree: level {level + 1} has {nodes.shape[0]} nodes, more than the "
                               f"{count} points expected")
    if nodes.shape[0] != count:
        raise reader.error(f"octree: {nodes.shape[0]} points, {count} expected")
    decoder.finish()
    return nodes
