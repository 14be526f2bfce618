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

#include <algorithm>
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

// Rows and renormalised weights of the 2^D corners of point x at level l. Returns false for points outside
// the box (no contribution). D is a template parameter so that the corner loops unroll.
template <typename T, int D>
inline bool corners(const Levels& lv, int64_t l, const T* x, bool inside, int64_t* rows, T* weight) {
  constexpr int n_corners = 1 << D;
  if (!inside) return false;
  const int64_t R = lv.resolution[l];
  const T res = static_cast<T>(R);
  int64_t corner[MAX_DIMS][2];
  T w_axis[MAX_DIMS][2];
  bool border[MAX_DIMS][2];
  for (int a = 0; a < D; ++a) {
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
  const int64_t* mult = lv.multiplier + l * D;
  // per axis and side: the row term (dense: c R^axis, hashed: c prime_axis, both under the mask)
  int32_t term[MAX_DIMS][2];
  for (int a = 0; a < D; ++a)
    for (int h = 0; h < 2; ++h)
      term[a][h] = static_cast<int32_t>((std::max<int64_t>(corner[a][h], 0) * mult[a]) & mask);
  T total = 0;
  for (int c = 0; c < n_corners; ++c) {
    T w = w_axis[0][c & 1];
    bool excluded = border[0][c & 1];
    int32_t row = term[0][c & 1];
    for (int a = 1; a < D; ++a) {
      const int h = (c >> a) & 1;
      w = w * w_axis[a][h];
      excluded = excluded || border[a][h];
      row = dense ? row + term[a][h] : (row ^ term[a][h]);
    }
    w = excluded ? T(0) : w;
    weight[c] = w;
    total += w;
    rows[c] = static_cast<int64_t>(row) + lv.offset[l];
  }
  const T norm = total > 0 ? total : T(1e-9);
  for (int c = 0; c < n_corners; ++c) weight[c] = weight[c] / norm;
  return true;
}

template <typename T, int D>
inline bool point_inside(const T* x) {
  bool inside = true;
  for (int a = 0; a < D; ++a) inside = inside && x[a] >= 0 && x[a] <= 1;
  return inside;
}

// The lookup of points [begin, end) (F features per level; 0: `features` at run time). A point's corners are
// found for every level first and their rows prefetched, then the features summed: the tables (megabytes)
// do not fit the caches, and the rows of all levels are then fetched from memory at once. TT: the table's
// type, T or int8 (the coding path's sign tables: +-1 converted to T exactly, so the same sums, from tables
// an eighth the size of float64 ones).
constexpr int64_t PREFETCH_LEVELS = 32;

template <typename T, typename TT, int D, int F>
void forward_points(const Levels& lv, const T* xp, int64_t x_stride, const int64_t* col, const TT* tab,
                    int64_t features_rt, T* o, int64_t out_width, int64_t out_col, int64_t begin, int64_t end) {
  constexpr int n_corners = 1 << D;
  const int64_t features = F > 0 ? F : features_rt;
  int64_t rows[PREFETCH_LEVELS][MAX_CORNERS];
  T weight[PREFETCH_LEVELS][MAX_CORNERS], pt[MAX_DIMS];
  bool found[PREFETCH_LEVELS];
  for (int64_t i = begin; i < end; ++i) {
    for (int a = 0; a < D; ++a) pt[a] = xp[i * x_stride + col[a]];
    const bool inside = point_inside<T, D>(pt);
    T* dst = o + i * out_width + out_col;
    for (int64_t l0 = 0; l0 < lv.count; l0 += PREFETCH_LEVELS) {
      const int64_t l1 = std::min(lv.count, l0 + PREFETCH_LEVELS);
      for (int64_t l = l0; l < l1; ++l) {
        found[l - l0] = corners<T, D>(lv, l, pt, inside, rows[l - l0], weight[l - l0]);
        if (found[l - l0])
          for (int c = 0; c < n_corners; ++c) __builtin_prefetch(tab + rows[l - l0][c] * features);
      }
      for (int64_t l = l0; l < l1; ++l) {
        T* f_out = dst + l * features;
        if (!found[l - l0]) {
          for (int64_t f = 0; f < features; ++f) f_out[f] = 0;
          continue;
        }
        const int64_t* r = rows[l - l0];
        const T* w = weight[l - l0];
        for (int64_t f = 0; f < features; ++f) {
          T s = 0;
          for (int c = 0; c < n_corners; ++c) s += w[c] * static_cast<T>(tab[r[c] * features + f]);
          f_out[f] = s;
        }
      }
    }
  }
}

// The table gradient of levels [begin, end): every point in index order, its corners in order. Points go in
// batches whose corners are found and whose rows are prefetched before the batch's sums (in the same order).
constexpr int64_t PREFETCH_POINTS = 16;

template <typename T, int D, int F>
void backward_levels(const Levels& lv, const T* xp, int64_t n, int64_t x_stride, const int64_t* col, const T* g,
                     int64_t features_rt, int64_t out_width, int64_t out_col, T* gt, int64_t begin, int64_t end) {
  constexpr int n_corners = 1 << D;
  const int64_t features = F > 0 ? F : features_rt;
  int64_t rows[PREFETCH_POINTS][MAX_CORNERS];
  T weight[PREFETCH_POINTS][MAX_CORNERS], pt[MAX_DIMS];
  bool found[PREFETCH_POINTS];
  for (int64_t l = begin; l < end; ++l)
    for (int64_t i0 = 0; i0 < n; i0 += PREFETCH_POINTS) {
      const int64_t i1 = std::min(n, i0 + PREFETCH_POINTS);
      for (int64_t i = i0; i < i1; ++i) {
        for (int a = 0; a < D; ++a) pt[a] = xp[i * x_stride + col[a]];
        found[i - i0] = corners<T, D>(lv, l, pt, point_inside<T, D>(pt), rows[i - i0], weight[i - i0]);
        if (found[i - i0])
          for (int c = 0; c < n_corners; ++c) __builtin_prefetch(gt + rows[i - i0][c] * features, 1);
      }
      for (int64_t i = i0; i < i1; ++i) {
        if (!found[i - i0]) continue;
        const T* g_in = g + i * out_width + out_col + l * features;
        for (int c = 0; c < n_corners; ++c)
          for (int64_t f = 0; f < features; ++f) gt[rows[i - i0][c] * features + f] += weight[i - i0][c] * g_in[f];
      }
    }
}

// The grid's dimensions and features as template arguments of `Kernel<T, D, F>::run(args...)` (4 features,
// HAC's, unrolled; others at run time).
template <template <typename, int, int> class Kernel, typename T, typename... Args>
void dispatch_shape(int64_t dims, int64_t features, Args&&... args) {
  const bool four = features == 4;
  switch (dims) {
    case 1: four ? Kernel<T, 1, 4>::run(args...) : Kernel<T, 1, 0>::run(args...); break;
    case 2: four ? Kernel<T, 2, 4>::run(args...) : Kernel<T, 2, 0>::run(args...); break;
    default: four ? Kernel<T, 3, 4>::run(args...) : Kernel<T, 3, 0>::run(args...); break;
  }
}

template <typename T, int D, int F>
struct ForwardKernel {
  // tab: T, or int8 where sign_table
  static void run(const Levels& lv, const T* xp, int64_t n, int64_t x_stride, const int64_t* col, const void* tab,
                  bool sign_table, int64_t features, T* o, int64_t out_width, int64_t out_col) {
    at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
      if (sign_table)
        forward_points<T, int8_t, D, F>(lv, xp, x_stride, col, static_cast<const int8_t*>(tab), features, o,
                                        out_width, out_col, begin, end);
      else
        forward_points<T, T, D, F>(lv, xp, x_stride, col, static_cast<const T*>(tab), features, o, out_width,
                                   out_col, begin, end);
    });
  }
};

template <typename T, int D, int F>
struct BackwardKernel {
  static void run(const Levels& lv, const T* xp, int64_t n, int64_t x_stride, const int64_t* col, const T* g,
                  int64_t features, int64_t out_width, int64_t out_col, T* gt) {
    at::parallel_for(0, lv.count, 1, [&](int64_t begin, int64_t end) {
      backward_levels<T, D, F>(lv, xp, n, x_stride, col, g, features, out_width, out_col, gt, begin, end);
    });
  }
};

}  // namespace

// x [N, d] in [0,1]^d (columns `columns` of a wider array: x_stride elements per point), table [E, F] (x's dtype,
// or int8 +-1) -> out[:, out_col : out_col + L*F] of an [N, out_width] array (written in place).
void hashgrid_forward(torch::Tensor x, torch::Tensor columns, torch::Tensor table, torch::Tensor resolution,
                      torch::Tensor offset, torch::Tensor multiplier, torch::Tensor mask, torch::Tensor dense,
                      torch::Tensor out, int64_t out_col) {
  TORCH_CHECK(x.is_contiguous() && table.is_contiguous() && out.is_contiguous(), "tensors must be contiguous");
  const bool sign_table = table.scalar_type() == torch::kChar;
  TORCH_CHECK((sign_table || x.scalar_type() == table.scalar_type()) && out.scalar_type() == x.scalar_type(),
              "positions and output must share a dtype, and the table too unless it is int8");
  const Levels lv = read_levels(resolution, offset, multiplier, mask, dense);
  TORCH_CHECK(columns.numel() == lv.dims && columns.scalar_type() == torch::kInt64, "one column per dimension");
  const int64_t n = x.size(0), x_stride = x.size(1), features = table.size(1), out_width = out.size(1);
  TORCH_CHECK(out_col + lv.count * features <= out_width, "output columns out of range");
  const int64_t* col = columns.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hashgrid_forward", [&] {
    using T = scalar_t;
    const T* xp = x.data_ptr<T>();
    const void* tab = table.data_ptr();
    T* o = out.data_ptr<T>();
    dispatch_shape<ForwardKernel, T>(lv.dims, features, lv, xp, n, x_stride, col, tab, sign_table, features, o,
                                     out_width, out_col);
  });
}

// The table gradient of hashgrid_forward: grad_table[E, F] += sum over points and corners of
// weight * grad_out[:, out_col + l*F + f] (accumulated in place).
void hashgrid_backward(torch::Tensor x, torch::Tensor columns, torch::Tensor grad_out, int64_t out_col,
                       torch::Tensor resolution, torch::Tensor offset, torch::Tensor multiplier, torch::Tensor mask,
                       torch::Tensor dense, torch::Tensor grad_table) {
  TORCH_CHECK(x.is_contiguous() && grad_out.is_contiguous() && grad_table.is_contiguous(),
              "tensors must be contiguous");
  const Levels lv = read_levels(resolution, offset, multiplier, mask, dense);
  const int64_t n = x.size(0), x_stride = x.size(1), features = grad_table.size(1), out_width = grad_out.size(1);
  const int64_t* col = columns.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "hashgrid_backward", [&] {
    using T = scalar_t;
    const T* xp = x.data_ptr<T>();
    const T* g = grad_out.data_ptr<T>();
    T* gt = grad_table.data_ptr<T>();
    dispatch_shape<BackwardKernel, T>(lv.dims, features, lv, xp, n, x_stride, col, g, features, out_width,
                                      out_col, gt);
  });
}
