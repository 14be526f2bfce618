// EWA projection of 3D Gaussians into one camera, forward and analytic backward, one Gaussian per
// iteration (independent, so any thread count gives the same bits). The formulas and the order of every
// operation follow predictgs/render/projection.py, the PyTorch reference this is tested against:
// near cull at z <= near, the Jacobian's x/z and y/z clamped to 1.3 x the half field of view, covariance
// dilated by eps2d, radius ceil(3 sqrt(lambda_max)), culled when the square misses the image.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

namespace {

template <typename T>
struct Camera {
  T R[9], t[3], fx, fy, cx, cy, lim_x_pos, lim_x_neg, lim_y_pos, lim_y_neg;
  Camera(const torch::Tensor& viewmat, const torch::Tensor& K, int64_t width, int64_t height) {
    auto vm = viewmat.accessor<T, 2>();
    auto k = K.accessor<T, 2>();
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 3; ++j) R[3 * i + j] = vm[i][j];
      t[i] = vm[i][3];
    }
    fx = k[0][0]; fy = k[1][1]; cx = k[0][2]; cy = k[1][2];
    lim_x_pos = T(1.3) * (T(width) - cx) / fx; lim_x_neg = T(1.3) * cx / fx;
    lim_y_pos = T(1.3) * (T(height) - cy) / fy; lim_y_neg = T(1.3) * cy / fy;
  }
};

// Rotation matrix (row-major) of a quaternion (w, x, y, z), normalised with the reference's clamp.
template <typename T>
inline void quat_rotation(const T* q, T* rot, T* unit, T& norm) {
  norm = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  const T n = std::max(norm, T(1e-12));
  for (int i = 0; i < 4; ++i) unit[i] = q[i] / n;
  const T w = unit[0], x = unit[1], y = unit[2], z = unit[3];
  rot[0] = 1 - 2 * (y * y + z * z); rot[1] = 2 * (x * y - w * z); rot[2] = 2 * (x * z + w * y);
  rot[3] = 2 * (x * y + w * z); rot[4] = 1 - 2 * (x * x + z * z); rot[5] = 2 * (y * z - w * x);
  rot[6] = 2 * (x * z - w * y); rot[7] = 2 * (y * z + w * x); rot[8] = 1 - 2 * (x * x + y * y);
}

// out = A * B (3x3 row-major); At/Bt: use the transpose.
template <typename T>
inline void mat3(const T* A, bool At, const T* B, bool Bt, T* out) {
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      T s = 0;
      for (int k = 0; k < 3; ++k) s += (At ? A[3 * k + i] : A[3 * i + k]) * (Bt ? B[3 * j + k] : B[3 * k + j]);
      out[3 * i + j] = s;
    }
}

// Everything the forward computes for one Gaussian, kept for the backward.
template <typename T>
struct Projected {
  T p[3], z_safe, rot[9], unit[4], qnorm, M[9], cov_cam[9], J[6], a, b, c, det;
  bool in_front, valid, pass_x, pass_y;
  T u_x, u_y;  // clamped x/z, y/z
};

template <typename T>
inline void project_one(const Camera<T>& cam, const T* mean, const T* quat, const T* scale, T near, T eps2d,
                        Projected<T>& P) {
  for (int i = 0; i < 3; ++i)
    P.p[i] = cam.R[3 * i] * mean[0] + cam.R[3 * i + 1] * mean[1] + cam.R[3 * i + 2] * mean[2] + cam.t[i];
  const T x = P.p[0], y = P.p[1], z = P.p[2];
  P.in_front = z > near;
  P.z_safe = P.in_front ? z : T(1);
  quat_rotation(quat, P.rot, P.unit, P.qnorm);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) P.M[3 * i + j] = P.rot[3 * i + j] * scale[j];
  T cov_world[9], tmp[9];
  mat3(P.M, false, P.M, true, cov_world);
  mat3(cam.R, false, cov_world, false, tmp);
  mat3(tmp, false, cam.R, true, P.cov_cam);
  const T zs = P.z_safe;
  const T ux = x / zs, uy = y / zs;
  P.u_x = std::min(std::max(ux, -cam.lim_x_neg), cam.lim_x_pos);
  P.u_y = std::min(std::max(uy, -cam.lim_y_neg), cam.lim_y_pos);
  P.pass_x = ux >= -cam.lim_x_neg && ux <= cam.lim_x_pos;
  P.pass_y = uy >= -cam.lim_y_neg && uy <= cam.lim_y_pos;
  const T tx = zs * P.u_x, ty = zs * P.u_y;
  P.J[0] = cam.fx / zs; P.J[1] = 0; P.J[2] = -cam.fx * tx / (zs * zs);
  P.J[3] = 0; P.J[4] = cam.fy / zs; P.J[5] = -cam.fy * ty / (zs * zs);
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
  P.valid = P.in_front && P.det > 0;
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
    using T = scalar_t;
    const Camera<T> cam(viewmat.contiguous(), K.contiguous(), width, height);
    const T* m = means.data_ptr<T>();
    const T* q = quats.data_ptr<T>();
    const T* s = scales.data_ptr<T>();
    T* m2 = means2d.data_ptr<T>();
    T* dep = depths.data_ptr<T>();
    T* con = conics.data_ptr<T>();
    int32_t* rad = radii.data_ptr<int32_t>();
    const T near = T(near_plane), eps = T(eps2d);
    at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
      Projected<T> P;
      for (int64_t i = begin; i < end; ++i) {
        project_one(cam, m + 3 * i, q + 4 * i, s + 3 * i, near, eps, P);
        const T det_safe = P.valid ? P.det : T(1);
        con[3 * i] = P.c / det_safe; con[3 * i + 1] = -P.b / det_safe; con[3 * i + 2] = P.a / det_safe;
        const T u = cam.fx * P.p[0] / P.z_safe + cam.cx, v = cam.fy * P.p[1] / P.z_safe + cam.cy;
        m2[2 * i] = u; m2[2 * i + 1] = v;
        dep[i] = P.p[2];
        const T mid = T(0.5) * (P.a + P.c);
        const T lambda_max = mid + std::sqrt(std::max(mid * mid - P.det, T(0.1)));
        const T r = std::ceil(T(3) * std::sqrt(lambda_max));
        const bool on_screen = (u + r > 0) && (u - r < T(width)) && (v + r > 0) && (v - r < T(height));
        const bool keep = P.valid && on_screen && std::isfinite(u) && std::isfinite(v);
        rad[i] = keep ? static_cast<int32_t>(r) : 0;
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
  auto v_means = torch::zeros_like(means);
  auto v_quats = torch::zeros_like(quats);
  auto v_scales = torch::zeros_like(scales);
  AT_DISPATCH_FLOATING_TYPES(means.scalar_type(), "project_backward", [&] {
    using T = scalar_t;
    const Camera<T> cam(viewmat.contiguous(), K.contiguous(), width, height);
    const T* m = means.data_ptr<T>();
    const T* q = quats.data_ptr<T>();
    const T* s = scales.data_ptr<T>();
    const T* vm2 = v_means2d.data_ptr<T>();
    const T* vdep = v_depths.data_ptr<T>();
    const T* vcon = v_conics.data_ptr<T>();
    T* gm = v_means.data_ptr<T>();
    T* gq = v_quats.data_ptr<T>();
    T* gs = v_scales.data_ptr<T>();
    const T near = T(near_plane), eps = T(eps2d);
    at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
      Projected<T> P;
      for (int64_t i = begin; i < end; ++i) {
        project_one(cam, m + 3 * i, q + 4 * i, s + 3 * i, near, eps, P);
        const T x = P.p[0], y = P.p[1], zs = P.z_safe;
        T v_p[3] = {0, 0, 0};
        T v_zs = 0;
        // means2d = (fx x / zs + cx, fy y / zs + cy)
        const T vu = vm2[2 * i], vv = vm2[2 * i + 1];
        v_p[0] += vu * cam.fx / zs;
        v_p[1] += vv * cam.fy / zs;
        v_zs += -(vu * cam.fx * x + vv * cam.fy * y) / (zs * zs);
        v_p[2] += vdep[i];  // depths = z
        // conics = (c, -b, a) / det_safe
        const T vA = vcon[3 * i], vB = vcon[3 * i + 1], vC = vcon[3 * i + 2];
        T va, vb, vc;
        if (P.valid) {
          const T D = P.det, D2 = D * D, a = P.a, b = P.b, c = P.c;
          va = (-vA * c * c + vB * b * c - vC * b * b) / D2;
          vb = (T(2) * vA * b * c - vB * (D + T(2) * b * b) + T(2) * vC * a * b) / D2;
          vc = (-vA * b * b + vB * a * b - vC * a * a) / D2;
        } else {
          va = vC; vb = -vB; vc = vA;
        }
        // cov2d = J S J^T with a = cov2d[0,0] + eps, b = cov2d[0,1], c = cov2d[1,1] + eps.
        const T G[4] = {va, vb, 0, vc};  // dL/dcov2d (row-major 2x2)
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
            T acc = 0;
            for (int k = 0; k < 2; ++k)
              for (int l = 0; l < 2; ++l) acc += P.J[3 * k + r] * G[2 * k + l] * P.J[3 * l + col];
            vS[3 * r + col] = acc;
          }
        // J = [[fx/zs, 0, -fx ux_c / zs], [0, fy/zs, -fy uy_c / zs]], ux_c = clamp(x / zs) (tx = zs ux_c).
        v_zs += -vJ[0] * cam.fx / (zs * zs) - vJ[4] * cam.fy / (zs * zs);
        v_zs += vJ[2] * cam.fx * P.u_x / (zs * zs) + vJ[5] * cam.fy * P.u_y / (zs * zs);
        if (P.pass_x) {  // ux_c = x / zs
          v_p[0] += -vJ[2] * cam.fx / (zs * zs);
          v_zs += vJ[2] * cam.fx * x / (zs * zs * zs);
        }
        if (P.pass_y) {
          v_p[1] += -vJ[5] * cam.fy / (zs * zs);
          v_zs += vJ[5] * cam.fy * y / (zs * zs * zs);
        }
        if (P.in_front) v_p[2] += v_zs;  // z_safe is a constant 1 behind the near plane
        // cov_cam = R cov_world R^T -> dL/dcov_world = R^T vS R
        T tmp[9], vW[9];
        mat3(cam.R, true, vS, false, tmp);
        mat3(tmp, false, cam.R, false, vW);
        // cov_world = M M^T -> dL/dM = (vW + vW^T) M
        T vWs[9], vM[9];
        for (int r = 0; r < 3; ++r)
          for (int col = 0; col < 3; ++col) vWs[3 * r + col] = vW[3 * r + col] + vW[3 * col + r];
        mat3(vWs, false, P.M, false, vM);
        // M = rot diag(s)
        T vR[9];
        for (int r = 0; r < 3; ++r)
          for (int col = 0; col < 3; ++col) vR[3 * r + col] = vM[3 * r + col] * s[3 * i + col];
        for (int col = 0; col < 3; ++col)
          gs[3 * i + col] = vM[col] * P.rot[col] + vM[3 + col] * P.rot[3 + col] + vM[6 + col] * P.rot[6 + col];
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
        if (P.qnorm > T(1e-12)) {
          const T dot = vq[0] * P.unit[0] + vq[1] * P.unit[1] + vq[2] * P.unit[2] + vq[3] * P.unit[3];
          for (int k = 0; k < 4; ++k) gq[4 * i + k] = (vq[k] - P.unit[k] * dot) / P.qnorm;
        } else {
          for (int k = 0; k < 4; ++k) gq[4 * i + k] = vq[k] / T(1e-12);
        }
        // p_cam = R mean + t
        for (int col = 0; col < 3; ++col)
          gm[3 * i + col] = cam.R[col] * v_p[0] + cam.R[3 + col] * v_p[1] + cam.R[6 + col] * v_p[2];
      }
    });
  });
  return {v_means, v_quats, v_scales};
}
