// EWA projection of 3D Gaussians into one camera, forward and analytic backward, one Gaussian per
// iteration (independent, so any thread count gives the same bits). The formulas and the order of every
// operation follow predictgs/render/projection.py, the PyTorch reference this is tested against:
// near cull at z <= near, the Jacobian's x/z and y/z clamped to 1.3 x the half field of view, covariance
// dilated by eps2d, radius ceil(3 sqrt(lambda_max)), culled when the square misses the image.
//
// One definition serves a scalar T (float or double) and, for float, a vector of kLanes Gaussians
// (predictgs::fvec, simd_lanes.h): conditions become lane masks and branches selects, every lane performs
// the scalar code's operations in its order (no FMA contraction), so a lane gives the scalar code's bits.
// Blocks of kLanes Gaussians take the vector path, the rest of a chunk the scalar one.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

#include "simd_lanes.h"

namespace {

using predictgs::fvec;
using predictgs::ivec;
using predictgs::kLanes;

// What differs between a scalar and a vector of lanes: conditions (bool or a lane mask), selects, sqrt,
// ceil, finiteness, broadcasts and the conversion of the radius.
template <typename S>
struct ScalarOps {
  using M = bool;
  using I = int32_t;
  static S bc(S v) { return v; }
  static S sel(M m, S a, S b) { return m ? a : b; }
  static I sel(M m, I a, I b) { return m ? a : b; }
  static S sqrt(S x) { return std::sqrt(x); }
  static S ceil(S x) { return std::ceil(x); }
  static M finite(S x) { return std::isfinite(x); }
  static M both(M a, M b) { return a && b; }
  static I to_int(S x) { return static_cast<int32_t>(x); }
};

template <typename T>
struct Ops;
template <>
struct Ops<float> : ScalarOps<float> {};
template <>
struct Ops<double> : ScalarOps<double> {};
template <>
struct Ops<fvec> {
  using M = ivec;
  using I = ivec;
  static fvec bc(float v) {  // every lane v, -0 included (0 + v would give +0)
    fvec r;
    for (int l = 0; l < kLanes; ++l) r[l] = v;
    return r;
  }
  static fvec sel(M m, fvec a, fvec b) { return predictgs::select_v(m, a, b); }
  static ivec sel(M m, ivec a, ivec b) { return predictgs::select_v(m, a, b); }
  static fvec sqrt(fvec x) {  // correctly rounded, as std::sqrt
#if defined(__AVX__)
    return __builtin_ia32_sqrtps256(x);
#elif defined(__SSE2__)
    return __builtin_ia32_sqrtps(x);
#else
    for (int l = 0; l < kLanes; ++l) x[l] = std::sqrt(x[l]);
    return x;
#endif
  }
  static fvec ceil(fvec x) {
#if defined(__AVX__)
    return __builtin_ia32_roundps256(x, 0x0A);  // toward +infinity, no exceptions
#else
    for (int l = 0; l < kLanes; ++l) x[l] = std::ceil(x[l]);
    return x;
#endif
  }
  static M finite(fvec x) { return (x - x) == bc(0.0f); }  // inf - inf and NaN - NaN are NaN
  static M both(M a, M b) { return a & b; }
  static ivec to_int(fvec x) { return __builtin_convertvector(x, ivec); }  // truncation, as static_cast
};

// std::min / std::max with their exact rules (min(a, b) = b < a ? b : a, max(a, b) = a < b ? b : a).
template <typename T>
inline T min_of(T a, T b) { return Ops<T>::sel(b < a, b, a); }
template <typename T>
inline T max_of(T a, T b) { return Ops<T>::sel(a < b, b, a); }

template <typename S>
struct Camera {
  S R[9], t[3], fx, fy, cx, cy, lim_x_pos, lim_x_neg, lim_y_pos, lim_y_neg;
  Camera(const torch::Tensor& viewmat, const torch::Tensor& K, int64_t width, int64_t height) {
    auto vm = viewmat.accessor<S, 2>();
    auto k = K.accessor<S, 2>();
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 3; ++j) R[3 * i + j] = vm[i][j];
      t[i] = vm[i][3];
    }
    fx = k[0][0]; fy = k[1][1]; cx = k[0][2]; cy = k[1][2];
    lim_x_pos = S(1.3) * (S(width) - cx) / fx; lim_x_neg = S(1.3) * cx / fx;
    lim_y_pos = S(1.3) * (S(height) - cy) / fy; lim_y_neg = S(1.3) * cy / fy;
  }
};

// Rotation matrix (row-major) of a quaternion (w, x, y, z), normalised with the reference's clamp.
template <typename T>
inline void quat_rotation(const T* q, T* rot, T* unit, T& norm) {
  using L = Ops<T>;
  norm = L::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  const T n = max_of(norm, L::bc(1e-12f));
  for (int i = 0; i < 4; ++i) unit[i] = q[i] / n;
  const T w = unit[0], x = unit[1], y = unit[2], z = unit[3];
  rot[0] = 1 - 2 * (y * y + z * z); rot[1] = 2 * (x * y - w * z); rot[2] = 2 * (x * z + w * y);
  rot[3] = 2 * (x * y + w * z); rot[4] = 1 - 2 * (x * x + z * z); rot[5] = 2 * (y * z - w * x);
  rot[6] = 2 * (x * z - w * y); rot[7] = 2 * (y * z + w * x); rot[8] = 1 - 2 * (x * x + y * y);
}

// out = A * B (3x3 row-major); At/Bt: use the transpose. A or B may be the camera's scalars.
template <typename TO, typename TA, typename TB>
inline void mat3(const TA* A, bool At, const TB* B, bool Bt, TO* out) {
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      TO s{};
      for (int k = 0; k < 3; ++k) s += (At ? A[3 * k + i] : A[3 * i + k]) * (Bt ? B[3 * j + k] : B[3 * k + j]);
      out[3 * i + j] = s;
    }
}

// Everything the forward computes for one Gaussian (or one per lane), kept for the backward.
template <typename T>
struct Projected {
  using M = typename Ops<T>::M;
  T p[3], z_safe, rot[9], unit[4], qnorm, M_[9], cov_cam[9], J[6], a, b, c, det;
  M in_front, valid, pass_x, pass_y;
  T u_x, u_y;  // clamped x/z, y/z
};

template <typename T, typename S>
inline void project_one(const Camera<S>& cam, const T* mean, const T* quat, const T* scale, S near, S eps2d,
                        Projected<T>& P) {
  using L = Ops<T>;
  for (int i = 0; i < 3; ++i)
    P.p[i] = cam.R[3 * i] * mean[0] + cam.R[3 * i + 1] * mean[1] + cam.R[3 * i + 2] * mean[2] + cam.t[i];
  const T x = P.p[0], y = P.p[1], z = P.p[2];
  P.in_front = z > L::bc(near);
  P.z_safe = L::sel(P.in_front, z, L::bc(S(1)));
  quat_rotation(quat, P.rot, P.unit, P.qnorm);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) P.M_[3 * i + j] = P.rot[3 * i + j] * scale[j];
  T cov_world[9], tmp[9];
  mat3(P.M_, false, P.M_, true, cov_world);
  mat3(cam.R, false, cov_world, false, tmp);
  mat3(tmp, false, cam.R, true, P.cov_cam);
  const T zs = P.z_safe;
  const T ux = x / zs, uy = y / zs;
  const T lo_x = L::bc(-cam.lim_x_neg), hi_x = L::bc(cam.lim_x_pos);
  const T lo_y = L::bc(-cam.lim_y_neg), hi_y = L::bc(cam.lim_y_pos);
  P.u_x = min_of(max_of(ux, lo_x), hi_x);
  P.u_y = min_of(max_of(uy, lo_y), hi_y);
  P.pass_x = L::both(ux >= lo_x, ux <= hi_x);
  P.pass_y = L::both(uy >= lo_y, uy <= hi_y);
  const T tx = zs * P.u_x, ty = zs * P.u_y;
  P.J[0] = cam.fx / zs; P.J[1] = T{}; P.J[2] = -cam.fx * tx / (zs * zs);
  P.J[3] = T{}; P.J[4] = cam.fy / zs; P.J[5] = -cam.fy * ty / (zs * zs);
  // cov2d = J cov_cam J^T
  T JC[6];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      JC[3 * i + j] = P.J[3 * i] * P.cov_cam[j] + P.J[3 * i + 1] * P.cov_cam[3 + j] + P.J[3 * i + 2] * P.cov_cam[6 + j];
  const T c00 = JC[0] * P.J[0] + JC[1] * P.J[1] + JC[2] * P.J[2];
  const T c01 = JC[0] * P.J[3] + JC[1] * P.J[4] + JC[2] * P.J[5];
  const T c11 = JC[3] * P.J[3] + JC[4] * P.J[4] + JC[5] * P.J[5];
  P.a = c00 + eps2d; P.b = c01; P.c = c11 + eps2d;
  P.det = P.a * P.c - P.b * P.b;
  P.valid = L::both(P.in_front, P.det > L::bc(S(0)));
}

// The forward outputs of one Gaussian (or one per lane).
template <typename T>
struct Forward {
  T means2d[2], depth, conic[3];
  typename Ops<T>::I radius;
};

template <typename T, typename S>
inline void forward_one(const Camera<S>& cam, const T* mean, const T* quat, const T* scale, S near, S eps2d,
                        int64_t width, int64_t height, Forward<T>& out) {
  using L = Ops<T>;
  Projected<T> P;
  project_one(cam, mean, quat, scale, near, eps2d, P);
  const T det_safe = L::sel(P.valid, P.det, L::bc(S(1)));
  out.conic[0] = P.c / det_safe; out.conic[1] = -P.b / det_safe; out.conic[2] = P.a / det_safe;
  const T u = cam.fx * P.p[0] / P.z_safe + cam.cx, v = cam.fy * P.p[1] / P.z_safe + cam.cy;
  out.means2d[0] = u; out.means2d[1] = v;
  out.depth = P.p[2];
  const T mid = S(0.5) * (P.a + P.c);
  const T lambda_max = mid + L::sqrt(max_of(mid * mid - P.det, L::bc(S(0.1))));
  const T r = L::ceil(S(3) * L::sqrt(lambda_max));
  const T zero = L::bc(S(0)), w = L::bc(S(width)), h = L::bc(S(height));
  const auto on_screen = L::both(L::both(u + r > zero, u - r < w), L::both(v + r > zero, v - r < h));
  const auto keep = L::both(L::both(P.valid, on_screen), L::both(L::finite(u), L::finite(v)));
  out.radius = L::sel(keep, L::to_int(r), typename L::I{});
}

// The gradients of one Gaussian (or one per lane) given those of its outputs.
template <typename T, typename S>
inline void backward_one(const Camera<S>& cam, const T* mean, const T* quat, const T* s, S near, S eps2d,
                         const T* vm2, T vdep, const T* vcon, T* gm, T* gq, T* gs) {
  using L = Ops<T>;
  Projected<T> P;
  project_one(cam, mean, quat, s, near, eps2d, P);
  const T x = P.p[0], y = P.p[1], zs = P.z_safe;
  T v_p[3] = {T{}, T{}, T{}};
  T v_zs{};
  // means2d = (fx x / zs + cx, fy y / zs + cy)
  const T vu = vm2[0], vv = vm2[1];
  v_p[0] += vu * cam.fx / zs;
  v_p[1] += vv * cam.fy / zs;
  v_zs += -(vu * cam.fx * x + vv * cam.fy * y) / (zs * zs);
  v_p[2] += vdep;  // depths = z
  // conics = (c, -b, a) / det_safe; where not valid, det_safe = 1
  const T vA = vcon[0], vB = vcon[1], vC = vcon[2];
  const T D = P.det, D2 = D * D, a = P.a, b = P.b, c = P.c;
  const T va = L::sel(P.valid, (-vA * c * c + vB * b * c - vC * b * b) / D2, vC);
  const T vb = L::sel(P.valid, (S(2) * vA * b * c - vB * (D + S(2) * b * b) + S(2) * vC * a * b) / D2, -vB);
  const T vc = L::sel(P.valid, (-vA * b * b + vB * a * b - vC * a * a) / D2, vA);
  // cov2d = J S J^T with a = cov2d[0,0] + eps, b = cov2d[0,1], c = cov2d[1,1] + eps.
  const T G[4] = {va, vb, T{}, vc};  // dL/dcov2d (row-major 2x2)
  const T Gs[4] = {G[0] + G[0], G[1] + G[2], G[2] + G[1], G[3] + G[3]};  // G + G^T
  // dL/dJ = (G + G^T) J S ; dL/dS = J^T G J
  T JS[6];
  for (int r = 0; r < 2; ++r)
    for (int col = 0; col < 3; ++col)
      JS[3 * r + col] = P.J[3 * r] * P.cov_cam[col] + P.J[3 * r + 1] * P.cov_cam[3 + col] +
                        P.J[3 * r + 2] * P.cov_cam[6 + col];
  T vJ[6];
  for (int r = 0; r < 2; ++r)
    for (int col = 0; col < 3; ++col) vJ[3 * r + col] = Gs[2 * r] * JS[col] + Gs[2 * r + 1] * JS[3 + col];
  T vS[9];
  for (int r = 0; r < 3; ++r)
    for (int col = 0; col < 3; ++col) {
      T acc{};
      for (int k = 0; k < 2; ++k)
        for (int l = 0; l < 2; ++l) acc += P.J[3 * k + r] * G[2 * k + l] * P.J[3 * l + col];
      vS[3 * r + col] = acc;
    }
  // J = [[fx/zs, 0, -fx ux_c / zs], [0, fy/zs, -fy uy_c / zs]], ux_c = clamp(x / zs) (tx = zs ux_c).
  v_zs += -vJ[0] * cam.fx / (zs * zs) - vJ[4] * cam.fy / (zs * zs);
  v_zs += vJ[2] * cam.fx * P.u_x / (zs * zs) + vJ[5] * cam.fy * P.u_y / (zs * zs);
  // ux_c = x / zs where x / zs is inside the clamp (likewise y)
  v_p[0] = L::sel(P.pass_x, v_p[0] + -vJ[2] * cam.fx / (zs * zs), v_p[0]);
  v_zs = L::sel(P.pass_x, v_zs + vJ[2] * cam.fx * x / (zs * zs * zs), v_zs);
  v_p[1] = L::sel(P.pass_y, v_p[1] + -vJ[5] * cam.fy / (zs * zs), v_p[1]);
  v_zs = L::sel(P.pass_y, v_zs + vJ[5] * cam.fy * y / (zs * zs * zs), v_zs);
  v_p[2] = L::sel(P.in_front, v_p[2] + v_zs, v_p[2]);  // z_safe is a constant 1 behind the near plane
  // cov_cam = R cov_world R^T -> dL/dcov_world = R^T vS R
  T tmp[9], vW[9];
  mat3(cam.R, true, vS, false, tmp);
  mat3(tmp, false, cam.R, false, vW);
  // cov_world = M M^T -> dL/dM = (vW + vW^T) M
  T vWs[9], vM[9];
  for (int r = 0; r < 3; ++r)
    for (int col = 0; col < 3; ++col) vWs[3 * r + col] = vW[3 * r + col] + vW[3 * col + r];
  mat3(vWs, false, P.M_, false, vM);
  // M = rot diag(s)
  T vR[9];
  for (int r = 0; r < 3; ++r)
    for (int col = 0; col < 3; ++col) vR[3 * r + col] = vM[3 * r + col] * s[col];
  for (int col = 0; col < 3; ++col)
    gs[col] = vM[col] * P.rot[col] + vM[3 + col] * P.rot[3 + col] + vM[6 + col] * P.rot[6 + col];
  // rotation of the unit quaternion (w, x, y, z)
  const T w = P.unit[0], qx = P.unit[1], qy = P.unit[2], qz = P.unit[3];
  T vq[4];
  vq[0] = 2 * (-vR[1] * qz + vR[2] * qy + vR[3] * qz - vR[5] * qx - vR[6] * qy + vR[7] * qx);
  vq[1] = 2 * (vR[1] * qy + vR[2] * qz + vR[3] * qy - 2 * vR[4] * qx - vR[5] * w + vR[6] * qz + vR[7] * w -
               2 * vR[8] * qx);
  vq[2] = 2 * (-2 * vR[0] * qy + vR[1] * qx + vR[2] * w + vR[3] * qx + vR[5] * qz - vR[6] * w + vR[7] * qz -
               2 * vR[8] * qy);
  vq[3] = 2 * (-2 * vR[0] * qz - vR[1] * w + vR[2] * qx + vR[3] * w - 2 * vR[4] * qz + vR[5] * qy +
               vR[6] * qx + vR[7] * qy);
  // unit = q / max(|q|, 1e-12)
  const auto normal = P.qnorm > L::bc(S(1e-12));
  const T dot = vq[0] * P.unit[0] + vq[1] * P.unit[1] + vq[2] * P.unit[2] + vq[3] * P.unit[3];
  for (int k = 0; k < 4; ++k) gq[k] = L::sel(normal, (vq[k] - P.unit[k] * dot) / P.qnorm, vq[k] / S(1e-12));
  // p_cam = R mean + t
  for (int col = 0; col < 3; ++col) gm[col] = cam.R[col] * v_p[0] + cam.R[3 + col] * v_p[1] + cam.R[6 + col] * v_p[2];
}

// Lanes of kLanes consecutive Gaussians from an array of rows of `width` values: column c.
inline fvec gather(const float* base, int64_t i, int width, int c) {
  fvec v;
  for (int l = 0; l < kLanes; ++l) v[l] = base[(i + l) * width + c];
  return v;
}
inline void scatter(float* base, int64_t i, int width, int c, fvec v) {
  for (int l = 0; l < kLanes; ++l) base[(i + l) * width + c] = v[l];
}

// The blocks of kLanes Gaussians in [i, end) through the vector lanes (float only); returns where the
// scalar loop goes on.
template <typename S>
int64_t forward_blocks(const Camera<S>&, const S*, const S*, const S*, S, S, int64_t, int64_t, S*, S*, S*, int32_t*,
                       int64_t i, int64_t) {
  return i;
}
inline int64_t forward_blocks(const Camera<float>& cam, const float* m, const float* q, const float* s, float near,
                              float eps, int64_t width, int64_t height, float* m2, float* dep, float* con,
                              int32_t* rad, int64_t i, int64_t end) {
  for (; i + kLanes <= end; i += kLanes) {
    fvec mv[3], qv[4], sv[3];
    for (int c = 0; c < 3; ++c) { mv[c] = gather(m, i, 3, c); sv[c] = gather(s, i, 3, c); }
    for (int c = 0; c < 4; ++c) qv[c] = gather(q, i, 4, c);
    Forward<fvec> out;
    forward_one(cam, mv, qv, sv, near, eps, width, height, out);
    for (int c = 0; c < 2; ++c) scatter(m2, i, 2, c, out.means2d[c]);
    for (int c = 0; c < 3; ++c) scatter(con, i, 3, c, out.conic[c]);
    predictgs::store_v(dep + i, out.depth);
    predictgs::store_v(rad + i, out.radius);
  }
  return i;
}

template <typename S>
int64_t backward_blocks(const Camera<S>&, const S*, const S*, const S*, S, S, const S*, const S*, const S*, S*, S*,
                        S*, int64_t i, int64_t) {
  return i;
}
inline int64_t backward_blocks(const Camera<float>& cam, const float* m, const float* q, const float* s, float near,
                               float eps, const float* vm2, const float* vdep, const float* vcon, float* gm,
                               float* gq, float* gs, int64_t i, int64_t end) {
  for (; i + kLanes <= end; i += kLanes) {
    fvec mv[3], qv[4], sv[3], v2[2], vc[3], om[3], oq[4], os[3];
    for (int c = 0; c < 3; ++c) {
      mv[c] = gather(m, i, 3, c); sv[c] = gather(s, i, 3, c); vc[c] = gather(vcon, i, 3, c);
    }
    for (int c = 0; c < 4; ++c) qv[c] = gather(q, i, 4, c);
    for (int c = 0; c < 2; ++c) v2[c] = gather(vm2, i, 2, c);
    backward_one(cam, mv, qv, sv, near, eps, v2, predictgs::load_v(vdep + i), vc, om, oq, os);
    for (int c = 0; c < 3; ++c) { scatter(gm, i, 3, c, om[c]); scatter(gs, i, 3, c, os[c]); }
    for (int c = 0; c < 4; ++c) scatter(gq, i, 4, c, oq[c]);
  }
  return i;
}

void check(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), name, " must be a contiguous CPU tensor");
}

}  // namespace

std::vector<torch::Tensor> project_forward(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                           torch::Tensor viewmat, torch::Tensor K, int64_t width, int64_t height,
                                           double near_plane, double eps2d) {
  check(means, "means"); check(quats, "quats"); check(scales, "scales");
  const int64_t n = means.size(0);
  auto means2d = torch::empty({n, 2}, means.options());
  auto depths = torch::empty({n}, means.options());
  auto conics = torch::empty({n, 3}, means.options());
  auto radii = torch::empty({n}, torch::kInt32);
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_forward", [&] {
    using S = scalar_t;
    const Camera<S> cam(viewmat.contiguous(), K.contiguous(), width, height);
    const S* m = means.data_ptr<S>();
    const S* q = quats.data_ptr<S>();
    const S* s = scales.data_ptr<S>();
    S* m2 = means2d.data_ptr<S>();
    S* dep = depths.data_ptr<S>();
    S* con = conics.data_ptr<S>();
    int32_t* rad = radii.data_ptr<int32_t>();
    const S near = S(near_plane), eps = S(eps2d);
    at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
      int64_t i = forward_blocks(cam, m, q, s, near, eps, width, height, m2, dep, con, rad, begin, end);
      for (; i < end; ++i) {
        Forward<S> out;
        forward_one(cam, m + 3 * i, q + 4 * i, s + 3 * i, near, eps, width, height, out);
        m2[2 * i] = out.means2d[0]; m2[2 * i + 1] = out.means2d[1];
        con[3 * i] = out.conic[0]; con[3 * i + 1] = out.conic[1]; con[3 * i + 2] = out.conic[2];
        dep[i] = out.depth;
        rad[i] = out.radius;
      }
    });
  });
  return {means2d, depths, conics, radii};
}

std::vector<torch::Tensor> project_backward(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                            torch::Tensor viewmat, torch::Tensor K, int64_t width, int64_t height,
                                            double near_plane, double eps2d, torch::Tensor v_means2d,
                                            torch::Tensor v_depths, torch::Tensor v_conics) {
  check(v_means2d, "v_means2d"); check(v_depths, "v_depths"); check(v_conics, "v_conics");
  const int64_t n = means.size(0);
  auto v_means = torch::empty_like(means);
  auto v_quats = torch::empty_like(quats);
  auto v_scales = torch::empty_like(scales);
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_backward", [&] {
    using S = scalar_t;
    const Camera<S> cam(viewmat.contiguous(), K.contiguous(), width, height);
    const S* m = means.data_ptr<S>();
    const S* q = quats.data_ptr<S>();
    const S* s = scales.data_ptr<S>();
    const S* vm2 = v_means2d.data_ptr<S>();
    const S* vdep = v_depths.data_ptr<S>();
    const S* vcon = v_conics.data_ptr<S>();
    S* gm = v_means.data_ptr<S>();
    S* gq = v_quats.data_ptr<S>();
    S* gs = v_scales.data_ptr<S>();
    const S near = S(near_plane), eps = S(eps2d);
    at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
      int64_t i = backward_blocks(cam, m, q, s, near, eps, vm2, vdep, vcon, gm, gq, gs, begin, end);
      for (; i < end; ++i)
        backward_one(cam, m + 3 * i, q + 4 * i, s + 3 * i, near, eps, vm2 + 2 * i, vdep[i], vcon + 3 * i, gm + 3 * i,
                     gq + 4 * i, gs + 3 * i);
    });
  });
  return {v_means, v_quats, v_scales};
}
