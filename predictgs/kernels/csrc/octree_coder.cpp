// The octree geometry coder's encoder (predictgs/codec/octree.py, encode_octree), compiled: the level-by-level
// occupancy passes with their contexts, the direct-coded points, the static per-context probabilities and the
// range-coded message (range_coder.h). The same passes in the same order as the numpy reference, so the same
// bytes (tests/test_positions.py compares them); the module docstring of octree.py describes the coding.
//
// A node is identified by its Morton key at its level (the prefix of its points' keys), so the nodes of a level
// are the distinct prefixes of the points' keys, in order, and a face neighbour is found by binary search among
// them (the key arithmetic of octree.py's _neighbours).
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "range_coder.h"

namespace {

using predictgs::kPrecision;
using predictgs::RangeEncoder;

constexpr int kOccupancyContexts = 8 * 3 * 4 * 4;
constexpr int kFlagBase = kOccupancyContexts;  // then one context per level (direct-coding flag)
constexpr int kContexts = kOccupancyContexts + 24;
constexpr int kMaxBits = 21;
constexpr int16_t kHalf = -1;  // a bit at probability 1/2 (the direct points' low bits)

// Whether ``target`` is among the sorted ``keys``, searched outward from position i (keys[i] != target) with
// doubling steps: a face neighbour's key mostly shares a long prefix with the node's, so it lies nearby.
bool find_near(const std::vector<uint64_t>& keys, size_t i, uint64_t target) {
  size_t lo, hi;
  if (target < keys[i]) {
    hi = i;  // keys[hi] > target
    size_t step = 1;
    for (;;) {
      if (step > hi) { lo = 0; break; }
      lo = hi - step;
      if (keys[lo] <= target) break;
      hi = lo;
      step <<= 1;
    }
  } else {
    lo = i + 1;  // keys[lo - 1] < target
    size_t step = 1;
    for (;;) {
      if (lo + step >= keys.size()) { hi = keys.size(); break; }
      hi = lo + step;
      if (keys[hi] >= target) { ++hi; break; }
      lo = hi + 1;
      step <<= 1;
    }
  }
  return std::binary_search(keys.begin() + lo, keys.begin() + hi, target);
}

// present[i * 6 + axis * 2 + side]: node i's face neighbour on that side of that axis is occupied at its level.
std::vector<uint8_t> face_neighbours(const std::vector<uint64_t>& keys, int level) {
  std::vector<uint8_t> present(keys.size() * 6, 0);
  if (level == 0 || keys.empty()) return present;
  uint64_t pattern = 0;
  for (int l = 0; l < level; ++l) pattern |= 1ull << (3 * l);
  for (int axis = 0; axis < 3; ++axis) {
    const uint64_t mask = pattern << axis;
    for (size_t i = 0; i < keys.size(); ++i) {
      const uint64_t rest = keys[i] & ~mask, own = keys[i] & mask;
      const uint64_t neighbour[2] = {((own - (1ull << axis)) & mask) | rest, (((own | ~mask) + 1) & mask) | rest};
      const bool inside[2] = {own != 0, own != mask};
      for (int side = 0; side < 2; ++side) {
        if (!inside[side]) continue;
        present[i * 6 + axis * 2 + side] = find_near(keys, i, neighbour[side]);
      }
    }
  }
  return present;
}

}  // namespace

// Points [n, 3] (int64, distinct, each coordinate in [0, 2^bits)) sorted by their Morton ``keys`` [n] (int64, x in
// the lowest bit) -> (P(1) of each context in 4096ths, 0 where unused [kContexts]; the message's words).
std::vector<torch::Tensor> octree_encode(torch::Tensor points, torch::Tensor point_keys, int64_t bits) {
  TORCH_CHECK(bits >= 1 && bits <= kMaxBits, "octree_encode: 1 to 21 bits per axis");
  TORCH_CHECK(points.dtype() == torch::kInt64 && point_keys.dtype() == torch::kInt64 && points.dim() == 2 &&
                  points.size(1) == 3 && point_keys.numel() == points.size(0),
              "octree_encode: int64 points [n, 3] and their int64 keys [n]");
  points = points.contiguous();
  point_keys = point_keys.contiguous();
  const int64_t n = points.size(0);
  std::vector<int64_t> coords(points.data_ptr<int64_t>(), points.data_ptr<int64_t>() + 3 * n);
  std::vector<uint64_t> keys(n);
  for (int64_t i = 0; i < n; ++i) {
    keys[i] = static_cast<uint64_t>(point_keys.data_ptr<int64_t>()[i]);
    TORCH_CHECK(i == 0 || keys[i] > keys[i - 1], "octree_encode: keys must be distinct and sorted");
  }

  std::vector<int16_t> contexts;  // the coded bits in coding order: context (or kHalf) and value
  std::vector<uint8_t> values;
  std::vector<uint64_t> nodes = {0};  // the level's nodes: Morton keys at the level, in order
  std::vector<uint8_t> only_child = {0};
  std::vector<int64_t> starts, counts;
  for (int level = 0; level <= bits; ++level) {
    std::vector<uint8_t> present = face_neighbours(nodes, level);
    const int shift = 3 * (static_cast<int>(bits) - level);
    // The points of each node: consecutive runs of one prefix (the nodes are exactly these prefixes).
    starts.clear();
    counts.clear();
    for (int64_t i = 0; i < static_cast<int64_t>(keys.size()); ++i) {
      if (i == 0 || (keys[i] >> shift) != (keys[i - 1] >> shift)) {
        starts.push_back(i);
        counts.push_back(0);
      }
      ++counts.back();
    }
    TORCH_CHECK(starts.size() == nodes.size(), "octree_encode: internal error (nodes and prefixes differ)");
    const size_t m = nodes.size();
    if (level < bits && level > 0) {
      std::vector<uint8_t> single(m, 0);
      bool any_single = false;
      for (size_t i = 0; i < m; ++i) {
        bool alone = only_child[i];
        for (int k = 0; k < 6 && alone; ++k) alone = !present[i * 6 + k];
        if (!alone) continue;
        single[i] = counts[i] == 1;
        any_single |= single[i];
        contexts.push_back(static_cast<int16_t>(kFlagBase + level));
        values.push_back(single[i]);
      }
      if (any_single) {
        const int remaining = static_cast<int>(bits) - level;
        for (size_t i = 0; i < m; ++i) {
          if (!single[i]) continue;
          const int64_t* p = &coords[3 * starts[i]];
          for (int axis = 0; axis < 3; ++axis)
            for (int b = remaining - 1; b >= 0; --b) {
              contexts.push_back(kHalf);
              values.push_back(static_cast<uint8_t>((p[axis] >> b) & 1));
            }
        }
        // Drop the single nodes and their points.
        std::vector<uint64_t> kept_keys, kept_nodes;
        std::vector<int64_t> kept_coords, kept_counts;
        std::vector<uint8_t> kept_present;
        for (size_t i = 0; i < m; ++i) {
          if (single[i]) continue;
          kept_nodes.push_back(nodes[i]);
          kept_counts.push_back(counts[i]);
          kept_present.insert(kept_present.end(), present.begin() + 6 * i, present.begin() + 6 * i + 6);
          for (int64_t r = starts[i]; r < starts[i] + counts[i]; ++r) {
            kept_keys.push_back(keys[r]);
            kept_coords.insert(kept_coords.end(), coords.begin() + 3 * r, coords.begin() + 3 * r + 3);
          }
        }
        keys.swap(kept_keys);
        nodes.swap(kept_nodes);
        counts.swap(kept_counts);
        present.swap(kept_present);
        coords.swap(kept_coords);
      }
    }
    if (level == bits) break;
    const size_t kept = nodes.size();
    std::vector<uint8_t> occupancy(kept * 8, 0);
    {
      int64_t r = 0;
      for (size_t i = 0; i < kept; ++i)
        for (int64_t c = 0; c < counts[i]; ++c, ++r) occupancy[i * 8 + ((keys[r] >> (shift - 3)) & 7)] = 1;
    }
    std::vector<uint8_t> before(kept, 0);
    for (int j = 0; j < 8; ++j) {
      for (size_t i = 0; i < kept; ++i) {
        const uint8_t* occ = &occupancy[i * 8];
        if (j == 7 && before[i] == 0) {  // the certain last child: not coded
          before[i] += occ[j];
          continue;
        }
        int side = 0, inner = 0;
        for (int axis = 0; axis < 3; ++axis) {
          side += present[i * 6 + axis * 2 + ((j >> axis) & 1)];
          if (j & (1 << axis)) inner += occ[j ^ (1 << axis)];
        }
        const int ones = std::min<int>(before[i], 2);
        contexts.push_back(static_cast<int16_t>(((j * 3 + ones) * 4 + side) * 4 + inner));
        values.push_back(occ[j]);
        before[i] += occ[j];
      }
    }
    std::vector<uint64_t> children;
    std::vector<uint8_t> child_only;
    children.reserve(kept * 2);
    for (size_t i = 0; i < kept; ++i) {
      const uint8_t* occ = &occupancy[i * 8];
      const int occupied = occ[0] + occ[1] + occ[2] + occ[3] + occ[4] + occ[5] + occ[6] + occ[7];
      for (int j = 0; j < 8; ++j)
        if (occ[j]) {
          children.push_back((nodes[i] << 3) | static_cast<uint64_t>(j));
          child_only.push_back(occupied == 1);
        }
    }
    nodes.swap(children);
    only_child.swap(child_only);
  }

  // Static models: P(1) of each used context in 4096ths, rounded half to even as numpy's round, in [1, 4095].
  std::vector<int64_t> ones(kContexts, 0), total(kContexts, 0);
  for (size_t k = 0; k < contexts.size(); ++k)
    if (contexts[k] >= 0) {
      ones[contexts[k]] += values[k];
      ++total[contexts[k]];
    }
  torch::Tensor probability = torch::zeros({kContexts}, torch::TensorOptions().dtype(torch::kInt64));
  int64_t* prob = probability.data_ptr<int64_t>();
  for (int c = 0; c < kContexts; ++c) {
    if (!total[c]) continue;
    const double p = std::nearbyint(static_cast<double>(ones[c] * 4096) / static_cast<double>(total[c]));
    prob[c] = std::min<int64_t>(std::max<int64_t>(static_cast<int64_t>(p), 1), 4095);
  }
  const uint64_t whole = 1ull << kPrecision, half = whole >> 1, unit = whole >> 12;
  RangeEncoder encoder;
  for (size_t k = 0; k < contexts.size(); ++k) {
    const uint64_t zero = contexts[k] < 0 ? half : whole - static_cast<uint64_t>(prob[contexts[k]]) * unit;
    if (values[k]) encoder.encode(zero, whole - zero);
    else encoder.encode(0, zero);
  }
  return {probability, predictgs::words_tensor(encoder.sealed())};
}
