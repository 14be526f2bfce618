// Small math helpers written so that the compiler can vectorise the loops that call them (no libm calls,
// no branches). Every lane computes the same operations as the scalar code, so a vectorised loop and its
// scalar remainder give the same bits for the same input (the build uses -ffp-contract=off).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace predictgs {

// exp(x) for float, Cephes' expf polynomial (max relative error ~1e-7, about 1-2 ulp) after reduction to
// [-ln2/2, ln2/2]; x is clamped to [-87, 88], which covers every value the rasterizer uses (power <= 0).
inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // floor(x log2 e + 0.5) by truncation of a positive number (x log2 e + 128.5 > 0 for x >= -87)
  const int32_t i = static_cast<int32_t>(x * 1.44269504088896341f + 128.5f) - 128;
  const float n = static_cast<float>(i);
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  const float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  const int32_t bits = (i + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

inline double exp_approx(double x) { return std::exp(x); }  // float64 is for tests: exactness over speed

}  // namespace predictgs
