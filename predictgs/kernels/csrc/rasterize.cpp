// Tile-based CPU rasterizer of projected 2D Gaussians: binning, forward and backward compositing.
//
// The structure of gsplat's CUDA kernels, laid out for a CPU (see docs/rasterizer.md):
//   bin     every drawn Gaussian (radius > 0) into the 16x16-pixel tiles its support touches; Gaussians are
//           visited in depth order, so each tile's list comes out sorted front to back without a sort;
//   forward each tile is one unit of parallel work: its Gaussians are composited front to back into the
//           tile's pixels, each Gaussian visiting only the pixels of its support rectangle, with the Inria
//           kernel's tests (3 sigma, alpha <= 0.99, alpha >= 1/255, stop before T < 1e-4);
//   backward the same lists walked back to front; each tile writes the gradient of each of its list entries
//           into its own slot, and the slots are summed per Gaussian in a fixed order, so the result is the
//           same bits whatever the number of threads (no atomics, no order that depends on scheduling).
// Conventions are those of predictgs/render/reference.py, which is the oracle of the parity tests.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "simd_math.h"
#include "simd_lanes.h"

namespace {

constexpr int64_t TILE = 16;
constexpr double ALPHA_MAX = 0.99;
constexpr double ALPHA_MIN = 1.0 / 255.0;
constexpr double TRANSMITTANCE_MIN = 1e-4;
constexpr double POWER_MIN = -0.5 * 3.0 * 3.0;  // 3-sigma support: power = -d^2/2 >= -4.5

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Parallel loop over [0, n) in interleaved chunks, so that threads share the dense and the empty parts of
// the image alike. The work of each index is independent of the thread that runs it.
template <typename F>
void parallel_interleaved(int64_t n, const F& fn) {
  if (n <= 0) return;
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t lanes = std::min<int64_t>(n, threads * 8);
  at::parallel_for(0, lanes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t lane = begin; lane < end; ++lane)
      for (int64_t i = lane; i < n; i += lanes) fn(i);
  });
}

void check_input(const torch::Tensor& t, const char* name, int64_t dims) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.dim() == dims, name, " must have ", dims, " dimensions");
}

}  // namespace

// -- binning ------------------------------------------------------------------------------------------------
// depth_order: the drawn Gaussians (radius > 0) front to back, as `argsort(depths[drawn], stable=True)` of
// the drawn indices gives them (ties by index), by a least-significant-digit radix sort of the depths' bits
// (8 bits per pass, passes whose digit is the same for every key skipped): O(M), no comparisons. The keys
// map float order to unsigned order (sign bit set for positives, all bits flipped for negatives; -0 as +0,
// NaN last, as torch.argsort places them).
torch::Tensor depth_order(torch::Tensor depths, torch::Tensor radii) {
  check_input(depths, "depths", 1);
  check_input(radii, "radii", 1);
  TORCH_CHECK(radii.scalar_type() == torch::kInt32 && radii.size(0) == depths.size(0),
              "radii must be int32 with one value per depth");
  const int64_t n = depths.size(0);
  const int32_t* rad = radii.data_ptr<int32_t>();
  std::vector<int64_t> index;
  index.reserve(n);
  for (int64_t i = 0; i < n; ++i)
    if (rad[i] > 0) index.push_back(i);
  const int64_t m = static_cast<int64_t>(index.size());
  std::vector<uint64_t> key(m);
  int key_bits = 32;
  AT_DISPATCH_FLOATING_TYPES(depths.scalar_type(), "depth_order", [&] {
    using U = std::conditional_t<sizeof(scalar_t) == 8, uint64_t, uint32_t>;
    constexpr int width_bits = 8 * sizeof(U);
    key_bits = width_bits;
    const scalar_t* d = depths.data_ptr<scalar_t>();
    for (int64_t j = 0; j < m; ++j) {
      const scalar_t value = d[index[j]] == 0 ? scalar_t(0) : d[index[j]];  // -0 sorts as +0
      U bits;
      std::memcpy(&bits, &value, sizeof(U));
      const U sign = U(1) << (width_bits - 1);
      bits = std::isnan(value) ? ~U(0) : ((bits & sign) ? ~bits : bits | sign);
      key[j] = bits;
    }
  });
  std::vector<uint64_t> key_tmp(m);
  std::vector<int64_t> index_tmp(m);
  for (int shift = 0; shift < key_bits; shift += 8) {
    int64_t count[257] = {};
    for (int64_t j = 0; j < m; ++j) ++count[((key[j] >> shift) & 255) + 1];
    bool single = false;
    for (int b = 1; b <= 256; ++b) single |= count[b] == m;
    if (single) continue;  // every key has this digit: the pass would not move anything
    for (int b = 0; b < 256; ++b) count[b + 1] += count[b];
    for (int64_t j = 0; j < m; ++j) {
      const int64_t to = count[(key[j] >> shift) & 255]++;
      key_tmp[to] = key[j];
      index_tmp[to] = index[j];
    }
    key.swap(key_tmp);
    index.swap(index_tmp);
  }
  auto order = torch::empty({m}, torch::kInt64);
  std::copy(index.begin(), index.end(), order.data_ptr<int64_t>());
  return order;
}

// order: int64 [M] the Gaussians to draw (radius > 0), sorted front to back (stable: ties by index).
// Returns (tile_start int64 [T+1], entry_gaussian int32 [K], entry_slot int64 [K], gauss_slot_start int64
// [N+1], rects int32 [N,4] = x0, y0, x1, y1 inclusive pixel bounds, empty when x1 < x0).
// Entry k of a tile is Gaussian entry_gaussian[k]; its gradient goes to slot entry_slot[k]; Gaussian g's
// slots are gauss_slot_start[g] .. gauss_slot_start[g+1]-1, one per tile it touches, in tile order.
std::vector<torch::Tensor> bin_gaussians(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opacities,
                                         torch::Tensor order, int64_t width, int64_t height) {
  check_input(means2d, "means2d", 2);
  check_input(conics, "conics", 2);
  check_input(opacities, "opacities", 1);
  check_input(order, "order", 1);
  TORCH_CHECK(order.scalar_type() == torch::kInt64, "order must be int64");
  const int64_t n = means2d.size(0), m = order.size(0);
  const int64_t tiles_x = ceil_div(width, TILE), tiles_y = ceil_div(height, TILE);
  const int64_t num_tiles = tiles_x * tiles_y;
  auto rects = torch::empty({n, 4}, torch::kInt32);
  int32_t* rect = rects.data_ptr<int32_t>();
  for (int64_t i = 0; i < n; ++i) {  // Gaussians not in `order` draw nothing
    rect[4 * i + 0] = 0; rect[4 * i + 1] = 0; rect[4 * i + 2] = -1; rect[4 * i + 3] = -1;
  }
  const int64_t* ord = order.data_ptr<int64_t>();

  AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "bin_gaussians", [&] {
    const scalar_t* mean = means2d.data_ptr<scalar_t>();
    const scalar_t* conic = conics.data_ptr<scalar_t>();
    const scalar_t* opac = opacities.data_ptr<scalar_t>();
    at::parallel_for(0, m, 2048, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        const int64_t g = ord[j];
        TORCH_CHECK(g >= 0 && g < n, "order holds an index out of range");
        // A pixel is drawn only if d^2 <= 9 and o exp(-d^2/2) >= 1/255, i.e. d^2 <= min(9, 2 ln(255 o)).
        // The rectangle bounding that ellipse (with a margin for rounding) holds every pixel the
        // compositing tests can accept; the tests themselves decide.
        const double o = static_cast<double>(opac[g]);
        if (!(o * 255.0 >= 1.0 - 1e-6)) continue;
        const double a = conic[3 * g], b = conic[3 * g + 1], c = conic[3 * g + 2];
        const double det = a * c - b * b;
        if (!(det > 0.0) || !std::isfinite(det)) continue;
        // (2 ln(255 o) >= 9 from 255 o >= e^4.5 = 90.017: no logarithm needed above 90.1)
        const double d2 = (o * 255.0 >= 90.1 ? 9.0 : std::min(9.0, 2.0 * std::log(std::max(o * 255.0, 1.0)))) *
                              (1.0 + 1e-4) + 1e-4;
        const double ex = std::sqrt(d2 * c / det) * (1.0 + 1e-4) + 1e-3;
        const double ey = std::sqrt(d2 * a / det) * (1.0 + 1e-4) + 1e-3;
        const double mx = mean[2 * g], my = mean[2 * g + 1];
        if (!std::isfinite(mx) || !std::isfinite(my) || !std::isfinite(ex) || !std::isfinite(ey)) continue;
        // Pixel i has its centre at i + 0.5.
        const double fx0 = std::ceil(mx - ex - 0.5), fx1 = std::floor(mx + ex - 0.5);
        const double fy0 = std::ceil(my - ey - 0.5), fy1 = std::floor(my + ey - 0.5);
        if (fx1 < 0 || fy1 < 0 || fx0 > width - 1 || fy0 > height - 1 || fx1 < fx0 || fy1 < fy0) continue;
        rect[4 * g + 0] = static_cast<int32_t>(std::max(0.0, fx0));
        rect[4 * g + 1] = static_cast<int32_t>(std::max(0.0, fy0));
        rect[4 * g + 2] = static_cast<int32_t>(std::min<double>(width - 1, fx1));
        rect[4 * g + 3] = static_cast<int32_t>(std::min<double>(height - 1, fy1));
      }
    });
  });

  // Tiles per Gaussian (in depth order) and Gaussians per tile.
  auto gauss_slot_start = torch::zeros({n + 1}, torch::kInt64);
  int64_t* gslot = gauss_slot_start.data_ptr<int64_t>();
  std::vector<int64_t> tile_count(num_tiles + 1, 0);
  std::vector<int64_t> slots_in_order(m + 1, 0);
  for (int64_t j = 0; j < m; ++j) {
    const int64_t g = ord[j];
    const int32_t* r = rect + 4 * g;
    int64_t count = 0;
    if (r[2] >= r[0] && r[3] >= r[1]) {
      const int64_t tx0 = r[0] / TILE, tx1 = r[2] / TILE, ty0 = r[1] / TILE, ty1 = r[3] / TILE;
      count = (tx1 - tx0 + 1) * (ty1 - ty0 + 1);
      for (int64_t ty = ty0; ty <= ty1; ++ty)
        for (int64_t tx = tx0; tx <= tx1; ++tx) ++tile_count[ty * tiles_x + tx];
    }
    slots_in_order[j + 1] = slots_in_order[j] + count;
  }
  const int64_t total = slots_in_order[m];
  // Slots of Gaussian g: contiguous, in index order of g (so that the reduction is a plain segmented sum).
  {
    std::vector<int64_t> per_gauss(n, 0);
    for (int64_t j = 0; j < m; ++j) per_gauss[ord[j]] = slots_in_order[j + 1] - slots_in_order[j];
    for (int64_t g = 0; g < n; ++g) gslot[g + 1] = gslot[g] + per_gauss[g];
  }
  auto tile_start = torch::zeros({num_tiles + 1}, torch::kInt64);
  int64_t* tstart = tile_start.data_ptr<int64_t>();
  for (int64_t t = 0; t < num_tiles; ++t) tstart[t + 1] = tstart[t] + tile_count[t];
  auto entry_gaussian = torch::empty({total}, torch::kInt32);
  auto entry_slot = torch::empty({total}, torch::kInt64);
  int32_t* eg = entry_gaussian.data_ptr<int32_t>();
  int64_t* es = entry_slot.data_ptr<int64_t>();
  std::vector<int64_t> cursor(tstart, tstart + num_tiles);
  for (int64_t j = 0; j < m; ++j) {  // depth order: each tile's entries come out front to back
    const int64_t g = ord[j];
    const int32_t* r = rect + 4 * g;
    if (r[2] < r[0] || r[3] < r[1]) continue;
    int64_t slot = gslot[g];
    const int64_t tx0 = r[0] / TILE, tx1 = r[2] / TILE, ty0 = r[1] / TILE, ty1 = r[3] / TILE;
    for (int64_t ty = ty0; ty <= ty1; ++ty)
      for (int64_t tx = tx0; tx <= tx1; ++tx) {
        const int64_t k = cursor[ty * tiles_x + tx]++;
        eg[k] = static_cast<int32_t>(g);
        es[k] = slot++;
      }
  }
  return {tile_start, entry_gaussian, entry_slot, gauss_slot_start, rects};
}

// -- forward ------------------------------------------------------------------------------------------------
namespace {

constexpr int64_t TILE_PIXELS = TILE * TILE;

// Per-Gaussian constants of the compositing loops.
template <typename T>
struct Splat {
  T mx, my, ca, cb, cc, o;
  const T* color;
  int64_t x0, x1, y0, y1;  // the support rectangle clipped to the tile (inclusive)
};

template <typename T>
inline Splat<T> splat(int64_t g, const T* mean, const T* conic, const T* opac, const T* col, int64_t channels,
                      const int32_t* rect, int64_t x_base, int64_t y_base, int64_t tw, int64_t th) {
  const int32_t* r = rect + 4 * g;
  return Splat<T>{mean[2 * g], mean[2 * g + 1], conic[3 * g], conic[3 * g + 1], conic[3 * g + 2], opac[g],
                  col + g * channels,
                  std::max<int64_t>(r[0], x_base), std::min<int64_t>(r[2], x_base + tw - 1),
                  std::max<int64_t>(r[1], y_base), std::min<int64_t>(r[3], y_base + th - 1)};
}

// The box (tile coordinates, inclusive) of the pixels a list entry was composited into, packed in 20 bits:
// the forward passes write it per entry, the backward passes revisit only those pixels. x1 = 31 (from -1)
// marks an entry composited into no pixel.
struct Box {
  int64_t x0, x1, y0, y1;
  bool empty() const { return x1 == 31 || y1 == 31; }
};

inline int32_t pack_box(int64_t x0, int64_t x1, int64_t y0, int64_t y1) {
  return static_cast<int32_t>(x0 | (x1 & 31) << 5 | y0 << 10 | (y1 & 31) << 15);
}

inline Box unpack_box(int32_t packed) {
  return Box{packed & 31, (packed >> 5) & 31, (packed >> 10) & 31, (packed >> 15) & 31};
}

// A tile's composited results out of its buffer (pixel (lx, ly) at ly * row + lx, channel planes `plane`
// apart) into the images.
template <typename T>
void store_tile(int64_t row, int64_t plane, int64_t channels, int64_t x_base, int64_t y_base, int64_t tw, int64_t th,
                int64_t width, int64_t height, const T* trans, const int32_t* count, const T* acc, T* rgb_out,
                T* t_out, int32_t* last_out) {
  for (int64_t ly = 0; ly < th; ++ly)
    for (int64_t lx = 0; lx < tw; ++lx) {
      const int64_t p = ly * row + lx, pixel = (y_base + ly) * width + (x_base + lx);
      t_out[pixel] = trans[p];
      last_out[pixel] = count[p];
      for (int64_t ch = 0; ch < channels; ++ch) rgb_out[ch * height * width + pixel] = acc[ch * plane + p];
    }
}

// What the backward pass of a tile starts from, into its buffer (laid out as for store_tile): the final
// transmittance (also the running one), the incoming gradients, each pixel's entry count and the deepest
// count per row; returns the deepest count of the tile.
template <typename T>
int32_t load_tile(int64_t row, int64_t plane, int64_t channels, int64_t x_base, int64_t y_base, int64_t tw, int64_t th,
                  int64_t width, int64_t height, const T* t_fin, const T* v_t, const int32_t* last_in,
                  const T* v_rgb, T* trans, T* t_final, T* v_trans, int32_t* count, T* v, int32_t* row_deepest) {
  int32_t deepest = 0;
  for (int64_t ly = 0; ly < th; ++ly)
    for (int64_t lx = 0; lx < tw; ++lx) {
      const int64_t p = ly * row + lx, pixel = (y_base + ly) * width + (x_base + lx);
      trans[p] = t_final[p] = t_fin[pixel];
      v_trans[p] = v_t[pixel];
      count[p] = last_in[pixel];
      deepest = std::max(deepest, count[p]);
      row_deepest[ly] = std::max(row_deepest[ly], count[p]);
      for (int64_t ch = 0; ch < channels; ++ch) v[ch * plane + p] = v_rgb[ch * height * width + pixel];
    }
  return deepest;
}

// NC: the number of colour channels when known at compile time (3), else 0 and `channels` at run time.
// The pixel loops are branch-free (selects instead of ifs) so that the compiler vectorises them.
template <typename T, int NC>
void forward_tile(int64_t tile, int64_t tiles_x, int64_t width, int64_t height, int64_t channels_rt,
                  const int64_t* tstart, const int32_t* eg, const int32_t* rect, const T* mean, const T* conic,
                  const T* opac, const T* col, T* rgb_out, T* t_out, int32_t* last_out, int32_t* box_out) {
  const int64_t channels = NC > 0 ? NC : channels_rt;
  const int64_t x_base = (tile % tiles_x) * TILE, y_base = (tile / tiles_x) * TILE;
  const int64_t tw = std::min(TILE, width - x_base), th = std::min(TILE, height - y_base);
  alignas(64) T trans[TILE_PIXELS];
  alignas(64) int32_t count[TILE_PIXELS];
  alignas(64) int32_t live[TILE_PIXELS];
  std::vector<T> acc(channels * TILE_PIXELS, T(0));
  T* accp = acc.data();
  for (int64_t p = 0; p < TILE_PIXELS; ++p) { trans[p] = 1; count[p] = 0; live[p] = 1; }
  // Pixels still compositing, per tile row: rows whose pixels have all stopped are skipped (saturation is
  // spatially coherent, so whole rows stop together).
  int32_t alive_in_row[TILE];
  for (int64_t ly = 0; ly < TILE; ++ly) alive_in_row[ly] = ly < th ? static_cast<int32_t>(tw) : 0;
  const T alpha_max = T(ALPHA_MAX), alpha_min = T(ALPHA_MIN), t_min = T(TRANSMITTANCE_MIN);
  const T power_min = T(POWER_MIN), half = T(0.5);
  int64_t remaining = tw * th;
  const int64_t begin = tstart[tile], end = tstart[tile + 1];
  for (int64_t k = begin; k < end && remaining > 0; ++k) {
    const Splat<T> s = splat(eg[k], mean, conic, opac, col, channels, rect, x_base, y_base, tw, th);
    const int32_t index = static_cast<int32_t>(k - begin);
    // The box of the pixels this entry is composited into (those the backward pass revisits for it)
    int64_t box_x0 = TILE, box_x1 = -1, box_y0 = TILE, box_y1 = -1;
    for (int64_t y = s.y0; y <= s.y1; ++y) {
      if (alive_in_row[y - y_base] == 0) continue;
      const T dy = static_cast<T>(y) + half - s.my;
      const int64_t row = (y - y_base) * TILE - x_base;
      int32_t stopped = 0;
      int64_t row_x0 = TILE, row_x1 = -1;
#pragma omp simd reduction(+ : stopped) reduction(min : row_x0) reduction(max : row_x1)
      for (int64_t x = s.x0; x <= s.x1; ++x) {
        const int64_t p = row + x;
        const T dx = static_cast<T>(x) + half - s.mx;
        const T power = -half * (s.ca * dx * dx + s.cc * dy * dy) - s.cb * dx * dy;
        const T raw = s.o * predictgs::exp_approx(power);
        const T alpha = raw < alpha_max ? raw : alpha_max;
        const T t = trans[p];
        const T next_t = t * (1 - alpha);
        const bool drawn = live[p] != 0 && power <= 0 && power >= power_min && alpha >= alpha_min;
        const bool stop = drawn && next_t < t_min;  // the Inria kernel stops before this Gaussian
        const bool add = drawn && !stop;
        const T weight = alpha * t;
        for (int64_t ch = 0; ch < channels; ++ch) {
          T& a = accp[ch * TILE_PIXELS + p];
          a = add ? a + weight * s.color[ch] : a;
        }
        trans[p] = add ? next_t : t;
        count[p] = add ? index + 1 : (stop ? index : count[p]);
        live[p] = stop ? 0 : live[p];
        stopped += stop ? 1 : 0;
        row_x0 = add && x - x_base < row_x0 ? x - x_base : row_x0;
        row_x1 = add && x - x_base > row_x1 ? x - x_base : row_x1;
      }
      if (row_x1 >= 0) {
        box_x0 = std::min(box_x0, row_x0); box_x1 = std::max(box_x1, row_x1);
        box_y0 = std::min(box_y0, y - y_base); box_y1 = y - y_base;
      }
      remaining -= stopped;
      alive_in_row[y - y_base] -= stopped;
    }
    box_out[k] = pack_box(box_x0, box_x1, box_y0, box_y1);
  }
  store_tile(TILE, TILE_PIXELS, channels, x_base, y_base, tw, th, width, height, trans, count, accp, rgb_out, t_out,
             last_out);
}

}  // namespace

// -- vector-lane versions for float and three colour channels (training and evaluation) --------------------
// The same passes as forward_tile / backward_tile (their oracle in the parity tests), with every row covered
// by blocks of kLanes pixels (one register of predictgs::fvec, simd_lanes.h: 4 floats on baseline x86-64,
// 8 with AVX) and the pixels outside the splat's rectangle masked. The tile buffers have rows of V_ROW =
// TILE + 8 entries so that a block starting anywhere in a row stays in it; the padding pixels are never
// drawn. Forward results are the same bits as forward_tile's; in the backward pass each gradient is summed
// per lane over the rows, then over the lanes in order (a fixed order, independent of the thread count;
// it depends on kLanes, i.e. on whether the build targets AVX).
namespace {

constexpr int64_t V_ROW = TILE + 8;
constexpr int64_t V_PIXELS = TILE * V_ROW;

using predictgs::fvec;
using predictgs::ivec;

// Where a block's lanes live in a tile buffer: a run of kLanes pixels of one row (RunAt), or, for splats at
// most kHalf pixels wide, the same kHalf columns of two consecutive rows (PairAt: lanes 0..kHalf-1 the upper
// row, the others the lower). Each lane computes its pixel's operations whichever layout holds it, so the two
// give the same bits; a pair halves the blocks of the narrow splats that most rows of a frame draw (64% of
// the rows at 20k random Gaussians, 128x128).
constexpr int kHalf = predictgs::kLanes / 2;
bool row_pairs = true;  // off: every block a run of one row (the pairs' oracle in the tests)

struct RunAt {
  int64_t p;
  template <typename P>
  auto load(const P* buffer) const { return predictgs::load_v(buffer + p); }
  template <typename P, typename V>
  void store(P* buffer, V v) const { predictgs::store_v(buffer + p, v); }
};

struct PairAt {
  int64_t p;
  template <typename P>
  auto load(const P* buffer) const { return predictgs::load_halves(buffer + p, buffer + p + V_ROW); }
  template <typename P, typename V>
  void store(P* buffer, V v) const { predictgs::store_halves(buffer + p, buffer + p + V_ROW, v); }
};

void forward_tile_lanes(int64_t tile, int64_t tiles_x, int64_t width, int64_t height, const int64_t* tstart,
                        const int32_t* eg, const int32_t* rect, const float* mean, const float* conic,
                        const float* opac, const float* col, float* rgb_out, float* t_out, int32_t* last_out,
                        int32_t* box_out) {
  using namespace predictgs;
  const int64_t x_base = (tile % tiles_x) * TILE, y_base = (tile / tiles_x) * TILE;
  const int64_t tw = std::min(TILE, width - x_base), th = std::min(TILE, height - y_base);
  alignas(64) float trans[V_PIXELS];
  alignas(64) float acc[3 * V_PIXELS];
  alignas(64) int32_t count[V_PIXELS];
  alignas(64) int32_t live[V_PIXELS];
  for (int64_t p = 0; p < V_PIXELS; ++p) { trans[p] = 1; count[p] = 0; live[p] = 0; }
  for (int64_t p = 0; p < 3 * V_PIXELS; ++p) acc[p] = 0;
  for (int64_t ly = 0; ly < th; ++ly)
    for (int64_t lx = 0; lx < tw; ++lx) live[ly * V_ROW + lx] = 1;
  int32_t alive_in_row[TILE];
  for (int64_t ly = 0; ly < TILE; ++ly) alive_in_row[ly] = ly < th ? static_cast<int32_t>(tw) : 0;
  const fvec alpha_max = splat_f(float(ALPHA_MAX)), alpha_min = splat_f(float(ALPHA_MIN));
  const fvec t_min = splat_f(float(TRANSMITTANCE_MIN)), power_min = splat_f(float(POWER_MIN));
  const fvec zero = splat_f(0.0f);
  const float half = 0.5f;
  const ivec lanes = lane_index();
  const ivec pair_columns = lanes & (kHalf - 1), lower_row = lanes >= kHalf;
  constexpr uint32_t upper_bits = (1u << kHalf) - 1;
  int64_t remaining = tw * th;
  const int64_t begin = tstart[tile], end = tstart[tile + 1];
  for (int64_t k = begin; k < end && remaining > 0; ++k) {
    const Splat<float> s = splat(eg[k], mean, conic, opac, col, 3, rect, x_base, y_base, tw, th);
    const int32_t index = static_cast<int32_t>(k - begin);
    const ivec index_v = splat_i(index), next_index_v = splat_i(index + 1);
    const fvec mx = splat_f(s.mx), ca = splat_f(s.ca), cb = splat_f(s.cb), cc = splat_f(s.cc), o = splat_f(s.o);
    const fvec c0 = splat_f(s.color[0]), c1 = splat_f(s.color[1]), c2 = splat_f(s.color[2]);
    const ivec x_last = splat_i(static_cast<int32_t>(s.x1));
    // the box's columns: per lane over all rows, reduced once per entry; its rows: any lane added
    int64_t box_y0 = TILE, box_y1 = -1;
    ivec col_min_v = splat_i(TILE), col_max_v = splat_i(-1);
    // One block: lanes at `at`, columns x, rows' offsets dy. Returns the lanes added (bits), counts the
    // stopped ones per row half in `stop_bits`.
    auto composite = [&](const auto& at, ivec x, fvec dy, uint32_t& stop_bits) -> uint32_t {
      const fvec dx = __builtin_convertvector(x, fvec) + half - mx;
      const fvec power = -half * (ca * dx * dx + cc * dy * dy) - cb * dx * dy;
      const fvec raw = o * exp_v(power);
      const fvec alpha = select_v(raw < alpha_max, raw, alpha_max);
      const fvec t = at.load(trans);
      const fvec next_t = t * (1 - alpha);
      const ivec drawn = (x <= x_last) & (at.load(live) != 0) & (power <= zero) & (power >= power_min) &
                         (alpha >= alpha_min);
      const ivec stop = drawn & (next_t < t_min);  // the Inria kernel stops before this Gaussian
      const ivec add = drawn & ~stop;
      const fvec weight = alpha * t;
      const fvec a0 = at.load(acc), a1 = at.load(acc + V_PIXELS), a2 = at.load(acc + 2 * V_PIXELS);
      at.store(acc, select_v(add, a0 + weight * c0, a0));
      at.store(acc + V_PIXELS, select_v(add, a1 + weight * c1, a1));
      at.store(acc + 2 * V_PIXELS, select_v(add, a2 + weight * c2, a2));
      at.store(trans, select_v(add, next_t, t));
      at.store(count, select_v(add, next_index_v, select_v(stop, index_v, at.load(count))));
      at.store(live, select_v(stop, splat_i(0), at.load(live)));
      stop_bits = lane_bits(stop);
      const ivec lx = x - static_cast<int32_t>(x_base);
      col_min_v = min_v(col_min_v, select_v(add, lx, splat_i(TILE)));
      col_max_v = max_v(col_max_v, select_v(add, lx, splat_i(-1)));
      return lane_bits(add);
    };
    auto add_row = [&](int64_t ly, bool added, int32_t stopped) {
      if (added) {
        box_y0 = std::min(box_y0, ly); box_y1 = ly;
      }
      remaining -= stopped;
      alive_in_row[ly] -= stopped;
    };
    const bool narrow = row_pairs && s.x1 - s.x0 < kHalf;
    for (int64_t y = s.y0; y <= s.y1; ++y) {
      const int64_t ly = y - y_base;
      const fvec dy = splat_f(static_cast<float>(y) + half - s.my);
      if (narrow && y < s.y1) {  // rows y and y + 1 in one block
        if (alive_in_row[ly] == 0 && alive_in_row[ly + 1] == 0) { ++y; continue; }
        const fvec dy_lower = splat_f(static_cast<float>(y + 1) + half - s.my);
        const ivec x = splat_i(static_cast<int32_t>(s.x0)) + pair_columns;
        uint32_t stop_bits;
        const uint32_t added = composite(PairAt{ly * V_ROW + (s.x0 - x_base)}, x, select_v(lower_row, dy_lower, dy),
                                         stop_bits);
        add_row(ly, (added & upper_bits) != 0, __builtin_popcount(stop_bits & upper_bits));
        add_row(ly + 1, (added >> kHalf) != 0, __builtin_popcount(stop_bits >> kHalf));
        ++y;
        continue;
      }
      if (alive_in_row[ly] == 0) continue;
      int32_t stopped = 0;
      uint32_t added = 0;
      for (int64_t xb = s.x0; xb <= s.x1; xb += kLanes) {
        uint32_t stop_bits;
        added |= composite(RunAt{ly * V_ROW + (xb - x_base)}, splat_i(static_cast<int32_t>(xb)) + lanes, dy,
                           stop_bits);
        if (stop_bits != 0) stopped += __builtin_popcount(stop_bits);  // rare: a pixel saturates
      }
      add_row(ly, added != 0, stopped);
    }
    box_out[k] = pack_box(hmin(col_min_v), hmax(col_max_v), box_y0, box_y1);  // (TILE, -1) where none added
  }
  store_tile(V_ROW, V_PIXELS, 3, x_base, y_base, tw, th, width, height, trans, count, acc, rgb_out, t_out, last_out);
}

void backward_tile_lanes(int64_t tile, int64_t tiles_x, int64_t width, int64_t height, const int64_t* tstart,
                         const int32_t* eg, const int64_t* es, const int32_t* rect, const float* mean,
                         const float* conic, const float* opac, const float* col, const float* t_fin,
                         const int32_t* last_in, const int32_t* box_in, const float* v_rgb, const float* v_t,
                         float* slot_out) {
  using namespace predictgs;
  constexpr int64_t stride = 9;
  const int64_t x_base = (tile % tiles_x) * TILE, y_base = (tile / tiles_x) * TILE;
  const int64_t tw = std::min(TILE, width - x_base), th = std::min(TILE, height - y_base);
  alignas(64) float trans[V_PIXELS];
  alignas(64) float t_final[V_PIXELS];
  alignas(64) float v_trans[V_PIXELS];
  alignas(64) float behind[3 * V_PIXELS];
  alignas(64) float v[3 * V_PIXELS];
  alignas(64) int32_t count[V_PIXELS];
  for (int64_t p = 0; p < V_PIXELS; ++p) { trans[p] = 1; t_final[p] = 1; v_trans[p] = 0; count[p] = 0; }
  for (int64_t p = 0; p < 3 * V_PIXELS; ++p) { behind[p] = 0; v[p] = 0; }
  int32_t row_deepest[TILE] = {};
  const int32_t deepest = load_tile(V_ROW, V_PIXELS, 3, x_base, y_base, tw, th, width, height, t_fin, v_t, last_in,
                                    v_rgb, trans, t_final, v_trans, count, v, row_deepest);
  const fvec alpha_max = splat_f(float(ALPHA_MAX)), alpha_min = splat_f(float(ALPHA_MIN));
  const fvec power_min = splat_f(float(POWER_MIN)), zero = splat_f(0.0f);
  const float half = 0.5f;
  const ivec lanes = lane_index();
  const ivec pair_columns = lanes & (kHalf - 1), lower_row_lanes = lanes >= kHalf;
  const int64_t begin = tstart[tile], end = tstart[tile + 1];
  for (int64_t k = begin + deepest; k < end; ++k)  // entries behind every pixel's last: no gradient
    std::fill(slot_out + es[k] * stride, slot_out + (es[k] + 1) * stride, 0.0f);
  for (int64_t k = begin + deepest - 1; k >= begin; --k) {
    float* out = slot_out + es[k] * stride;
    const Box box = unpack_box(box_in[k]);
    if (box.empty()) {  // composited into no pixel: no gradient
      std::fill(out, out + stride, 0.0f);
      continue;
    }
    const Splat<float> s = splat(eg[k], mean, conic, opac, col, 3, rect, x_base, y_base, tw, th);
    const int32_t index = static_cast<int32_t>(k - begin);
    const ivec index_v = splat_i(index);
    const fvec mx = splat_f(s.mx), ca = splat_f(s.ca), cb = splat_f(s.cb), cc = splat_f(s.cc), o = splat_f(s.o);
    const fvec c0 = splat_f(s.color[0]), c1 = splat_f(s.color[1]), c2 = splat_f(s.color[2]);
    const ivec x_last = splat_i(static_cast<int32_t>(x_base + box.x1));
    // One block: lanes at `at`, columns x, rows' offsets dy; updates the buffers and returns the nine
    // gradient contributions (mean x, y, conic a, b, c, opacity, colour) of its lanes, zero where not drawn.
    auto contributions = [&](const auto& at, ivec x, fvec dy, fvec (&g)[9]) {
      const fvec dx = __builtin_convertvector(x, fvec) + half - mx;
      const fvec power = -half * (ca * dx * dx + cc * dy * dy) - cb * dx * dy;
      const fvec vis = exp_v(power);
      const fvec raw = o * vis;
      const fvec alpha = select_v(raw < alpha_max, raw, alpha_max);
      const ivec drawn = (x <= x_last) & (index_v < at.load(count)) & (power <= zero) & (power >= power_min) &
                         (alpha >= alpha_min);
      const fvec keep = 1 - alpha;
      const fvec tr = at.load(trans);
      const fvec t_here = tr / keep;  // transmittance in front of this Gaussian
      const fvec weight = alpha * t_here;
      fvec d_alpha = -at.load(t_final) / keep * at.load(v_trans);
      const fvec v0 = at.load(v), v1 = at.load(v + V_PIXELS), v2 = at.load(v + 2 * V_PIXELS);
      const fvec b0 = at.load(behind), b1 = at.load(behind + V_PIXELS), b2 = at.load(behind + 2 * V_PIXELS);
      d_alpha += (c0 * t_here - b0 / keep) * v0;
      d_alpha += (c1 * t_here - b1 / keep) * v1;
      d_alpha += (c2 * t_here - b2 / keep) * v2;
      at.store(behind, select_v(drawn, b0 + c0 * weight, b0));
      at.store(behind + V_PIXELS, select_v(drawn, b1 + c1 * weight, b1));
      at.store(behind + 2 * V_PIXELS, select_v(drawn, b2 + c2 * weight, b2));
      g[6] = select_v(drawn, weight * v0, zero);
      g[7] = select_v(drawn, weight * v1, zero);
      g[8] = select_v(drawn, weight * v2, zero);
      at.store(trans, select_v(drawn, t_here, tr));
      // clamp(max=0.99) passes no gradient where it clamps
      const ivec through = drawn & (raw <= alpha_max);
      const fvec d_power = select_v(through, d_alpha * alpha, zero);
      g[5] = select_v(through, d_alpha * vis, zero);
      g[0] = select_v(through, d_power * (ca * dx + cb * dy), zero);
      g[1] = select_v(through, d_power * (cb * dx + cc * dy), zero);
      g[2] = select_v(through, d_power * (-half * dx * dx), zero);
      g[3] = select_v(through, d_power * (-dx * dy), zero);
      g[4] = select_v(through, d_power * (-half * dy * dy), zero);
    };
    fvec g[9];
    if (row_pairs && box.x1 - box.x0 < kHalf) {
      // A narrow box: two rows per block. Each column's sums take the rows in order, as in the wide case
      // (lane l there holds column l over the rows, lanes past the box add zeros), so that the gradients
      // are the same bits: per half-register accumulators, the upper row's half added before the lower's.
      half_f sums[9] = {};
      const ivec x = splat_i(static_cast<int32_t>(x_base + box.x0)) + pair_columns;
      for (int64_t ly = box.y0; ly <= box.y1; ++ly) {
        const bool upper_row = index < row_deepest[ly];
        const fvec dy = splat_f(static_cast<float>(y_base + ly) + half - s.my);
        if (ly == box.y1) {  // the last row alone
          if (!upper_row) break;
          contributions(RunAt{ly * V_ROW + box.x0}, splat_i(static_cast<int32_t>(x_base + box.x0)) + lanes, dy, g);
          for (int i = 0; i < 9; ++i) sums[i] += upper_half(g[i]);
          break;
        }
        const bool lower_row = index < row_deepest[ly + 1];
        if (upper_row || lower_row) {
          const fvec dy_lower = splat_f(static_cast<float>(y_base + ly + 1) + half - s.my);
          contributions(PairAt{ly * V_ROW + box.x0}, x, select_v(lower_row_lanes, dy_lower, dy), g);
          if (upper_row)
            for (int i = 0; i < 9; ++i) sums[i] += upper_half(g[i]);
          if (lower_row)
            for (int i = 0; i < 9; ++i) sums[i] += lower_half(g[i]);
        }
        ++ly;
      }
      for (int i = 0; i < 9; ++i) out[i] = sum_v(join_halves(sums[i], half_f{}));
      continue;
    }
    fvec sums[9] = {zero, zero, zero, zero, zero, zero, zero, zero, zero};
    // only the pixels the forward pass composited this entry into can be drawn here
    for (int64_t ly = box.y0; ly <= box.y1; ++ly) {
      if (index >= row_deepest[ly]) continue;
      const fvec dy = splat_f(static_cast<float>(y_base + ly) + half - s.my);
      for (int64_t lxb = box.x0; lxb <= box.x1; lxb += kLanes) {
        contributions(RunAt{ly * V_ROW + lxb}, splat_i(static_cast<int32_t>(x_base + lxb)) + lanes, dy, g);
        for (int i = 0; i < 9; ++i) sums[i] += g[i];
      }
    }
    for (int i = 0; i < 9; ++i) out[i] = sum_v(sums[i]);
  }
}

}  // namespace

// The vector-lane tile passes are used for float and three channels unless turned off (parity tests compare
// them with the generic passes in one process).
namespace {
bool vectorised = true;

// forward_lanes / backward_lanes: the vector-lane pass where there is one (float), else false (the generic
// pass)
template <typename T>
bool forward_lanes(int64_t, int64_t, int64_t, int64_t, const int64_t*, const int32_t*, const int32_t*, const T*,
                   const T*, const T*, const T*, T*, T*, int32_t*, int32_t*) {
  return false;
}
bool forward_lanes(int64_t tile, int64_t tiles_x, int64_t width, int64_t height, const int64_t* tstart,
                   const int32_t* eg, const int32_t* rect, const float* mean, const float* conic, const float* opac,
                   const float* col, float* rgb_out, float* t_out, int32_t* last_out, int32_t* box_out) {
  forward_tile_lanes(tile, tiles_x, width, height, tstart, eg, rect, mean, conic, opac, col, rgb_out, t_out, last_out,
                     box_out);
  return true;
}
template <typename T>
bool backward_lanes(int64_t, int64_t, int64_t, int64_t, const int64_t*, const int32_t*, const int64_t*,
                    const int32_t*, const T*, const T*, const T*, const T*, const T*, const int32_t*, const int32_t*,
                    const T*, const T*, T*) {
  return false;
}
bool backward_lanes(int64_t tile, int64_t tiles_x, int64_t width, int64_t height, const int64_t* tstart,
                    const int32_t* eg, const int64_t* es, const int32_t* rect, const float* mean, const float* conic,
                    const float* opac, const float* col, const float* t_fin, const int32_t* last_in,
                    const int32_t* box_in, const float* v_rgb, const float* v_t, float* slot_out) {
  backward_tile_lanes(tile, tiles_x, width, height, tstart, eg, es, rect, mean, conic, opac, col, t_fin, last_in,
                      box_in, v_rgb, v_t, slot_out);
  return true;
}
}  // namespace

void set_vectorised(bool on) { vectorised = on; }
void set_row_pairs(bool on) { row_pairs = on; }

// Returns rgb [C,H,W] (without background), final transmittance [H,W], and per pixel the number of list
// entries of its tile that the backward pass must revisit (int32 [H,W]).
std::vector<torch::Tensor> rasterize_forward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opacities,
                                             torch::Tensor colors, torch::Tensor tile_start,
                                             torch::Tensor entry_gaussian, torch::Tensor rects, int64_t width,
                                             int64_t height) {
  check_input(means2d, "means2d", 2);
  check_input(colors, "colors", 2);
  const int64_t channels = colors.size(1);
  const int64_t tiles_x = ceil_div(width, TILE), tiles_y = ceil_div(height, TILE);
  TORCH_CHECK(tile_start.numel() == tiles_x * tiles_y + 1, "tile_start does not match the image size");
  auto rgb = torch::empty({channels, height, width}, colors.options());
  auto final_t = torch::empty({height, width}, colors.options());
  auto last = torch::empty({height, width}, torch::kInt32);
  // per list entry, the box (tile coordinates, packed) of the pixels it was composited into; written for the
  // entries the pass reached, which include every entry the backward pass visits
  auto box = torch::empty({entry_gaussian.numel()}, torch::kInt32);
  const int64_t* tstart = tile_start.data_ptr<int64_t>();
  const int32_t* eg = entry_gaussian.data_ptr<int32_t>();
  const int32_t* rect = rects.data_ptr<int32_t>();
  int32_t* last_out = last.data_ptr<int32_t>();
  int32_t* box_out = box.data_ptr<int32_t>();
  AT_DISPATCH_FLOATING_TYPES(colors.scalar_type(), "rasterize_forward", [&] {
    const scalar_t* mean = means2d.data_ptr<scalar_t>();
    const scalar_t* conic = conics.data_ptr<scalar_t>();
    const scalar_t* opac = opacities.data_ptr<scalar_t>();
    const scalar_t* col = colors.data_ptr<scalar_t>();
    scalar_t* rgb_out = rgb.data_ptr<scalar_t>();
    scalar_t* t_out = final_t.data_ptr<scalar_t>();
    parallel_interleaved(tiles_x * tiles_y, [&](int64_t tile) {
      if (channels == 3 && vectorised &&
          forward_lanes(tile, tiles_x, width, height, tstart, eg, rect, mean, conic, opac, col, rgb_out, t_out,
                        last_out, box_out))
        return;
      if (channels == 3)
        forward_tile<scalar_t, 3>(tile, tiles_x, width, height, channels, tstart, eg, rect, mean, conic, opac, col,
                                  rgb_out, t_out, last_out, box_out);
      else
        forward_tile<scalar_t, 0>(tile, tiles_x, width, height, channels, tstart, eg, rect, mean, conic, opac, col,
                                  rgb_out, t_out, last_out, box_out);
    });
  });
  return {rgb, final_t, last, box};
}

// -- backward -----------------------------------------------------------------------------------------------
namespace {

// Walks one tile's list back to front and writes each entry's gradient (d mean 2, d conic 3, d opacity,
// d colour C) into its slot.
template <typename T, int NC>
void backward_tile(int64_t tile, int64_t tiles_x, int64_t width, int64_t height, int64_t channels_rt,
                   const int64_t* tstart, const int32_t* eg, const int64_t* es, const int32_t* rect, const T* mean,
                   const T* conic, const T* opac, const T* col, const T* t_fin, const int32_t* last_in,
                   const int32_t* box_in, const T* v_rgb, const T* v_t, T* slot_out) {
  const int64_t channels = NC > 0 ? NC : channels_rt;
  const int64_t stride = 6 + channels;
  const int64_t x_base = (tile % tiles_x) * TILE, y_base = (tile / tiles_x) * TILE;
  const int64_t tw = std::min(TILE, width - x_base), th = std::min(TILE, height - y_base);
  alignas(64) T trans[TILE_PIXELS];
  alignas(64) T t_final[TILE_PIXELS];
  alignas(64) T v_trans[TILE_PIXELS];
  alignas(64) int32_t count[TILE_PIXELS];
  std::vector<T> behind(channels * TILE_PIXELS, T(0)), v(channels * TILE_PIXELS, T(0)), grad(stride);
  T* behindp = behind.data();
  T* vp = v.data();
  int32_t row_deepest[TILE] = {};  // rows none of whose pixels reach an entry are skipped
  for (int64_t p = 0; p < TILE_PIXELS; ++p) { trans[p] = 1; t_final[p] = 1; v_trans[p] = 0; count[p] = 0; }
  const int32_t deepest = load_tile(TILE, TILE_PIXELS, channels, x_base, y_base, tw, th, width, height, t_fin, v_t,
                                    last_in, v_rgb, trans, t_final, v_trans, count, vp, row_deepest);
  const T alpha_max = T(ALPHA_MAX), alpha_min = T(ALPHA_MIN), power_min = T(POWER_MIN), half = T(0.5);
  const int64_t begin = tstart[tile], end = tstart[tile + 1];
  for (int64_t k = begin + deepest; k < end; ++k)  // entries behind every pixel's last: no gradient
    std::fill(slot_out + es[k] * stride, slot_out + (es[k] + 1) * stride, T(0));
  for (int64_t k = begin + deepest - 1; k >= begin; --k) {
    const Box box = unpack_box(box_in[k]);
    if (box.empty()) {  // composited into no pixel: no gradient
      std::fill(slot_out + es[k] * stride, slot_out + (es[k] + 1) * stride, T(0));
      continue;
    }
    Splat<T> s = splat(eg[k], mean, conic, opac, col, channels, rect, x_base, y_base, tw, th);
    // only the pixels the forward pass composited this entry into can be drawn here
    s.x0 = x_base + box.x0; s.x1 = x_base + box.x1; s.y0 = y_base + box.y0; s.y1 = y_base + box.y1;
    const int32_t index = static_cast<int32_t>(k - begin);
    T g_mx = 0, g_my = 0, g_ca = 0, g_cb = 0, g_cc = 0, g_o = 0, g_c0 = 0, g_c1 = 0, g_c2 = 0;
    std::fill(grad.begin(), grad.end(), T(0));
    for (int64_t y = s.y0; y <= s.y1; ++y) {
      if (index >= row_deepest[y - y_base]) continue;
      const T dy = static_cast<T>(y) + half - s.my;
      const int64_t row = (y - y_base) * TILE - x_base;
#pragma omp simd reduction(+ : g_mx, g_my, g_ca, g_cb, g_cc, g_o, g_c0, g_c1, g_c2)
      for (int64_t x = s.x0; x <= s.x1; ++x) {
        const int64_t p = row + x;
        const T dx = static_cast<T>(x) + half - s.mx;
        const T power = -half * (s.ca * dx * dx + s.cc * dy * dy) - s.cb * dx * dy;
        const T vis = predictgs::exp_approx(power);
        const T raw = s.o * vis;
        const T alpha = raw < alpha_max ? raw : alpha_max;
        const bool drawn = index < count[p] && power <= 0 && power >= power_min && alpha >= alpha_min;
        const T keep = 1 - alpha;
        const T t_here = trans[p] / keep;  // transmittance in front of this Gaussian
        const T weight = alpha * t_here;
        T d_alpha = -t_final[p] / keep * v_trans[p];
        if constexpr (NC == 3) {
          const T v0 = vp[p], v1 = vp[TILE_PIXELS + p], v2 = vp[2 * TILE_PIXELS + p];
          T& b0 = behindp[p];
          T& b1 = behindp[TILE_PIXELS + p];
          T& b2 = behindp[2 * TILE_PIXELS + p];
          d_alpha += (s.color[0] * t_here - b0 / keep) * v0;
          d_alpha += (s.color[1] * t_here - b1 / keep) * v1;
          d_alpha += (s.color[2] * t_here - b2 / keep) * v2;
          b0 = drawn ? b0 + s.color[0] * weight : b0;
          b1 = drawn ? b1 + s.color[1] * weight : b1;
          b2 = drawn ? b2 + s.color[2] * weight : b2;
          g_c0 += drawn ? weight * v0 : T(0);
          g_c1 += drawn ? weight * v1 : T(0);
          g_c2 += drawn ? weight * v2 : T(0);
        } else {
          for (int64_t ch = 0; ch < channels; ++ch) {
            const T vc = vp[ch * TILE_PIXELS + p];
            T& b = behindp[ch * TILE_PIXELS + p];
            d_alpha += (s.color[ch] * t_here - b / keep) * vc;
            b = drawn ? b + s.color[ch] * weight : b;
          }
        }
        trans[p] = drawn ? t_here : trans[p];
        // clamp(max=0.99) passes no gradient where it clamps
        const bool through = drawn && raw <= alpha_max;
        const T d_power = through ? d_alpha * alpha : T(0);
        g_o += through ? d_alpha * vis : T(0);
        g_mx += d_power * (s.ca * dx + s.cb * dy);
        g_my += d_power * (s.cb * dx + s.cc * dy);
        g_ca += d_power * (-half * dx * dx);
        g_cb += d_power * (-dx * dy);
        g_cc += d_power * (-half * dy * dy);
      }
      if constexpr (NC != 3) {  // other channel counts: the colour gradients in a second pass over the row
        for (int64_t ch = 0; ch < channels; ++ch) {
          T g_c = 0;
          const T* vrow = vp + ch * TILE_PIXELS;
#pragma omp simd reduction(+ : g_c)
          for (int64_t x = s.x0; x <= s.x1; ++x) {
            const int64_t p = row + x;
            const T dx = static_cast<T>(x) + half - s.mx;
            const T power = -half * (s.ca * dx * dx + s.cc * dy * dy) - s.cb * dx * dy;
            const T raw = s.o * predictgs::exp_approx(power);
            const T alpha = raw < alpha_max ? raw : alpha_max;
            const bool drawn = index < count[p] && power <= 0 && power >= power_min && alpha >= alpha_min;
            g_c += drawn ? alpha * trans[p] * vrow[p] : T(0);  // trans[p]: in front of this Gaussian now
          }
          grad[6 + ch] += g_c;
        }
      }
    }
    if constexpr (NC == 3) { grad[6] = g_c0; grad[7] = g_c1; grad[8] = g_c2; }
    T* out = slot_out + es[k] * stride;
    out[0] = g_mx; out[1] = g_my; out[2] = g_ca; out[3] = g_cb; out[4] = g_cc; out[5] = g_o;
    for (int64_t ch = 0; ch < channels; ++ch) out[6 + ch] = grad[6 + ch];
  }
}

}  // namespace

// Gradients of the loss with respect to means2d [N,2], conics [N,3], opacities [N] and colors [N,C], given
// those of rgb [C,H,W] and of the final transmittance [H,W].
std::vector<torch::Tensor> rasterize_backward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opacities,
                                              torch::Tensor colors, torch::Tensor tile_start,
                                              torch::Tensor entry_gaussian, torch::Tensor entry_slot,
                                              torch::Tensor gauss_slot_start, torch::Tensor rects,
                                              torch::Tensor final_t, torch::Tensor last, torch::Tensor box,
                                              torch::Tensor grad_rgb, torch::Tensor grad_t, int64_t width,
                                              int64_t height) {
  check_input(grad_rgb, "grad_rgb", 3);
  check_input(box, "box", 1);
  TORCH_CHECK(box.numel() == entry_gaussian.numel() && box.scalar_type() == torch::kInt32,
              "box does not match the tile lists");
  check_input(grad_t, "grad_t", 2);
  const int64_t n = means2d.size(0), channels = colors.size(1);
  const int64_t stride = 6 + channels;
  const int64_t tiles_x = ceil_div(width, TILE), tiles_y = ceil_div(height, TILE);
  const int64_t total = entry_gaussian.numel();
  auto slots = torch::empty({total, stride}, colors.options());  // every slot is written below
  const int64_t* tstart = tile_start.data_ptr<int64_t>();
  const int32_t* eg = entry_gaussian.data_ptr<int32_t>();
  const int64_t* es = entry_slot.data_ptr<int64_t>();
  const int64_t* gslot = gauss_slot_start.data_ptr<int64_t>();
  const int32_t* rect = rects.data_ptr<int32_t>();
  const int32_t* last_in = last.data_ptr<int32_t>();
  const int32_t* box_in = box.data_ptr<int32_t>();
  auto grad_means = torch::zeros({n, 2}, colors.options());
  auto grad_conics = torch::zeros({n, 3}, colors.options());
  auto grad_opac = torch::zeros({n}, colors.options());
  auto grad_colors = torch::zeros({n, channels}, colors.options());

  AT_DISPATCH_FLOATING_TYPES(colors.scalar_type(), "rasterize_backward", [&] {
    const scalar_t* mean = means2d.data_ptr<scalar_t>();
    const scalar_t* conic = conics.data_ptr<scalar_t>();
    const scalar_t* opac = opacities.data_ptr<scalar_t>();
    const scalar_t* col = colors.data_ptr<scalar_t>();
    const scalar_t* t_fin = final_t.data_ptr<scalar_t>();
    const scalar_t* v_rgb = grad_rgb.data_ptr<scalar_t>();
    const scalar_t* v_t = grad_t.data_ptr<scalar_t>();
    scalar_t* slot_out = slots.data_ptr<scalar_t>();
    parallel_interleaved(tiles_x * tiles_y, [&](int64_t tile) {
      if (channels == 3 && vectorised &&
          backward_lanes(tile, tiles_x, width, height, tstart, eg, es, rect, mean, conic, opac, col, t_fin, last_in,
                         box_in, v_rgb, v_t, slot_out))
        return;
      if (channels == 3)
        backward_tile<scalar_t, 3>(tile, tiles_x, width, height, channels, tstart, eg, es, rect, mean, conic, opac,
                                   col, t_fin, last_in, box_in, v_rgb, v_t, slot_out);
      else
        backward_tile<scalar_t, 0>(tile, tiles_x, width, height, channels, tstart, eg, es, rect, mean, conic, opac,
                                   col, t_fin, last_in, box_in, v_rgb, v_t, slot_out);
    });

    // Sum each Gaussian's slots in slot order: the same order whatever the number of threads.
    scalar_t* gm = grad_means.data_ptr<scalar_t>();
    scalar_t* gc = grad_conics.data_ptr<scalar_t>();
    scalar_t* go = grad_opac.data_ptr<scalar_t>();
    scalar_t* gcol = grad_colors.data_ptr<scalar_t>();
    at::parallel_for(0, n, 1024, [&](int64_t b, int64_t e) {
      std::vector<scalar_t> sum(stride);
      for (int64_t g = b; g < e; ++g) {
        if (gslot[g + 1] == gslot[g]) continue;
        std::fill(sum.begin(), sum.end(), scalar_t(0));
        for (int64_t s = gslot[g]; s < gslot[g + 1]; ++s)
          for (int64_t i = 0; i < stride; ++i) sum[i] += slot_out[s * stride + i];
        gm[2 * g] = sum[0]; gm[2 * g + 1] = sum[1];
        gc[3 * g] = sum[2]; gc[3 * g + 1] = sum[3]; gc[3 * g + 2] = sum[4];
        go[g] = sum[5];
        for (int64_t ch = 0; ch < channels; ++ch) gcol[g * channels + ch] = sum[6 + ch];
      }
    });
  });
  return {grad_means, grad_conics, grad_opac, grad_colors};
}
