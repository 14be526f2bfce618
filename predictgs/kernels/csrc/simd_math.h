// Small math helpers written so that the compiler can vectorise the loops that call them (no libm calls,
// no branches). Every lane computes the same operations as the scalar code, so a vectorised loop and its
// scalar remainder give the same bits for the same input (the build uses -ffp-contract=off).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace predictgs {

// exp(x) for float, Cephes' expf polynomial (max relative error ~1e-7, about 1-2 ulp) after reduction to
// [-ln2/2, ln2/2]; x is clamped to [-87, 88], which covers every value the rasterizer uses (power <= 0).
// F is float (I int32_t) or a GCC/Clang vector of floats (I the int vector of as many lanes, simd_lanes.h):
// one definition, so that a vector lane computes exactly what the scalar code computes.
template <typename F, typename I>
inline F exp_poly(F x) {
  const F lo = F{} - 87.0f, hi = F{} + 88.0f;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  // floor(x log2 e + 0.5) by truncation of a positive number (x log2 e + 128.5 > 0 for x >= -87)
  I i;
  F n;
  if constexpr (std::is_same_v<F, float>) {
    i = static_cast<int32_t>(x * 1.44269504088896341f + 128.5f) - 128;
    n = static_cast<float>(i);
  } else {
    i = __builtin_convertvector(x * 1.44269504088896341f + 128.5f, I) - 128;
    n = __builtin_convertvector(i, F);
  }
  F r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  const F r2 = r * r;
  F p = F{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  const I bits = (i + 127) << 23;
  F scale;
  static_assert(sizeof(scale) == sizeof(bits), "F and I must have as many lanes");
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

inline float exp_approx(float x) { return exp_poly<float, int32_t>(x); }

inline double exp_approx(double x) { return std::exp(x); }  // float64 is for tests: exactness over speed

}  // namespace predictgs
