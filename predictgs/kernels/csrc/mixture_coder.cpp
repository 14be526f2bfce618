// HAC++'s mixture streams (predictgs/codec/mixture.py), compiled: the elements' shapes (centre, bin shift,
// half-width) and coding order, the lock-step binary decisions of all elements of a call (is it the centre
// symbol, above or below it, then bisection), their integer probabilities from the mixture's CDF, and the
// range coder (range_coder.h).
//
// Exactness. The shapes are the reference's bit for bit: torch's float32 operations in its order, then the
// float64 ones (no fused multiply-add: the module is built with -ffp-contract=off). The CDF values too: the
// normal CDF of predictgs/codec/normal.py (its coefficient table is passed in; the same piece index, the same
// Estrin steps, additions and multiplications only), the mixture sum and the rounding to integers in the
// reference's order, round half to even as numpy's round. The decisions are integer arithmetic, in the
// reference's order (all elements of a level, in the call's coding order, level by level), so the range coder
// writes constriction's words for the same decisions: tests/test_mixture_compiled.py compares shapes, symbols,
// words and code lengths with the numpy/constriction path, tests/test_normal_cdf.py the normal CDF.
#include <torch/extension.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "range_coder.h"

namespace {

using predictgs::RangeDecoder;
using predictgs::RangeEncoder;

constexpr int64_t kTotal = int64_t{1} << predictgs::kPrecision;
constexpr int kTerms = 10;  // normal.py's DEGREE + 1

// Python's floor division a // b (the reference divides with numpy's //), for a positive divisor.
inline int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

inline int64_t clip_probability(int64_t p) { return p < 1 ? 1 : (p > kTotal - 1 ? kTotal - 1 : p); }

// normal.cdf of normal.py: Phi(z) from the coefficient table [limit * pieces_per_unit + 1, kTerms].
inline double normal_cdf(double z, const double* table, double limit, double pieces_per_unit) {
  double t = std::fabs(z);
  if (!(t < limit)) t = limit;
  const double piece = std::floor(t * pieces_per_unit);
  const double u = t - (piece + 0.5) / pieces_per_unit;
  const double* row = table + static_cast<int64_t>(piece) * kTerms;
  // Estrin's scheme, normal.py's order: a short dependency chain (the elements' chains overlap in the CPU)
  const double u2 = u * u, u4 = u2 * u2;
  const double low = (row[0] + row[1] * u) + (row[2] + row[3] * u) * u2;
  const double high = (row[4] + row[5] * u) + (row[6] + row[7] * u) * u2;
  const double q = (low + high * u4) + (row[8] + row[9] * u) * (u4 * u4);
  return z < 0 ? q : 1.0 - q;
}

void check_table(const torch::Tensor& table, double limit, int64_t pieces_per_unit) {
  TORCH_CHECK(table.dtype() == torch::kFloat64 && table.dim() == 2 && table.size(1) == kTerms,
              "normal CDF: a float64 coefficient table [pieces + 1, 10]");
  TORCH_CHECK(pieces_per_unit > 0 && static_cast<double>(table.size(0) - 1) == limit * pieces_per_unit,
              "normal CDF: the table's pieces do not cover the limit");
}

// The elements of a call (float32 parameters as the entropy model gives them, by original position), their
// coding order (decreasing bisection depth, stable: mixture.py _ordered) and the mixture's integer CDF.
struct Mixtures {
  int64_t n, components;
  const float* mean;     // [components, n]
  const float* scale;
  const float* weight;
  const float* step;     // [n]
  const int64_t* centre;
  const int64_t* shift;  // k: coarse bins of 2^k steps
  const int64_t* width;  // W: symbols 0 .. 2W + 2 (the centre is W + 1)
  std::vector<int64_t> depth;  // D = ceil(log2(W + 1))
  std::vector<int64_t> order;  // the coding order
  const double* table;   // normal.py's coefficients [pieces + 1, kTerms]
  double limit, pieces_per_unit;  // normal.py's LIMIT and PIECES_PER_UNIT
  int64_t floor_count;   // SYMBOL_FLOOR

  // C_index of element e (Bisection._cdf): 0 from index 0 down, 2^24 from L up.
  inline int64_t cdf(int64_t e, int64_t index) const {
    const int64_t size = 2 * width[e] + 3;
    if (index <= 0) return 0;
    if (index >= size) return kTotal;
    const double edge = static_cast<double>((index - 1 - width[e]) * (int64_t{1} << shift[e])) - 0.5;
    const double x = (static_cast<double>(centre[e]) + edge) * static_cast<double>(step[e]);
    double total = 0.0;
    for (int64_t k = 0; k < components; ++k) {
      const int64_t at = k * n + e;
      const double z = (x - static_cast<double>(mean[at])) / static_cast<double>(scale[at]);
      total += static_cast<double>(weight[at]) * normal_cdf(z, table, limit, pieces_per_unit);
    }
    total = total < 0.0 ? 0.0 : (total > 1.0 ? 1.0 : total);
    const double span = static_cast<double>(kTotal - (size - 1) * floor_count);
    return static_cast<int64_t>(std::nearbyint(total * span)) + index * floor_count;
  }
};

// One binary decision with P(bit 0) = p / 2^24: the encoder's (the symbol's truth, written) or the decoder's.
// The code length is kept as a product of the chosen probabilities with a separate power of two (one log2 at
// the end instead of one per decision).
struct Writer {
  RangeEncoder encoder;
  bool write;
  double product = 1.0;
  int64_t exponent = 0;
  inline bool decide(int64_t p_zero, bool truth) {
    const int64_t chosen = truth ? kTotal - p_zero : p_zero;
    product *= static_cast<double>(chosen);
    exponent -= predictgs::kPrecision;
    if (product > 0x1p512) {
      int e;
      product = std::frexp(product, &e);
      exponent += e;
    }
    if (write) encoder.encode(truth ? static_cast<uint64_t>(p_zero) : 0u, static_cast<uint64_t>(chosen));
    return truth;
  }
  double bits() const { return -(std::log2(product) + static_cast<double>(exponent)); }
};

struct Reader {
  RangeDecoder decoder;
  bool corrupt = false;
  inline bool decide(int64_t p_zero, bool /*truth*/) {
    if (corrupt) return false;
    const int32_t row[3] = {0, static_cast<int32_t>(p_zero), static_cast<int32_t>(kTotal)};
    int64_t symbol = 0;
    if (!decoder.decode(row, 3, &symbol)) corrupt = true;
    return symbol == 1;
  }
};

// The decisions of _Bisection (mixture.py) in its order; ``symbols`` (the encoder's, by original position) give
// the truth, the decoder passes nullptr. Returns the decided symbols by original position.
template <typename Decider>
std::vector<int64_t> bisect(const Mixtures& m, const int64_t* symbols, Decider& decider) {
  const int64_t n = m.n;
  std::vector<int64_t> decided(static_cast<size_t>(n));
  // Each level first evaluates the CDF values of all its elements (independent of one another, so that the
  // CPU overlaps their polynomial chains), then makes its decisions in order.
  // Level 0: is it the centre symbol c = W + 1 (bit 0)?
  std::vector<int64_t> c_at(static_cast<size_t>(n)), c_next(static_cast<size_t>(n));
  for (const int64_t e : m.order) {
    c_at[e] = m.cdf(e, m.width[e] + 1);
    c_next[e] = m.cdf(e, m.width[e] + 2);
  }
  std::vector<int64_t> kept;
  kept.reserve(static_cast<size_t>(n));
  for (const int64_t e : m.order) {
    const int64_t c = m.width[e] + 1;
    if (decider.decide(c_next[e] - c_at[e], symbols != nullptr && symbols[e] != c)) kept.push_back(e);
    else decided[e] = c;
  }
  // Level 1: above (bit 1) or below the centre.
  const size_t count = kept.size();
  std::vector<int64_t> lo(count), c_lo(count), c_hi(count), span(count), c_mid(count);
  for (size_t i = 0; i < count; ++i) {
    const int64_t e = kept[i], c = m.width[e] + 1;
    const int64_t left = c_at[e], right = kTotal - c_next[e];
    const int64_t p_left = clip_probability(floor_div(left * kTotal + (left + right) / 2, left + right));
    const bool above = decider.decide(p_left, symbols != nullptr && symbols[e] > c);
    span[i] = int64_t{1} << m.depth[e];
    lo[i] = above ? c + 1 : c - span[i];
    c_lo[i] = above ? c_next[e] : 0;
    c_hi[i] = above ? kTotal : c_at[e];
  }
  // Bisection: level j decides the kept elements with D > j (a prefix: the order is by decreasing D).
  size_t active = count;
  for (int64_t level = 0;; ++level) {
    while (active > 0 && m.depth[kept[active - 1]] <= level) --active;
    if (active == 0) break;
    for (size_t i = 0; i < active; ++i) c_mid[i] = m.cdf(kept[i], lo[i] + span[i] / 2);
    for (size_t i = 0; i < active; ++i) {
      const int64_t mid = lo[i] + span[i] / 2;
      const int64_t total = c_hi[i] - c_lo[i] > 1 ? c_hi[i] - c_lo[i] : 1;  // 0 only past the alphabet
      const int64_t p_left = clip_probability(floor_div((c_mid[i] - c_lo[i]) * kTotal + total / 2, total));
      if (decider.decide(p_left, symbols != nullptr && symbols[kept[i]] >= mid)) {
        lo[i] = mid;
        c_lo[i] = c_mid[i];
      } else {
        c_hi[i] = c_mid[i];
      }
      span[i] /= 2;
    }
  }
  for (size_t i = 0; i < count; ++i) decided[kept[i]] = lo[i];
  return decided;
}

// mixture.py's constants of the shapes and their bounds (FINE_SPREAD, COVERAGE, REACH, MAX_HALF_WIDTH,
// MAX_LOW_BITS, CENTRE_LIMIT), passed in from there.
struct Limits {
  double fine_spread, coverage, reach;
  int64_t max_half_width, max_low_bits;
  float centre_limit;
};

// The shape of an element (mixture.py _shapes) from float32 parameters, with torch's float32 operations in
// torch's order (the weighted sums over the components accumulate in component order), then float64.
struct Shape {
  int64_t centre, shift, width;
};

inline Shape element_shape(const float* mean, const float* scale, const float* weight, float step, int64_t n,
                           int64_t components, int64_t e, const Limits& limits) {
  float mixed = weight[e] * mean[e];
  for (int64_t k = 1; k < components; ++k) mixed += weight[k * n + e] * mean[k * n + e];
  float c = std::nearbyint(mixed / step);
  if (std::isnan(c)) c = 0.0f;
  c = c < -limits.centre_limit ? -limits.centre_limit : (c > limits.centre_limit ? limits.centre_limit : c);
  const int64_t centre = static_cast<int64_t>(c);
  float second = 0.0f;
  for (int64_t k = 0; k < components; ++k) {
    const int64_t at = k * n + e;
    const float d = mean[at] - mixed;
    const float term = weight[at] * (scale[at] * scale[at] + d * d);
    second = k == 0 ? term : second + term;
  }
  const double limit = std::ldexp(limits.fine_spread, static_cast<int>(limits.max_low_bits));
  double spread = static_cast<double>(std::sqrt(second) / step);
  if (std::isnan(spread) || spread > limit) spread = limit;
  int exponent = 0;
  const double mantissa = std::frexp(spread / limits.fine_spread, &exponent);
  int64_t shift = mantissa == 0.5 ? exponent - 1 : exponent;
  shift = shift < 0 ? 0 : (shift > limits.max_low_bits ? limits.max_low_bits : shift);
  if (!(spread > limits.fine_spread)) shift = 0;
  const double bin_steps = std::ldexp(1.0, static_cast<int>(shift));
  double reach = 0.0;
  for (int64_t k = 0; k < components; ++k) {
    const int64_t at = k * n + e;
    const double r = std::fabs(static_cast<double>(mean[at]) / static_cast<double>(step) - static_cast<double>(centre)) +
                     limits.reach * static_cast<double>(scale[at]) / static_cast<double>(step);
    reach = k == 0 || std::isnan(r) || r > reach ? r : reach;
  }
  if (std::isnan(reach) || reach > limit) reach = limit;
  const double wide = limits.coverage * spread > reach ? limits.coverage * spread : reach;
  double width = std::ceil(wide / bin_steps) + 1.0;
  if (width > static_cast<double>(limits.max_half_width)) width = static_cast<double>(limits.max_half_width);
  return {centre, shift, static_cast<int64_t>(width)};
}

Limits limits_of(double fine_spread, double coverage, double reach, int64_t max_half_width, int64_t max_low_bits,
                 double centre_limit) {
  TORCH_CHECK(fine_spread > 0 && max_half_width >= 1 && max_half_width < (int64_t{1} << 31) && max_low_bits >= 0 &&
                  max_low_bits <= 62 && centre_limit > 0,
              "mixture coder: limits out of range");
  return {fine_spread, coverage, reach, max_half_width, max_low_bits, static_cast<float>(centre_limit)};
}

void check_parameters(const torch::Tensor& mean, const torch::Tensor& scale, const torch::Tensor& weight,
                      const torch::Tensor& step) {
  TORCH_CHECK(mean.dtype() == torch::kFloat32 && scale.dtype() == torch::kFloat32 &&
                  weight.dtype() == torch::kFloat32 && step.dtype() == torch::kFloat32,
              "mixture coder: float32 parameters");
  TORCH_CHECK(mean.dim() == 2 && mean.size(0) >= 1 && scale.sizes() == mean.sizes() && weight.sizes() == mean.sizes() &&
                  step.dim() == 1 && step.size(0) == mean.size(1),
              "mixture coder: mean, scale and weight [components, n], step [n]");
}

Mixtures mixtures(torch::Tensor& mean, torch::Tensor& scale, torch::Tensor& weight, torch::Tensor& step,
                  torch::Tensor& centre, torch::Tensor& shift, torch::Tensor& width, torch::Tensor& table,
                  double limit, int64_t pieces_per_unit, int64_t floor_count, int64_t max_half_width,
                  int64_t max_low_bits) {
  check_parameters(mean, scale, weight, step);
  TORCH_CHECK(max_half_width >= 1 && max_half_width < (int64_t{1} << 31) && max_low_bits >= 0 && max_low_bits <= 62,
              "mixture coder: limits out of range");
  const int64_t n = mean.size(1);
  TORCH_CHECK(centre.dtype() == torch::kInt64 && shift.dtype() == torch::kInt64 && width.dtype() == torch::kInt64 &&
                  centre.numel() == n && shift.numel() == n && width.numel() == n,
              "mixture coder: int64 centre, shift and width, one each");
  check_table(table, limit, pieces_per_unit);
  for (torch::Tensor* t : {&mean, &scale, &weight, &step, &centre, &shift, &width, &table}) *t = t->contiguous();
  Mixtures m;
  m.n = n;
  m.components = mean.size(0);
  m.mean = mean.data_ptr<float>();
  m.scale = scale.data_ptr<float>();
  m.weight = weight.data_ptr<float>();
  m.step = step.data_ptr<float>();
  m.centre = centre.data_ptr<int64_t>();
  m.shift = shift.data_ptr<int64_t>();
  m.width = width.data_ptr<int64_t>();
  m.table = table.data_ptr<double>();
  m.floor_count = floor_count;
  m.limit = limit;
  m.pieces_per_unit = static_cast<double>(pieces_per_unit);
  // Depth and the coding order: a stable counting sort by decreasing depth (numpy's stable argsort of -D).
  m.depth.resize(static_cast<size_t>(n));
  std::vector<int64_t> start(34, 0);
  for (int64_t e = 0; e < n; ++e) {
    TORCH_CHECK(m.width[e] >= 1 && m.width[e] <= max_half_width, "mixture coder: a half-width out of range");
    TORCH_CHECK(m.shift[e] >= 0 && m.shift[e] <= max_low_bits, "mixture coder: a bin shift out of range");
    int64_t d = 0;
    while ((int64_t{1} << d) <= m.width[e]) ++d;
    m.depth[e] = d;
    ++start[33 - d];
  }
  for (size_t b = 1; b < start.size(); ++b) start[b] += start[b - 1];
  m.order.resize(static_cast<size_t>(n));
  for (int64_t e = n - 1; e >= 0; --e) m.order[--start[33 - m.depth[e]]] = e;
  return m;
}

}  // namespace

// mixture.py _check and _shapes: (centre, shift, width, status), status 1 where the parameters are not valid
// distributions (a mean, scale, weight or step not finite, a scale or step not positive).
std::vector<torch::Tensor> mixture_shapes(torch::Tensor mean, torch::Tensor scale, torch::Tensor weight,
                                          torch::Tensor step, double fine_spread, double coverage, double reach,
                                          int64_t max_half_width, int64_t max_low_bits, double centre_limit) {
  const Limits limits = limits_of(fine_spread, coverage, reach, max_half_width, max_low_bits, centre_limit);
  check_parameters(mean, scale, weight, step);
  mean = mean.contiguous();
  scale = scale.contiguous();
  weight = weight.contiguous();
  step = step.contiguous();
  const int64_t n = mean.size(1), components = mean.size(0);
  const float* mu = mean.data_ptr<float>();
  const float* sigma = scale.data_ptr<float>();
  const float* w = weight.data_ptr<float>();
  const float* q = step.data_ptr<float>();
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor centre = torch::empty({n}, i64), shift = torch::empty({n}, i64), width = torch::empty({n}, i64);
  torch::Tensor status = torch::zeros({1}, i64);
  for (int64_t i = 0; i < components * n; ++i) {
    if (!std::isfinite(mu[i]) || !std::isfinite(w[i]) || !std::isfinite(sigma[i]) || !(sigma[i] > 0.0f)) {
      status.data_ptr<int64_t>()[0] = 1;
      return {centre, shift, width, status};
    }
  }
  for (int64_t e = 0; e < n; ++e) {
    if (!std::isfinite(q[e]) || !(q[e] > 0.0f)) {
      status.data_ptr<int64_t>()[0] = 1;
      return {centre, shift, width, status};
    }
  }
  int64_t* c = centre.data_ptr<int64_t>();
  int64_t* k = shift.data_ptr<int64_t>();
  int64_t* W = width.data_ptr<int64_t>();
  for (int64_t e = 0; e < n; ++e) {
    const Shape s = element_shape(mu, sigma, w, q[e], n, components, e, limits);
    c[e] = s.centre;
    k[e] = s.shift;
    W[e] = s.width;
  }
  return {centre, shift, width, status};
}

// encode_mixture's decisions (mixture.py _code): the symbols (0 .. 2W + 2, by original position) under the
// mixtures (float32 parameters, the shapes of mixture_shapes). Returns (words, code length in bits as a float64
// scalar); with write false no words.
std::vector<torch::Tensor> mixture_encode(torch::Tensor symbols, torch::Tensor mean, torch::Tensor scale,
                                          torch::Tensor weight, torch::Tensor step, torch::Tensor centre,
                                          torch::Tensor shift, torch::Tensor width, torch::Tensor table, double limit,
                                          int64_t pieces_per_unit, int64_t floor_count, int64_t max_half_width,
                                          int64_t max_low_bits, bool write) {
  Mixtures m = mixtures(mean, scale, weight, step, centre, shift, width, table, limit, pieces_per_unit, floor_count,
                        max_half_width, max_low_bits);
  TORCH_CHECK(symbols.dtype() == torch::kInt64 && symbols.numel() == m.n, "mixture_encode: one int64 symbol each");
  symbols = symbols.contiguous();
  const int64_t* s = symbols.data_ptr<int64_t>();
  for (int64_t e = 0; e < m.n; ++e)
    TORCH_CHECK(s[e] >= 0 && s[e] <= 2 * m.width[e] + 2, "mixture_encode: a symbol outside its alphabet");
  Writer writer;
  writer.write = write;
  if (write) writer.encoder.words.reserve(static_cast<size_t>(m.n / 8 + 4));
  bisect(m, s, writer);
  torch::Tensor out = predictgs::words_tensor(write ? writer.encoder.sealed() : std::vector<uint32_t>());
  return {out, torch::full({}, writer.bits(), torch::TensorOptions().dtype(torch::kFloat64))};
}

// decode_mixture's decisions: the symbols (by original position) of a message written by mixture_encode (or by
// the reference with constriction). Returns (symbols, status): 0 ok, 1 corrupt data (a code point outside both
// intervals of a decision), 2 data left after the last decision.
std::vector<torch::Tensor> mixture_decode(torch::Tensor words, torch::Tensor mean, torch::Tensor scale,
                                          torch::Tensor weight, torch::Tensor step, torch::Tensor centre,
                                          torch::Tensor shift, torch::Tensor width, torch::Tensor table, double limit,
                                          int64_t pieces_per_unit, int64_t floor_count, int64_t max_half_width,
                                          int64_t max_low_bits) {
  Mixtures m = mixtures(mean, scale, weight, step, centre, shift, width, table, limit, pieces_per_unit, floor_count,
                        max_half_width, max_low_bits);
  TORCH_CHECK(words.dtype() == torch::kInt32, "mixture_decode: int32 words");
  words = words.contiguous();
  Reader reader{RangeDecoder(reinterpret_cast<const uint32_t*>(words.data_ptr<int32_t>()), words.numel())};
  std::vector<int64_t> decided = bisect(m, nullptr, reader);
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor symbols = torch::empty({m.n}, i64), status = torch::zeros({1}, i64);
  if (m.n) std::memcpy(symbols.data_ptr<int64_t>(), decided.data(), decided.size() * sizeof(int64_t));
  if (reader.corrupt) status.data_ptr<int64_t>()[0] = 1;
  else if (!reader.decoder.maybe_exhausted()) status.data_ptr<int64_t>()[0] = 2;
  return {symbols, status};
}

// normal.cdf of normal.py, elementwise over float64 ``z`` (for the tests' bit-for-bit comparison).
torch::Tensor normal_cdf(torch::Tensor z, torch::Tensor table, double limit, int64_t pieces_per_unit) {
  TORCH_CHECK(z.dtype() == torch::kFloat64, "normal_cdf: float64 values");
  check_table(table, limit, pieces_per_unit);
  z = z.contiguous();
  table = table.contiguous();
  torch::Tensor out = torch::empty_like(z);
  const double* in = z.data_ptr<double>();
  double* o = out.data_ptr<double>();
  const double* t = table.data_ptr<double>();
  for (int64_t i = 0; i < z.numel(); ++i) o[i] = normal_cdf(in[i], t, limit, static_cast<double>(pieces_per_unit));
  return out;
}
