// Binarised multi-resolution hash grid lookup (HAC's GridEncoder semantics), forward and table gradient, on
// the CPU. The semantics and the order of every operation follow BinaryHashGrid.lookup/reference_forward in
// predictgs/nn/hashgrid.py, the PyTorch reference these are tested against:
//   pos = x (R - 2) + 0.5 per axis; corners floor(pos) + {0, 1} capped at R - 1; corners on the lattice border
//   (0 or R - 1 on any axis) excluded and the other weights renormalised by their sum; dense levels indexed
//   row-major (x fastest), hashed levels by XOR_i (c_i * prime_i) & (size - 1); points outside [0,1]^d get 0.
// Forward: one point per iteration (independent). Table gradient: one level per unit of parallel work (each
// level owns its rows), the points visited in index order and the corners in order, so every row sums its
// contributions in the same order as the reference's index_add, whatever the number of threads.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int MAX_DIMS = 3;
constexpr int MAX_CORNERS = 1 << MAX_DIMS;

struct Levels {
  int64_t count = 0, dims = 0;
  const int64_t* resolution = nullptr;  // [L]
  const int64_t* offset = nullptr;      // [L] first row of the level
  const int64_t* multiplier = nullptr;  // [L, dims] dense stride R^axis, or the hash prime
  const int64_t* mask = nullptr;        // [L] -1 for dense levels, size - 1 for hashed ones
  const uint8_t* dense = nullptr;       // [L]
};

Levels read_levels(const torch::Tensor& resolution, const torch::Tensor& offset, const torch::Tensor& multiplier,
                   const torch::Tensor& mask, const torch::Tensor& dense) {
  for (const auto* t : {&resolution, &offset, &multiplier, &mask})
    TORCH_CHECK(t->scalar_type() == torch::kInt64 && t->is_contiguous() && t->device().is_cpu(),
                "level tables must be contiguous int64 CPU tensors");
  TORCH_CHECK(dense.scalar_type() == torch::kBool && dense.is_contiguous(), "dense must be a contiguous bool tensor");
  Levels lv;
  lv.count = resolution.numel();
  lv.dims = multiplier.size(1);
  TORCH_CHECK(lv.dims >= 1 && lv.dims <= MAX_DIMS, "hash grids have 1 to 3 dimensions");
  lv.resolution = resolution.data_ptr<int64_t>();
  lv.offset = offset.data_ptr<int64_t>();
  lv.multiplier = multiplier.data_ptr<int64_t>();
  lv.mask = mask.data_ptr<int64_t>();
  lv.dense = reinterpret_cast<const uint8_t*>(dense.data_ptr<bool>());
  return lv;
}

// Rows and renormalised weights of the 2^d corners of point x at level l. Returns false for points outside
// the box (no contribution).
template <typename T>
inline bool corners(const Levels& lv, int64_t l, const T* x, bool inside, int64_t* rows, T* weight) {
  const int64_t d = lv.dims, n_corners = int64_t(1) << d;
  if (!inside) return false;
  const int64_t R = lv.resolution[l];
  const T res = static_cast<T>(R);
  int64_t corner[MAX_DIMS][2];
  T w_axis[MAX_DIMS][2];
  bool border[MAX_DIMS][2];
  for (int64_t a = 0; a < d; ++a) {
    const T pos = x[a] * (res - T(2)) + T(0.5);
    const T base = std::floor(pos);
    const T frac = pos - base;
    int64_t low = static_cast<int64_t>(std::min<T>(std::max<T>(base, T(-1)), res - T(1)));
    corner[a][0] = low;
    corner[a][1] = std::min<int64_t>(low + 1, R - 1);
    w_axis[a][0] = T(1) - frac;
    w_axis[a][1] = frac;
    for (int h = 0; h < 2; ++h) border[a][h] = corner[a][h] == 0 || corner[a][h] == R - 1;
  }
  const bool dense = lv.dense[l] != 0;
  const int64_t mask = lv.mask[l];
  T total = 0;
  for (int64_t c = 0; c < n_corners; ++c) {
    T w = w_axis[0][c & 1];
    bool excluded = border[0][c & 1];
    int64_t term0 = (std::max<int64_t>(corner[0][c & 1], 0) * lv.multiplier[l * d]) & mask;
    int32_t row = static_cast<int32_t>(term0);
    for (int64_t a = 1; a < d; ++a) {
      const int h = (c >> a) & 1;
      w = w * w_axis[a][h];
      excluded = excluded || border[a][h];
      const int32_t term = static_cast<int32_t>((std::max<int64_t>(corner[a][h], 0) * lv.multiplier[l * d + a]) & mask);
      row = dense ? row + term : (row ^ term);
    }
    w = excluded ? T(0) : w;
    weight[c] = w;
    total += w;
    rows[c] = static_cast<int64_t>(row) + lv.offset[l];
  }
  const T norm = total > 0 ? total : T(1e-9);
  for (int64_t c = 0; c < n_corners; ++c) weight[c] = weight[c] / norm;
  return true;
}

template <typename T>
inline bool point_inside(const T* x, int64_t d) {
  bool inside = true;
  for (int64_t a = 0; a < d; ++a) inside = inside && x[a] >= 0 && x[a] <= 1;
  return inside;
}

}  // namespace

// x [N, d] in [0,1]^d (columns `columns` of a wider array: x_stride elements per point), table [E, F] ->
// out[:, out_col : out_col + L*F] of an [N, out_width] array (written in place).
void hashgrid_forward(torch::Tensor x, torch::Tensor columns, torch::Tensor table, torch::Tensor resolution,
                      torch::Tensor offset, torch::Tensor multiplier, torch::Tensor mask, torch::Tensor dense,
                      torch::Tensor out, int64_t out_col) {
  TORCH_CHECK(x.is_contiguous() && table.is_contiguous() && out.is_contiguous(), "tensors must be contiguous");
  TORCH_CHECK(x.scalar_type() == table.scalar_type() && out.scalar_type() == table.scalar_type(),
              "positions, table and output must share a dtype");
  const Levels lv = read_levels(resolution, offset, multiplier, mask, dense);
  TORCH_CHECK(columns.numel() == lv.dims && columns.scalar_type() == torch::kInt64, "one column per dimension");
  const int64_t n = x.size(0), x_stride = x.size(1), features = table.size(1), out_width = out.size(1);
  TORCH_CHECK(out_col + lv.count * features <= out_width, "output columns out of range");
  const int64_t* col = columns.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hashgrid_forward", [&] {
    using T = scalar_t;
    const T* xp = x.data_ptr<T>();
    const T* tab = table.data_ptr<T>();
    T* o = out.data_ptr<T>();
    at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
      int64_t rows[MAX_CORNERS];
      T weight[MAX_CORNERS], pt[MAX_DIMS];
      const int64_t n_corners = int64_t(1) << lv.dims;
      for (int64_t i = begin; i < end; ++i) {
        for (int64_t a = 0; a < lv.dims; ++a) pt[a] = xp[i * x_stride + col[a]];
        const bool inside = point_inside(pt, lv.dims);
        T* dst = o + i * out_width + out_col;
        for (int64_t l = 0; l < lv.count; ++l) {
          T* f_out = dst + l * features;
          if (!corners(lv, l, pt, inside, rows, weight)) {
            for (int64_t f = 0; f < features; ++f) f_out[f] = 0;
            continue;
          }
          for (int64_t f = 0; f < features; ++f) {
            T s = 0;
            for (int64_t c = 0; c < n_corners; ++c) s += weight[c] * tab[rows[c] * features + f];
            f_out[f] = s;
          }
        }
      }
    });
  });
}

// The table gradient of hashgrid_forward: grad_table[E, F] += sum over points and corners of
// weight * grad_out[:, out_col + l*F + f] (accumulated in place).
void hashgrid_backward(torch::Tensor x, torch::Tensor columns, torch::Tensor grad_out, int64_t out_col,
                       torch::Tensor resolution, torch::Tensor offset, torch::Tensor multiplier, torch::Tensor mask,
                       torch::Tensor dense, torch::Tensor grad_table) {
  TORCH_CHECK(x.is_contiguous() && grad_out.is_contiguous() && grad_table.is_contiguous(), "tensors must be contiguous");
  const Levels lv = read_levels(resolution, offset, multiplier, mask, dense);
  const int64_t n = x.size(0), x_stride = x.size(1), features = grad_table.size(1), out_width = grad_out.size(1);
  const int64_t* col = columns.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hashgrid_backward", [&] {
    using T = scalar_t;
    const T* xp = x.data_ptr<T>();
    const T* g = grad_out.data_ptr<T>();
    T* gt = grad_table.data_ptr<T>();
    at::parallel_for(0, lv.count, 1, [&](int64_t begin, int64_t end) {
      int64_t rows[MAX_CORNERS];
      T weight[MAX_CORNERS], pt[MAX_DIMS];
      const int64_t n_corners = int64_t(1) << lv.dims;
      for (int64_t l = begin; l < end; ++l)
        for (int64_t i = 0; i < n; ++i) {
          for (int64_t a = 0; a < lv.dims; ++a) pt[a] = xp[i * x_stride + col[a]];
          if (!corners(lv, l, pt, point_inside(pt, lv.dims), rows, weight)) continue;
          const T* g_in = g + i * out_width + out_col + l * features;
          for (int64_t c = 0; c < n_corners; ++c)
            for (int64_t f = 0; f < features; ++f) gt[rows[c] * features + f] += weight[c] * g_in[f];
        }
    });
  });
}
