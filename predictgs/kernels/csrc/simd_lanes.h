// Float lanes with GCC/Clang vector extensions: one type for the pixel loops of the tile rasterizer.
//
// Why explicit vectors: the pixel loops run over a splat's rectangle inside a 16x16 tile, a few pixels per
// row (6-7 on average in a training frame of fern at 504x378, 4-5 for the small random clouds of the
// benchmark). Left to the auto-vectoriser, such loops ran in their scalar remainder (a profile showed only
// scalar `mulss`/`addss` in the hot loop: ~45 cycles per pixel, bound by the latency of exp's polynomial).
// Here a row is covered by blocks of kLanes pixels (one register) and the pixels outside the rectangle are
// masked, and every lane performs the scalar code's operations in the
// scalar code's order (no FMA contraction: -ffp-contract=off), so a lane's result is the same bits as the
// scalar loop's for the same pixel.
#pragma once

#include <cstdint>
#include <cstring>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "simd_math.h"

// The helpers below are inline and used inside this extension only: the vector ABI warning (a 32-byte
// vector passed by value without AVX) does not concern them.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace predictgs {

// Lanes per vector: what one register holds (8 floats with AVX, else 4: SSE2 on x86-64, NEON on arm64).
// A wider type than the registers would be split into halves and spilled to the stack (measured: slower
// than the scalar loops).
#if defined(__AVX__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif

typedef float fvec __attribute__((vector_size(4 * kLanes)));
typedef int32_t ivec __attribute__((vector_size(4 * kLanes)));

inline fvec splat_f(float v) { return fvec{} + v; }
inline ivec splat_i(int32_t v) { return ivec{} + v; }
inline ivec lane_index() {
  ivec lanes;
  for (int l = 0; l < kLanes; ++l) lanes[l] = l;
  return lanes;
}
inline ivec min_v(ivec a, ivec b) { return a < b ? a : b; }
inline ivec max_v(ivec a, ivec b) { return a > b ? a : b; }
inline int32_t hmin(ivec v) {
  int32_t m = v[0];
  for (int l = 1; l < kLanes; ++l) m = v[l] < m ? v[l] : m;
  return m;
}
inline int32_t hmax(ivec v) {
  int32_t m = v[0];
  for (int l = 1; l < kLanes; ++l) m = v[l] > m ? v[l] : m;
  return m;
}
// One bit per lane of a mask (lanes -1 or 0), lane l in bit l: a single instruction on x86.
inline uint32_t lane_bits(ivec mask) {
#if defined(__AVX__)
  return static_cast<uint32_t>(__builtin_ia32_movmskps256(reinterpret_cast<__v8sf>(mask)));
#elif defined(__SSE2__)
  return static_cast<uint32_t>(__builtin_ia32_movmskps(reinterpret_cast<__v4sf>(mask)));
#else
  uint32_t bits = 0;
  for (int l = 0; l < kLanes; ++l) bits |= static_cast<uint32_t>(mask[l] != 0) << l;
  return bits;
#endif
}

inline fvec load_v(const float* p) {
  fvec v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline ivec load_v(const int32_t* p) {
  ivec v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store_v(float* p, fvec v) { std::memcpy(p, &v, sizeof(v)); }
inline void store_v(int32_t* p, ivec v) { std::memcpy(p, &v, sizeof(v)); }

// Half registers: two rows of a tile buffer in one register, the upper row (smaller y) in lanes
// 0..kLanes/2-1 and the lower row in the others; one insert / extract instruction each way.
#if defined(__AVX__)
#define PREDICTGS_FIRST_HALF 0, 1, 2, 3
#define PREDICTGS_SECOND_HALF 4, 5, 6, 7
#define PREDICTGS_ALL_LANES 0, 1, 2, 3, 4, 5, 6, 7
#else
#define PREDICTGS_FIRST_HALF 0, 1
#define PREDICTGS_SECOND_HALF 2, 3
#define PREDICTGS_ALL_LANES 0, 1, 2, 3
#endif
typedef float half_f __attribute__((vector_size(2 * kLanes)));
typedef int32_t half_i __attribute__((vector_size(2 * kLanes)));

inline half_f upper_half(fvec v) { return __builtin_shufflevector(v, v, PREDICTGS_FIRST_HALF); }
inline half_f lower_half(fvec v) { return __builtin_shufflevector(v, v, PREDICTGS_SECOND_HALF); }
inline half_i upper_half(ivec v) { return __builtin_shufflevector(v, v, PREDICTGS_FIRST_HALF); }
inline half_i lower_half(ivec v) { return __builtin_shufflevector(v, v, PREDICTGS_SECOND_HALF); }
inline fvec join_halves(half_f upper, half_f lower) {
  return __builtin_shufflevector(upper, lower, PREDICTGS_ALL_LANES);
}
inline ivec join_halves(half_i upper, half_i lower) {
  return __builtin_shufflevector(upper, lower, PREDICTGS_ALL_LANES);
}

// The kLanes/2 values at `upper` and the kLanes/2 at `lower` as one register, and back.
template <typename P>
inline auto load_halves(const P* upper, const P* lower) {
  decltype(upper_half(load_v(upper))) a, b;
  std::memcpy(&a, upper, sizeof(a));
  std::memcpy(&b, lower, sizeof(b));
  return join_halves(a, b);
}
template <typename P, typename V>
inline void store_halves(P* upper, P* lower, V v) {
  const auto a = upper_half(v), b = lower_half(v);
  std::memcpy(upper, &a, sizeof(a));
  std::memcpy(lower, &b, sizeof(b));
}

// Lane-wise select: mask lanes are -1 (true) or 0 (false), as vector comparisons give.
inline fvec select_v(ivec mask, fvec a, fvec b) {
  ivec ai, bi;
  std::memcpy(&ai, &a, sizeof(ai));
  std::memcpy(&bi, &b, sizeof(bi));
  const ivec r = (ai & mask) | (bi & ~mask);
  fvec out;
  std::memcpy(&out, &r, sizeof(out));
  return out;
}
inline ivec select_v(ivec mask, ivec a, ivec b) { return (a & mask) | (b & ~mask); }

// exp_approx of simd_math.h, lane by lane: the same definition (exp_poly).
inline fvec exp_v(fvec x) { return exp_poly<fvec, ivec>(x); }

inline float sum_v(fvec v) {  // lanes in order: a fixed summation order
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) s += v[l];
  return s;
}

}  // namespace predictgs
