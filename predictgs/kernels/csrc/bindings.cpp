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

std::vector<torch::Tensor> gaussian_plan(torch::Tensor mean, torch::Tensor scale, torch::Tensor step,
                                         torch::Tensor class_of_spread, torch::Tensor row_base, int64_t num_classes,
                                         double lowest_spread, double highest_spread, int64_t index_bias,
                                         int64_t shift_bias, int64_t max_shift, int64_t offsets, double centre_limit);
std::vector<torch::Tensor> gaussian_code(torch::Tensor symbols, torch::Tensor order, torch::Tensor cls,
                                         torch::Tensor row, torch::Tensor shift, torch::Tensor width,
                                         torch::Tensor centre, torch::Tensor class_width, torch::Tensor blocks,
                                         torch::Tensor level_costs, torch::Tensor base, int64_t value_limit);
torch::Tensor range_encode(torch::Tensor table, torch::Tensor at);
torch::Tensor pack_bits(torch::Tensor ones, torch::Tensor values, torch::Tensor widths);
torch::Tensor unpack_fields(torch::Tensor data, int64_t start, torch::Tensor widths);
torch::Tensor range_encode_fixed(torch::Tensor cdf, torch::Tensor symbols);
std::vector<torch::Tensor> range_decode_fixed(torch::Tensor words, torch::Tensor cdf, int64_t count);
std::vector<torch::Tensor> range_decode(torch::Tensor words, torch::Tensor table, torch::Tensor starts,
                                        torch::Tensor lengths);
std::vector<torch::Tensor> gaussian_values(torch::Tensor symbol, torch::Tensor cls, torch::Tensor centre,
                                           torch::Tensor width, torch::Tensor order, torch::Tensor class_width,
                                           torch::Tensor excess, torch::Tensor coarse, torch::Tensor low,
                                           double escape_limit, double value_limit);
std::vector<torch::Tensor> mixture_shapes(torch::Tensor mean, torch::Tensor scale, torch::Tensor weight,
                                          torch::Tensor step, double fine_spread, double coverage, double reach,
                                          int64_t max_half_width, int64_t max_low_bits, double centre_limit);
std::vector<torch::Tensor> mixture_encode(torch::Tensor symbols, torch::Tensor mean, torch::Tensor scale,
                                          torch::Tensor weight, torch::Tensor step, torch::Tensor centre,
                                          torch::Tensor shift, torch::Tensor width, torch::Tensor table, double limit,
                                          int64_t pieces_per_unit, int64_t floor_count, int64_t max_half_width,
                                          int64_t max_low_bits, bool write);
std::vector<torch::Tensor> mixture_decode(torch::Tensor words, torch::Tensor mean, torch::Tensor scale,
                                          torch::Tensor weight, torch::Tensor step, torch::Tensor centre,
                                          torch::Tensor shift, torch::Tensor width, torch::Tensor table, double limit,
                                          int64_t pieces_per_unit, int64_t floor_count, int64_t max_half_width,
                                          int64_t max_low_bits);
std::vector<torch::Tensor> octree_encode(torch::Tensor points, torch::Tensor point_keys, int64_t bits);
torch::Tensor normal_cdf(torch::Tensor z, torch::Tensor table, double limit, int64_t pieces_per_unit);

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
  m.def("gaussian_plan", &gaussian_plan, "the Gaussian streams' per-element plan (codec/arithmetic.py _plan)");
  m.def("gaussian_code", &gaussian_code, "the Gaussian streams' symbols and table entries (codec/arithmetic.py _code)");
  m.def("range_encode", &range_encode, "range-code symbols given their table intervals (constriction's bytes)");
  m.def("gaussian_values", &gaussian_values, "the decoded values of a Gaussian stream (codec/arithmetic.py)");
  m.def("pack_bits", &pack_bits, "unary codes and bit fields, MSB first (codec/arithmetic.py _pack_bits)");
  m.def("unpack_fields", &unpack_fields, "the values of consecutive bit fields (codec/arithmetic.py _bit_values)");
  m.def("range_encode_fixed", &range_encode_fixed, "range-code symbols under one fixed distribution (constriction's bytes)");
  m.def("range_decode_fixed", &range_decode_fixed, "decode a message of symbols under one fixed distribution");
  m.def("octree_encode", &octree_encode, "the octree coder's probabilities and message (codec/octree.py)");
  m.def("range_decode", &range_decode, "decode a range-coded message row by row (constriction's reading)");
  m.def("mixture_shapes", &mixture_shapes, "the mixtures' centres, bin shifts and half-widths (codec/mixture.py)");
  m.def("mixture_encode", &mixture_encode, "code HAC++'s mixture symbols by bisection (codec/mixture.py)");
  m.def("mixture_decode", &mixture_decode, "decode HAC++'s mixture symbols (codec/mixture.py)");
  m.def("normal_cdf", &normal_cdf, "the mixture coder's normal CDF (codec/normal.py), elementwise");
}
