// The Python module of the compiled CPU kernels (predictgs/kernels/__init__.py builds it on first use).
#include <torch/extension.h>

#include <vector>

torch::Tensor depth_order(torch::Tensor depths, torch::Tensor radii);
std::vector<torch::Tensor> bin_gaussians(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opacities,
                                         torch::Tensor order, int64_t width, int64_t height);
std::vector<torch::Tensor> rasterize_forward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opacities,
                                             torch::Tensor colors, torch::Tensor tile_start,
                                             torch::Tensor entry_gaussian, torch::Tensor rects, int64_t width,
                                             int64_t height);
std::vector<torch::Tensor> rasterize_backward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opacities,
                                              torch::Tensor colors, torch::Tensor tile_start,
                                              torch::Tensor entry_gaussian, torch::Tensor entry_slot,
                                              torch::Tensor gauss_slot_start, torch::Tensor rects,
                                              torch::Tensor final_t, torch::Tensor last, torch::Tensor box,
                                              torch::Tensor grad_rgb, torch::Tensor grad_t, int64_t width,
                                              int64_t height);
void set_vectorised(bool on);
void set_row_pairs(bool on);

std::vector<torch::Tensor> project_forward(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                           torch::Tensor viewmat, torch::Tensor K, int64_t width, int64_t height,
                                           double near_plane, double eps2d);
std::vector<torch::Tensor> project_backward(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                            torch::Tensor viewmat, torch::Tensor K, int64_t width, int64_t height,
                                            double near_plane, double eps2d, torch::Tensor v_means2d,
                                            torch::Tensor v_depths, torch::Tensor v_conics);

void hashgrid_forward(torch::Tensor x, torch::Tensor columns, torch::Tensor table, torch::Tensor resolution,
                      torch::Tensor offset, torch::Tensor multiplier, torch::Tensor mask, torch::Tensor dense,
                      torch::Tensor out, int64_t out_col);
void hashgrid_backward(torch::Tensor x, torch::Tensor columns, torch::Tensor grad_out, int64_t out_col,
                       torch::Tensor resolution, torch::Tensor offset, torch::Tensor multiplier, torch::Tensor mask,
                       torch::Tensor dense, torch::Tensor grad_table);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "predictgs compiled CPU kernels";
  m.def("hashgrid_forward", &hashgrid_forward, "binarised hash-grid lookup");
  m.def("hashgrid_backward", &hashgrid_backward, "table gradient of the lookup, deterministic");
  m.def("project_forward", &project_forward, "EWA projection of 3D Gaussians into one camera");
  m.def("project_backward", &project_backward, "gradients of the projection");
  m.def("depth_order", &depth_order, "the drawn Gaussians front to back (a stable radix sort of the depths)");
  m.def("bin_gaussians", &bin_gaussians, "bin projected Gaussians into 16x16 tiles, front to back");
  m.def("rasterize_forward", &rasterize_forward, "composite the tiles front to back");
  m.def("rasterize_backward", &rasterize_backward, "gradients of the compositing, deterministic");
  m.def("set_vectorised", &set_vectorised, "use the vector-lane tile passes for float RGB (default) or not");
  m.def("set_row_pairs", &set_row_pairs, "vector-lane passes: two rows per block for narrow splats (default) or not");
}
