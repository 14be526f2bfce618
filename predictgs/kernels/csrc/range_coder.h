// The range coder of the bitstream (format 4 on): constriction's queue::RangeEncoder<u32, u64> and RangeDecoder at
// 24-bit precision, the same words (predictgs/codec/rangecoder.py; tests/test_codec_compiled.py compares them with
// constriction). Shared by the Gaussian streams (gaussian_coder.cpp), the mixtures (mixture_coder.cpp) and the
// octree (octree_coder.cpp).
#pragma once

#include <torch/extension.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace predictgs {

constexpr int kPrecision = 24;
constexpr uint64_t kRenorm = 1ull << 32;  // range below this: shift a word out (State::BITS - Word::BITS)

// constriction's queue::RangeEncoder<u32, u64>: lower and range of the interval, words written, and the
// held-back words of an "inverted" situation (the interval wraps around, the carry is not known yet).
struct RangeEncoder {
  uint64_t lower = 0;
  uint64_t range = ~0ull;
  bool inverted = false;
  uint64_t num_inverted = 0;
  uint32_t first_inverted = 0;
  std::vector<uint32_t> words;

  // The held-back words of an inverted situation, once the carry is known: the first word (+1 with a carry),
  // then num_inverted - 1 words of 0 (carry) or all ones.
  void flush_inverted(std::vector<uint32_t>& out, bool carry) const {
    out.push_back(carry ? first_inverted + 1u : first_inverted);
    for (uint64_t i = 1; i < num_inverted; ++i) out.push_back(carry ? 0u : 0xffffffffu);
  }

  inline void encode(uint64_t left, uint64_t probability) {
    const uint64_t scale = range >> kPrecision;
    range = scale * probability;
    const uint64_t new_lower = lower + scale * left;  // wraps
    if (inverted && new_lower + range > new_lower) {  // back to a normal situation: the carry is known
      flush_inverted(words, new_lower < lower);
      inverted = false;
    }
    lower = new_lower;
    if (range < kRenorm) {
      range <<= 32;
      const uint32_t lower_word = static_cast<uint32_t>(lower >> 32);
      lower <<= 32;
      if (inverted) {
        ++num_inverted;
      } else if (lower + range > lower) {
        words.push_back(lower_word);
      } else {
        inverted = true;
        num_inverted = 1;
        first_inverted = lower_word;
      }
    }
  }

  // The words of get_compressed(): the written words, then the seal (nothing when no symbol was coded).
  std::vector<uint32_t> sealed() const {
    std::vector<uint32_t> out(words);
    if (range == ~0ull) return out;
    const uint64_t point = lower + (kRenorm - 1);
    if (inverted) flush_inverted(out, point < lower);  // the point's addition wrapped: a carry
    const uint32_t point_word = static_cast<uint32_t>(point >> 32);
    const uint32_t upper_word = static_cast<uint32_t>((lower + range) >> 32);
    out.push_back(point_word);
    if (upper_word == point_word) out.push_back(0u);
    return out;
  }
};

// constriction's queue::RangeDecoder<u32, u64> over a word buffer.
struct RangeDecoder {
  const uint32_t* data;
  int64_t size;
  int64_t pos = 0;
  uint64_t lower = 0;
  uint64_t range = ~0ull;
  uint64_t point = 0;

  RangeDecoder(const uint32_t* d, int64_t n) : data(d), size(n) {
    int read = 0;
    while (pos < size && read < 2) {
      point = (point << 32) | data[pos++];
      ++read;
    }
    if (read == 1) point <<= 32;
  }

  // The symbol of the row ``cdf`` (length - 1 symbols, cdf[0] = 0, cdf[length - 1] = 2^24) at the current
  // point; false when the data cannot come from the encoder (the quantile is outside the distribution).
  // constriction reads the quantile floor((point - lower) / scale); "c <= quantile" is tested here as
  // "c scale <= point - lower", the same for integers (c <= 2^24 and scale < 2^40: no overflow), without
  // the 64-bit division.
  inline bool decode(const int32_t* cdf, int64_t length, int64_t* symbol) {
    const uint64_t scale = range >> kPrecision;
    const uint64_t offset = point - lower;
    if (offset >= (scale << kPrecision)) return false;  // quantile >= 2^24
    int64_t lo = 0, hi = length - 1;  // cdf[lo] <= quantile < cdf[hi]
    while (hi - lo > 1) {
      const int64_t mid = (lo + hi) >> 1;
      if (static_cast<uint64_t>(cdf[mid]) * scale <= offset) lo = mid; else hi = mid;
    }
    const uint64_t left = static_cast<uint64_t>(cdf[lo]);
    lower += scale * left;
    range = scale * (static_cast<uint64_t>(cdf[lo + 1]) - left);
    if (range < kRenorm) {
      lower <<= 32;
      range <<= 32;
      point <<= 32;
      if (pos < size) point |= data[pos++];
    }
    *symbol = lo;
    return true;
  }

  bool maybe_exhausted() const {
    const uint64_t max_difference = (kRenorm << 1) - 1;
    return pos == size && (range == ~0ull || point - lower < max_difference);
  }
};

// A message's words as the int32 tensor the Python side reads (rangecoder.py's words_bytes).
inline torch::Tensor words_tensor(const std::vector<uint32_t>& words) {
  torch::Tensor out = torch::empty({static_cast<int64_t>(words.size())}, torch::TensorOptions().dtype(torch::kInt32));
  if (!words.empty()) std::memcpy(out.data_ptr<int32_t>(), words.data(), words.size() * sizeof(uint32_t));
  return out;
}

}  // namespace predictgs
