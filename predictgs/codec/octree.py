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

Direct coding (as G-PCC's direct mode): a node that is its parent's only child and has no occupied face
neighbour at its level is likely alone; for each such node a flag (one context per level) says whether
it holds a single point, whose remaining low bits (3 per level left) then follow at probability 1/2 and
the node leaves the tree. Isolated points cost the same 3 bits per level either way (their position
within a cell is as good as uniform), but skip the per-level work: encoding and decoding take ~3.5 us
per anchor on fern's initial anchors instead of ~9.

The 384 occupancy models and 24 flag models are static: the encoder counts each context's bits over the
whole octree and stores, for the contexts used, P(1) in 12 bits (a bitmap of the used contexts first),
then one range-coded message of every coded bit (:mod:`predictgs.codec.rangecoder`, P(1) as a count of
2^24), level by level: the flags, the direct points' bits, then the occupancy bits child by child. A
context's probability is stored once for all levels, so the table costs ~0.3 bit per anchor at 10k
anchors and the coding is vectorised per (level, child).

Where the compiled kernels are built, the encoder runs as ``kernels/csrc/octree_coder.cpp`` (the same passes
in the same order, the same bytes; tests/test_positions.py): 2.4 -> 0.9 us per anchor for the lattice section
of a trained fern HAC++ model (36k anchors, Morton mode chosen), which every HAC++ encode computes to compare.

Layout (B, the bits per axis, is known to the caller): bitmap of the used contexts (51 bytes), u16 per used context
(P(1) in 4096ths, 1..4095), varint byte count, the message. The decoder refuses a level with more nodes
(and points already decoded) than the points expected, so corrupt input cannot grow the tree beyond the declared count.
"""

from __future__ import annotations

import numpy as np

from . import rangecoder
from .arithmetic import _read_varint, _varint_bytes
from .container import ByteReader, ByteWriter
from .rangecoder import PRECISION

OCCUPANCY_CONTEXTS = 8 * 3 * 4 * 4
FLAG_BASE = OCCUPANCY_CONTEXTS  # then one context per level for the direct-coding flag
CONTEXTS = OCCUPANCY_CONTEXTS + 24
HALF = np.array([PRECISION // 2, PRECISION // 2], dtype=np.int64)
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


def _neighbours(nodes: np.ndarray, size: int) -> np.ndarray:
    """[m, 3, 2] whether each node's face neighbour (axis, low/high side) is occupied at its level.
    Neighbour keys by Morton arithmetic: +-1 on one axis's interleaved bits, the others kept."""
    keys = morton(nodes)  # nodes are in Morton order: keys sorted
    level_bits = size.bit_length() - 1
    present = np.zeros((nodes.shape[0], 3, 2), dtype=bool)
    if level_bits == 0 or keys.size == 0:
        return present
    for axis in range(3):
        mask = np.uint64(int("001" * level_bits, 2) << axis)
        rest = keys & ~mask
        own = keys & mask
        below = (((own - np.uint64(1 << axis)) & mask) | rest)  # wraps where the coordinate is 0
        above = (((own | ~mask) + np.uint64(1)) & mask) | rest  # wraps where it is size - 1
        for side, key, inside in ((0, below, own != 0), (1, above, own != mask)):
            at = np.searchsorted(keys, key).clip(max=len(keys) - 1)
            present[:, axis, side] = inside & (keys[at] == key)
    return present


def _side_counts(present: np.ndarray) -> np.ndarray:
    """[m, 8] count (0-3) of the occupied face neighbours of each node lying on child j's side."""
    out = np.zeros((present.shape[0], 8), dtype=np.int64)
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


def _children(nodes: np.ndarray, occupancy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the occupied children [k, 3] of ``nodes``, in Morton order as the nodes are, and whether each
    child is its parent's only one)."""
    offsets = np.array([[j & 1, (j >> 1) & 1, (j >> 2) & 1] for j in range(8)], dtype=np.int64)
    child = nodes[:, None, :] * 2 + offsets[None]
    occupied = occupancy.astype(bool)
    only = np.broadcast_to((occupancy.sum(1) == 1)[:, None], occupied.shape)
    return child[occupied], only[occupied]


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """np.unique of sorted keys, without sorting again."""
    if keys.size == 0:
        return keys
    return keys[np.concatenate([[True], keys[1:] != keys[:-1]])]


def _compact(keys: np.ndarray, axis: int) -> np.ndarray:
    x = (keys >> np.uint64(axis)) & np.uint64(0x1249249249249249)
    for shift, mask in ((2, 0x10C30C30C30C30C3), (4, 0x100F00F00F00F00F), (8, 0x1F0000FF0000FF),
                        (16, 0x1F00000000FFFF), (32, 0x1FFFFF)):
        x = (x ^ (x >> np.uint64(shift))) & np.uint64(mask)
    return x.astype(np.int64)


def _occupancy_passes(occupancy: np.ndarray, side: np.ndarray):
    """Per child j: (context of each node's bit j, which nodes code it (not the certain last child),
    the bits)."""
    before = np.zeros(occupancy.shape[0], dtype=np.int64)
    for j in range(8):
        contexts = _context(j, before, side[:, j], _inner_neighbours(occupancy, j))
        coded = ~((j == 7) & (before == 0))
        yield contexts, coded, occupancy[:, j]
        before = before + occupancy[:, j]


def _eligible(level: int, only_child: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Nodes that may hold a directly coded point: their parent's only child, with no occupied face
    neighbour at their level (the decoder knows both before it reads the level's flags)."""
    if level == 0:
        return np.zeros(only_child.shape[0], dtype=bool)
    return only_child & ~present.any(axis=(1, 2))


def _low_bits(points: np.ndarray, remaining: int) -> np.ndarray:
    """[k, 3 remaining] bits of the points' low ``remaining`` bits per axis (axis-major, MSB first)."""
    shifts = np.arange(remaining - 1, -1, -1)
    return ((points[:, :, None] >> shifts) & 1).reshape(points.shape[0], -1)


def _rows(probability_one: np.ndarray, contexts: np.ndarray) -> np.ndarray:
    p1 = probability_one[contexts] * (PRECISION // PROBABILITY_ONE)
    return rangecoder.probabilities(np.stack([PRECISION - p1, p1], axis=1))


def encode_octree(codes: np.ndarray, bits: int) -> bytes:
    """Distinct coordinates [n, 3] in [0, 2^bits) -> the section (see the module docstring)."""
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"octree: {bits} bits per axis, at most {MAX_BITS}")
    points = codes[np.argsort(morton(codes), kind="stable")]
    keys = morton(points)
    module = rangecoder.compiled()
    if module is not None and len(points):  # the compiled twin (kernels/csrc/octree_coder.cpp): the same bytes
        import torch

        probability, words = module.octree_encode(torch.from_numpy(points.astype(np.int64)),
                                                  torch.from_numpy(keys.view(np.int64)), bits)
        probability = probability.numpy()
        used = probability > 0
        message = rangecoder.words_bytes(words)
    else:
        used, probability, message = _encode_reference(points, keys, bits)
    out = ByteWriter().raw(np.packbits(used).tobytes())
    out.array(probability[used], "u2")
    return out.raw(_varint_bytes(len(message))).raw(message).getvalue()


def _encode_reference(points: np.ndarray, keys: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, bytes]:
    """(used contexts, P(1) per context in 4096ths, the message) of points sorted by their Morton keys."""
    passes = []  # (contexts, bits) coded with the context models, or (None, bits) at P = 1/2
    nodes, only_child = np.zeros((1, 3), dtype=np.int64), np.zeros(1, dtype=bool)
    for level in range(bits + 1):
        present = _neighbours(nodes, 1 << level)
        shift = np.uint64(3 * (bits - level))
        prefix = keys >> shift
        first = np.concatenate([[True], prefix[1:] != prefix[:-1]]) if len(prefix) else np.zeros(0, dtype=bool)
        starts = np.flatnonzero(first)
        counts = np.diff(np.append(starts, len(prefix)))  # points per node (nodes in the same order)
        eligible = _eligible(level, only_child, present)
        if level < bits and eligible.any():
            single = eligible & (counts == 1)
            passes.append((FLAG_BASE + np.full(int(eligible.sum()), level), single[eligible].astype(np.int64)))
            if single.any():
                direct = points[starts[single]]
                passes.append((None, _low_bits(direct & ((1 << (bits - level)) - 1), bits - level).reshape(-1)))
                keep = np.repeat(~single, counts)
                points, keys = points[keep], keys[keep]
                nodes, present, counts = nodes[~single], present[~single], counts[~single]
        if level == bits:
            break
        child_prefix = keys >> (shift - np.uint64(3))
        node_of = np.repeat(np.arange(len(counts)), counts)
        occupancy = np.zeros((len(counts), 8), dtype=np.int64)
        occupancy[node_of, (child_prefix & np.uint64(7)).astype(np.int64)] = 1
        for contexts, coded, values in _occupancy_passes(occupancy, _side_counts(present)):
            passes.append((contexts[coded], values[coded]))
        nodes, only_child = _children(nodes, occupancy)
    ones, total = np.zeros(CONTEXTS, dtype=np.int64), np.zeros(CONTEXTS, dtype=np.int64)
    for contexts, values in passes:
        if contexts is not None:
            ones += np.bincount(contexts, weights=values, minlength=CONTEXTS).astype(np.int64)
            total += np.bincount(contexts, minlength=CONTEXTS)
    used = total > 0
    probability = np.zeros(CONTEXTS, dtype=np.int64)
    probability[used] = np.clip(np.round(ones[used] * PROBABILITY_ONE / total[used]), 1, PROBABILITY_ONE - 1)
    encoder = rangecoder.Encoder()
    for contexts, values in passes:
        if contexts is None:
            encoder.fixed(values, HALF)
        else:
            encoder.rows(values, _rows(probability, contexts))
    return used, probability, encoder.getvalue()


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

    def coded(contexts: np.ndarray) -> np.ndarray:
        if not used[contexts].all():
            raise reader.error("octree: a bit falls in a context the section has no probability for")
        return decoder.rows(_rows(probability, contexts))

    found = []
    nodes, only_child = np.zeros((1, 3), dtype=np.int64), np.zeros(1, dtype=bool)
    for level in range(bits + 1):
        present = _neighbours(nodes, 1 << level)
        eligible = _eligible(level, only_child, present)
        if level < bits and eligible.any():
            single = np.zeros(nodes.shape[0], dtype=bool)
            single[eligible] = coded(FLAG_BASE + np.full(int(eligible.sum()), level)) == 1
            if single.any():
                remaining = bits - level
                low = decoder.fixed(int(single.sum()) * 3 * remaining, HALF).reshape(-1, 3, remaining)
                weights = np.left_shift(1, np.arange(remaining - 1, -1, -1))
                found.append((nodes[single] << remaining) + (low * weights).sum(axis=2))
                nodes, present = nodes[~single], present[~single]
        if sum(len(f) for f in found) + nodes.shape[0] > count:
            raise reader.error(f"octree: level {level} holds more than the {count} points expected")
        if level == bits:
            found.append(nodes)
            break
        side = _side_counts(present)
        occupancy = np.zeros((nodes.shape[0], 8), dtype=np.int64)
        before = np.zeros(nodes.shape[0], dtype=np.int64)
        for j in range(8):
            contexts = _context(j, before, side[:, j], _inner_neighbours(occupancy, j))
            is_coded = ~((j == 7) & (before == 0))
            occupancy[is_coded, j] = coded(contexts[is_coded])
            occupancy[~is_coded, j] = 1
            before = before + occupancy[:, j]
        nodes, only_child = _children(nodes, occupancy)
    points = np.concatenate(found) if found else np.zeros((0, 3), dtype=np.int64)
    if points.shape[0] != count:
        raise reader.error(f"octree: {points.shape[0]} points, {count} expected")
    decoder.finish()
    return points[np.argsort(morton(points), kind="stable")]
