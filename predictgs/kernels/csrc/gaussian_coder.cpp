// The discretised-Gaussian streams of the bitstream (predictgs/codec/arithmetic.py), compiled: the per-element
// plan (table cell, coding order), the symbols and their table entries, and the range coding (range_coder.h).
//
// Exactness. The plan and the symbols are the reference's numbers bit for bit: the same IEEE float64 operations
// in the same order (division, subtraction, floor, round half to even, frexp read off the bits; no fused
// multiply-add: the module is built with -ffp-contract=off). The range coder writes the bytes of constriction's
// RangeEncoder<u32, u64> at 24-bit precision (the coder of format 4, predictgs/codec/rangecoder.py) and reads
// them as its RangeDecoder does: tests/test_codec_compiled.py compares both with the reference and with
// constriction.
#include <torch/extension.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "range_coder.h"

namespace {

using predictgs::kPrecision;
using predictgs::RangeDecoder;
using predictgs::RangeEncoder;

inline int64_t spread_index(double s) {
  int64_t bits;
  std::memcpy(&bits, &s, sizeof bits);
  return bits >> 48;  // positive, normal: the exponent field and the 4 leading mantissa bits
}

}  // namespace

// _plan of arithmetic.py: (order, cls, row, shift, width, centre, counts per class). ``index_bias`` is
// (EXPONENT_BIAS + LOW_OCTAVE) * 16, ``shift_bias`` LOW_OCTAVE - COARSE_OCTAVE.
std::vector<torch::Tensor> gaussian_plan(torch::Tensor mean, torch::Tensor scale, torch::Tensor step,
                                         torch::Tensor class_of_spread, torch::Tensor row_base, int64_t num_classes,
                                         double lowest_spread, double highest_spread, int64_t index_bias,
                                         int64_t shift_bias, int64_t max_shift, int64_t offsets, double centre_limit) {
  TORCH_CHECK(mean.dtype() == torch::kFloat32 && scale.dtype() == torch::kFloat32 &&
                  step.dtype() == torch::kFloat32, "gaussian_plan: float32 mean, scale and step");
  TORCH_CHECK(class_of_spread.dtype() == torch::kUInt8 && row_base.dtype() == torch::kInt64,
              "gaussian_plan: uint8 classes and int64 row bases");
  mean = mean.contiguous();
  scale = scale.contiguous();
  step = step.contiguous();
  const int64_t n = mean.numel();
  TORCH_CHECK(scale.numel() == n && step.numel() == n, "gaussian_plan: mean, scale and step differ in size");
  TORCH_CHECK(max_shift >= 0 && max_shift < 63, "gaussian_plan: max_shift out of range");
  const float* mu = mean.data_ptr<float>();
  const float* sigma = scale.data_ptr<float>();
  const float* q = step.data_ptr<float>();
  const uint8_t* cls_of = class_of_spread.contiguous().data_ptr<uint8_t>();
  const int64_t* base = row_base.contiguous().data_ptr<int64_t>();
  const int64_t num_spreads = class_of_spread.numel();

  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor order = torch::empty({n}, i64), cls = torch::empty({n}, i64), row = torch::empty({n}, i64);
  torch::Tensor shift = torch::empty({n}, i64), width = torch::empty({n}, f64), centre = torch::empty({n}, f64);
  torch::Tensor counts = torch::zeros({num_classes}, i64);
  int64_t* count = counts.data_ptr<int64_t>();

  // Pass 1: spread cell and class of each element (file order), class counts.
  std::vector<int64_t> spread(n), element_shift(n);
  std::vector<uint8_t> element_cls(n);
  for (int64_t i = 0; i < n; ++i) {
    double s = static_cast<double>(sigma[i]) / static_cast<double>(q[i]);
    s = s < lowest_spread ? lowest_spread : (s > highest_spread ? highest_spread : s);
    int64_t index = spread_index(s) - index_bias;
    int64_t k = (index >> 4) + shift_bias;
    k = k < 0 ? 0 : (k > max_shift ? max_shift : k);
    index -= k * 16;
    TORCH_CHECK(index >= 0 && index < num_spreads, "gaussian_plan: spread index out of the grid");
    spread[i] = index;
    element_shift[i] = k;
    element_cls[i] = cls_of[index];
    TORCH_CHECK(element_cls[i] < num_classes, "gaussian_plan: class out of range");
    ++count[element_cls[i]];
  }
  // Pass 2: stable order by class (counting sort), and each element's cell in that order.
  std::vector<int64_t> next(num_classes, 0);
  for (int64_t c = 1; c < num_classes; ++c) next[c] = next[c - 1] + count[c - 1];
  int64_t* o = order.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) o[next[element_cls[i]]++] = i;
  int64_t* c_out = cls.data_ptr<int64_t>();
  int64_t* r_out = row.data_ptr<int64_t>();
  int64_t* k_out = shift.data_ptr<int64_t>();
  double* w_out = width.data_ptr<double>();
  double* centre_out = centre.data_ptr<double>();
  for (int64_t j = 0; j < n; ++j) {
    const int64_t i = o[j];
    double m = static_cast<double>(mu[i]) / static_cast<double>(q[i]);
    m = m < -centre_limit ? -centre_limit : (m > centre_limit ? centre_limit : m);
    const int64_t k = element_shift[i];
    const double w = static_cast<double>(1ull << k);  // k <= max_shift < 63: exact
    const double half = (w - 1.0) * 0.5;
    const double c = std::nearbyint(m - half);  // round half to even, as torch.round
    const double offset = (m - c - half) / w;
    int64_t cell = static_cast<int64_t>((offset + 0.5) * static_cast<double>(offsets));
    cell = cell < 0 ? 0 : (cell > offsets - 1 ? offsets - 1 : cell);
    c_out[j] = element_cls[i];
    r_out[j] = base[spread[i]] + cell;
    k_out[j] = k;
    w_out[j] = w;
    centre_out[j] = c;
  }
  return {order, cls, row, shift, width, centre, counts};
}

// _code of arithmetic.py: (symbol, at, levels, excess, low of every element with shift > 0, bad)
// for int64 ``symbols`` (file order) under a plan. ``blocks`` [B, 3] (class, start, stop) in coding order,
// ``level_costs`` [L, 2] (cost of an escape, of another symbol), ``base`` [L, classes] the first table entry.
// ``bad`` is 1 when a symbol is outside +-value_limit (nothing else is then meaningful).
std::vector<torch::Tensor> gaussian_code(torch::Tensor symbols, torch::Tensor order, torch::Tensor cls,
                                         torch::Tensor row, torch::Tensor shift, torch::Tensor width,
                                         torch::Tensor centre, torch::Tensor class_width, torch::Tensor blocks,
                                         torch::Tensor level_costs, torch::Tensor base, int64_t value_limit) {
  const int64_t n = order.numel();
  TORCH_CHECK(symbols.dtype() == torch::kInt64 && symbols.numel() == n, "gaussian_code: int64 symbols, one each");
  symbols = symbols.contiguous();
  const int64_t* sym_in = symbols.data_ptr<int64_t>();
  const int64_t* o = order.data_ptr<int64_t>();
  const int64_t* c_in = cls.data_ptr<int64_t>();
  const int64_t* r_in = row.data_ptr<int64_t>();
  const int64_t* k_in = shift.data_ptr<int64_t>();
  const double* w_in = width.data_ptr<double>();
  const double* centre_in = centre.data_ptr<double>();
  const int64_t* half_width = class_width.contiguous().data_ptr<int64_t>();
  blocks = blocks.contiguous();
  level_costs = level_costs.contiguous();
  base = base.contiguous();
  const int64_t* b = blocks.data_ptr<int64_t>();
  const double* costs = level_costs.data_ptr<double>();
  const int64_t* first_entry = base.data_ptr<int64_t>();
  const int64_t num_blocks = blocks.size(0), num_levels = level_costs.size(0), num_classes = base.size(1);

  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor symbol = torch::empty({n}, i64), at = torch::empty({n}, i64);
  torch::Tensor levels = torch::empty({num_blocks}, i64), bad = torch::zeros({1}, i64);
  int64_t* s_out = symbol.data_ptr<int64_t>();
  int64_t* at_out = at.data_ptr<int64_t>();
  int64_t* level_out = levels.data_ptr<int64_t>();
  std::vector<int64_t> excess, low;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t v = sym_in[o[j]];
    if (v >= value_limit || v <= -value_limit) {
      bad.data_ptr<int64_t>()[0] = 1;
      return {symbol, at, levels, torch::empty({0}, i64), torch::empty({0}, i64), bad};
    }
  }
  for (int64_t blk = 0; blk < num_blocks; ++blk) {
    const int64_t c = b[3 * blk], start = b[3 * blk + 1], stop = b[3 * blk + 2];
    const int64_t k = half_width[c];
    int64_t escapes = 0;
    for (int64_t j = start; j < stop; ++j) {
      const double r = static_cast<double>(sym_in[o[j]]) - centre_in[j];
      const double bins = std::floor(r / w_in[j]);
      double f = bins + static_cast<double>(k + 1);
      if (f < 0.0) f = 0.0;
      int64_t s = static_cast<int64_t>(f);
      if (s > 2 * k + 2) s = 2 * k + 2;
      s_out[j] = s;
      at_out[j] = r_in[j] * (2 * k + 4) + s;
      if (s == 0 || s == 2 * k + 2) {
        ++escapes;
        excess.push_back(static_cast<int64_t>(std::fabs(bins) - static_cast<double>(k + 1)));
      }
      if (k_in[j] > 0) low.push_back(static_cast<int64_t>(r - bins * w_in[j]));
    }
    // The escape level of the block (the first of the cheapest), as the reference chooses it.
    int64_t best = 0;
    double best_cost = 0.0;
    for (int64_t l = 0; l < num_levels; ++l) {
      const double cost = static_cast<double>(escapes) * costs[2 * l] +
                          static_cast<double>(stop - start - escapes) * costs[2 * l + 1];
      if (l == 0 || cost < best_cost) {
        best = l;
        best_cost = cost;
      }
    }
    level_out[blk] = best;
    const int64_t offset = first_entry[best * num_classes + c];
    for (int64_t j = start; j < stop; ++j) at_out[j] += offset;
    TORCH_CHECK(c_in[start] == c, "gaussian_code: a block's class differs from its elements'");
  }
  auto to_tensor = [&](const std::vector<int64_t>& v) {
    return torch::from_blob(const_cast<int64_t*>(v.data()), {static_cast<int64_t>(v.size())}, i64).clone();
  };
  return {symbol, at, levels, to_tensor(excess), to_tensor(low), bad};
}

// The range-coded message of symbols whose intervals start at table entries ``at`` (each symbol's interval
// is [table[at], table[at + 1]) of 2^24): the words of constriction's RangeEncoder<u32, u64>, sealed.
torch::Tensor range_encode(torch::Tensor table, torch::Tensor at) {
  TORCH_CHECK(table.dtype() == torch::kInt32 && at.dtype() == torch::kInt64, "range_encode: int32 table, int64 at");
  table = table.contiguous();
  at = at.contiguous();
  const int32_t* cdf = table.data_ptr<int32_t>();
  const int64_t* a = at.data_ptr<int64_t>();
  const int64_t n = at.numel(), entries = table.numel();
  RangeEncoder encoder;
  encoder.words.reserve(static_cast<size_t>(n / 4 + 4));
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(a[i] >= 0 && a[i] + 1 < entries, "range_encode: table entry out of range");
    const uint64_t left = static_cast<uint64_t>(cdf[a[i]]);
    const uint64_t right = static_cast<uint64_t>(cdf[a[i] + 1]);
    TORCH_CHECK(right > left, "range_encode: a symbol of zero probability");
    encoder.encode(left, right - left);
  }
  return predictgs::words_tensor(encoder.sealed());
}

// The raw bit fields after the coded symbols (arithmetic.py's _pack_bits): MSB first, for each ``ones`` entry w
// (>= 1) a unary code of w - 1 zeros and a one, then each values[i] in widths[i] bits (its low bits), zero-padded
// to a byte. Returns the bytes (uint8).
torch::Tensor pack_bits(torch::Tensor ones, torch::Tensor values, torch::Tensor widths) {
  TORCH_CHECK(ones.dtype() == torch::kInt64 && values.dtype() == torch::kInt64 && widths.dtype() == torch::kInt64,
              "pack_bits: int64 ones, values and widths");
  TORCH_CHECK(values.numel() == widths.numel(), "pack_bits: one width per value");
  ones = ones.contiguous();
  values = values.contiguous();
  widths = widths.contiguous();
  const int64_t* u = ones.data_ptr<int64_t>();
  const int64_t* v = values.data_ptr<int64_t>();
  const int64_t* w = widths.data_ptr<int64_t>();
  int64_t total = 0;
  for (int64_t i = 0; i < ones.numel(); ++i) {
    TORCH_CHECK(u[i] >= 1, "pack_bits: a unary code of width < 1");
    total += u[i];
  }
  for (int64_t i = 0; i < widths.numel(); ++i) {
    TORCH_CHECK(w[i] >= 0 && w[i] <= 63, "pack_bits: a field width outside 0..63");
    total += w[i];
  }
  torch::Tensor out = torch::zeros({(total + 7) / 8}, torch::TensorOptions().dtype(torch::kUInt8));
  uint8_t* bytes = out.data_ptr<uint8_t>();
  int64_t pos = 0;
  for (int64_t i = 0; i < ones.numel(); ++i) {
    pos += u[i] - 1;
    bytes[pos >> 3] |= static_cast<uint8_t>(0x80u >> (pos & 7));
    ++pos;
  }
  for (int64_t i = 0; i < widths.numel(); ++i)
    for (int64_t b = w[i] - 1; b >= 0; --b, ++pos)
      if ((v[i] >> b) & 1) bytes[pos >> 3] |= static_cast<uint8_t>(0x80u >> (pos & 7));
  return out;
}

// The values (int64) of ``widths`` consecutive fields of the bytes ``data`` (MSB first) from bit ``start``
// (arithmetic.py's _bit_values on _unpack(data)).
torch::Tensor unpack_fields(torch::Tensor data, int64_t start, torch::Tensor widths) {
  TORCH_CHECK(data.dtype() == torch::kUInt8 && widths.dtype() == torch::kInt64, "unpack_fields: uint8 data, int64 widths");
  data = data.contiguous();
  widths = widths.contiguous();
  const uint8_t* bytes = data.data_ptr<uint8_t>();
  const int64_t* w = widths.data_ptr<int64_t>();
  const int64_t n = widths.numel();
  int64_t end = start;
  TORCH_CHECK(start >= 0, "unpack_fields: a negative start");
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(w[i] >= 0 && w[i] <= 63, "unpack_fields: a field width outside 0..63");
    end += w[i];
  }
  TORCH_CHECK(end <= 8 * data.numel(), "unpack_fields: fields beyond the data");
  torch::Tensor out = torch::empty({n}, torch::TensorOptions().dtype(torch::kInt64));
  int64_t* values = out.data_ptr<int64_t>();
  int64_t pos = start;
  for (int64_t i = 0; i < n; ++i) {
    int64_t value = 0;
    for (int64_t b = 0; b < w[i]; ++b, ++pos) value = (value << 1) | ((bytes[pos >> 3] >> (7 - (pos & 7))) & 1);
    values[i] = value;
  }
  return out;
}

// A fixed distribution's cumulative counts: 0 .. 2^24, increasing, 1 to 256 symbols.
static void check_fixed_cdf(const int32_t* c, int64_t entries, const char* name) {
  TORCH_CHECK(entries >= 2 && entries <= 257 && c[0] == 0 && c[entries - 1] == (1 << kPrecision), name,
              ": a cdf from 0 to 2^24 of 1 to 256 symbols");
  for (int64_t i = 0; i + 1 < entries; ++i) TORCH_CHECK(c[i + 1] > c[i], name, ": a symbol of zero probability");
}

// One message of ``symbols`` (uint8) all under one distribution: ``cdf`` its L + 1 cumulative counts (int32, 0 ..
// 2^24, increasing). The Bernoulli streams (hash tables, offset masks) of arithmetic.py's encode_bernoulli.
torch::Tensor range_encode_fixed(torch::Tensor cdf, torch::Tensor symbols) {
  TORCH_CHECK(cdf.dtype() == torch::kInt32 && symbols.dtype() == torch::kUInt8,
              "range_encode_fixed: int32 cdf, uint8 symbols");
  cdf = cdf.contiguous();
  symbols = symbols.contiguous();
  const int32_t* c = cdf.data_ptr<int32_t>();
  const uint8_t* s = symbols.data_ptr<uint8_t>();
  const int64_t n = symbols.numel(), entries = cdf.numel();
  check_fixed_cdf(c, entries, "range_encode_fixed");
  RangeEncoder encoder;
  encoder.words.reserve(static_cast<size_t>(n / 32 + 4));
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(s[i] + 1 < entries, "range_encode_fixed: a symbol outside the distribution");
    const uint64_t left = static_cast<uint64_t>(c[s[i]]);
    encoder.encode(left, static_cast<uint64_t>(c[s[i] + 1]) - left);
  }
  return predictgs::words_tensor(encoder.sealed());
}

// The ``count`` symbols (uint8) of a message written by range_encode_fixed (or constriction's RangeEncoder with
// the same fixed categorical model). Returns (symbols, status): status 0 ok, 1 corrupt data, 2 data left after
// the last symbol.
std::vector<torch::Tensor> range_decode_fixed(torch::Tensor words, torch::Tensor cdf, int64_t count) {
  TORCH_CHECK(words.dtype() == torch::kInt32 && cdf.dtype() == torch::kInt32, "range_decode_fixed: int32 words and cdf");
  TORCH_CHECK(count >= 0, "range_decode_fixed: a negative count");
  words = words.contiguous();
  cdf = cdf.contiguous();
  const int32_t* c = cdf.data_ptr<int32_t>();
  const int64_t entries = cdf.numel();
  check_fixed_cdf(c, entries, "range_decode_fixed");
  torch::Tensor symbols = torch::empty({count}, torch::TensorOptions().dtype(torch::kUInt8));
  torch::Tensor status = torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt64));
  uint8_t* out = symbols.data_ptr<uint8_t>();
  RangeDecoder decoder(reinterpret_cast<const uint32_t*>(words.data_ptr<int32_t>()), words.numel());
  int64_t symbol = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (!decoder.decode(c, entries, &symbol)) {
      status.data_ptr<int64_t>()[0] = 1;
      return {symbols, status};
    }
    out[i] = static_cast<uint8_t>(symbol);
  }
  if (!decoder.maybe_exhausted()) status.data_ptr<int64_t>()[0] = 2;
  return {symbols, status};
}

// The symbols of a message written by range_encode (or constriction's RangeEncoder), element i read from the
// row of ``lengths[i]`` table entries starting at ``starts[i]``. Returns (symbols, status): status[0] 0 ok,
// 1 corrupt data (a quantile outside every row), 2 data left after the last symbol; status[1] the count of
// symbols that are the first or the last of their row (the Gaussian streams' escapes).
std::vector<torch::Tensor> range_decode(torch::Tensor words, torch::Tensor table, torch::Tensor starts,
                                        torch::Tensor lengths) {
  TORCH_CHECK(words.dtype() == torch::kInt32 && table.dtype() == torch::kInt32 && starts.dtype() == torch::kInt64 &&
                  lengths.dtype() == torch::kInt64, "range_decode: int32 words and table, int64 rows");
  words = words.contiguous();
  table = table.contiguous();
  starts = starts.contiguous();
  lengths = lengths.contiguous();
  const int64_t n = starts.numel(), entries = table.numel();
  TORCH_CHECK(lengths.numel() == n, "range_decode: one length per row");
  const int32_t* cdf = table.data_ptr<int32_t>();
  const int64_t* start = starts.data_ptr<int64_t>();
  const int64_t* length = lengths.data_ptr<int64_t>();
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor symbols = torch::zeros({n}, i64), status = torch::zeros({2}, i64);
  int64_t* out = symbols.data_ptr<int64_t>();
  int64_t edges = 0;
  RangeDecoder decoder(reinterpret_cast<const uint32_t*>(words.data_ptr<int32_t>()), words.numel());
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(start[i] >= 0 && length[i] >= 2 && start[i] + length[i] <= entries,
                "range_decode: table row out of range");
    if (!decoder.decode(cdf + start[i], length[i], out + i)) {
      status.data_ptr<int64_t>()[0] = 1;
      return {symbols, status};
    }
    edges += out[i] == 0 || out[i] == length[i] - 2;
  }
  if (!decoder.maybe_exhausted()) status.data_ptr<int64_t>()[0] = 2;
  status.data_ptr<int64_t>()[1] = edges;
  return {symbols, status};
}

// The values of decode_gaussian (arithmetic.py) in file order, from the decoded symbols (coding order), the
// escapes' excess (in the order of the escaped elements) and the raw low bits of the elements with shift > 0
// (``coarse``, coding order). Returns (values, status): 0 ok, 1 an escaped value out of range (|b| w >=
// escape_limit), 2 a value out of the int32 range (|q| >= value_limit).
std::vector<torch::Tensor> gaussian_values(torch::Tensor symbol, torch::Tensor cls, torch::Tensor centre,
                                           torch::Tensor width, torch::Tensor order, torch::Tensor class_width,
                                           torch::Tensor excess, torch::Tensor coarse, torch::Tensor low,
                                           double escape_limit, double value_limit) {
  const int64_t n = symbol.numel();
  TORCH_CHECK(cls.numel() == n && centre.numel() == n && width.numel() == n && order.numel() == n,
              "gaussian_values: one class, centre, width and position per symbol");
  TORCH_CHECK(coarse.numel() == low.numel(), "gaussian_values: one low value per coarse element");
  symbol = symbol.contiguous();
  excess = excess.contiguous();
  coarse = coarse.contiguous();
  low = low.contiguous();
  const int64_t* s_in = symbol.data_ptr<int64_t>();
  const int64_t* c_in = cls.contiguous().data_ptr<int64_t>();
  const double* centre_in = centre.contiguous().data_ptr<double>();
  const double* w_in = width.contiguous().data_ptr<double>();
  const int64_t* o = order.contiguous().data_ptr<int64_t>();
  const int64_t* half_width = class_width.contiguous().data_ptr<int64_t>();
  const int64_t* ex = excess.data_ptr<int64_t>();
  const int64_t* co = coarse.data_ptr<int64_t>();
  const int64_t* lo = low.data_ptr<int64_t>();
  const int64_t num_excess = excess.numel(), num_coarse = coarse.numel();
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor values = torch::empty({n}, i64), status = torch::zeros({1}, i64);
  std::vector<double> q(n);
  int64_t e = 0;
  bool escaped_out_of_range = false;
  for (int64_t j = 0; j < n; ++j) {
    const int64_t k = half_width[c_in[j]];
    double b = static_cast<double>(s_in[j]) - static_cast<double>(k + 1);
    if (s_in[j] == 0 || s_in[j] == 2 * k + 2) {
      TORCH_CHECK(e < num_excess, "gaussian_values: fewer excess values than escapes");
      const double sign = b > 0.0 ? 1.0 : (b < 0.0 ? -1.0 : 0.0);
      b = sign * static_cast<double>(ex[e++] + (k + 1));
    }
    if (std::fabs(b) * w_in[j] >= escape_limit) escaped_out_of_range = true;
    q[j] = centre_in[j] + b * w_in[j];
  }
  TORCH_CHECK(e == num_excess, "gaussian_values: more excess values than escapes");
  if (num_excess > 0 && escaped_out_of_range) {
    status.data_ptr<int64_t>()[0] = 1;
    return {values, status};
  }
  for (int64_t i = 0; i < num_coarse; ++i) {
    TORCH_CHECK(co[i] >= 0 && co[i] < n, "gaussian_values: coarse element out of range");
    q[co[i]] += static_cast<double>(lo[i]);
  }
  int64_t* out = values.data_ptr<int64_t>();
  for (int64_t j = 0; j < n; ++j) {
    if (std::fabs(q[j]) >= value_limit) {
      status.data_ptr<int64_t>()[0] = 2;
      return {values, status};
    }
    out[o[j]] = static_cast<int64_t>(q[j]);
  }
  return {values, status};
}
