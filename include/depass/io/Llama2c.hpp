#pragma once
// Loader for llama2.c checkpoints: the legacy headerless format of run.c (v0) and the
// versioned exports of export.py, float32 (v1) and int8 with grouped f32 scales (v2); the
// layouts are in detail/io/Llama2cLayout.hpp. Matrices are stored [out, in] row-major,
// exactly RowMatrix's layout. v2 weights are dequantised to Scalar on load (w = q * scale,
// computed in float as runq.c does).

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../Weights.hpp"
#include "../detail/io/BinaryFile.hpp"
#include "../detail/io/Convert.hpp"
#include "../detail/io/Finite.hpp"
#include "../detail/io/Llama2cLayout.hpp"

namespace depass {
namespace detail {

/// Slice `index` of an int8 (v2) array into dst: count int8 values, then count / group
/// f32 scales. A non-finite scale is refused naming the array, layer and group.
template <typename Scalar>
void read_llama2c_int8(BinaryFile& file, const Llama2cArray& a, std::uint64_t index, Scalar* dst,
                       const std::string& label) {
  const std::uint64_t at = a.offset + index * a.slice_bytes();
  std::vector<std::int8_t> q(static_cast<std::size_t>(a.count));
  std::vector<float> scales(static_cast<std::size_t>(a.count / a.group_size));
  file.read(at, a.count, q.data(), label);
  file.read(at + a.count, scales.size() * sizeof(float), scales.data(), label + " scales");
  for (std::size_t g = 0; g < scales.size(); ++g) {
    if (!std::isfinite(scales[g]))
      throw FormatError(file.path() + ": " + label + " group " + std::to_string(g) + " (values " +
                        std::to_string(g * a.group_size) + ".." +
                        std::to_string((g + 1) * a.group_size - 1) +
                        ") has a non-finite scale; weights must be finite");
    for (std::uint64_t k = g * a.group_size; k < (g + 1) * a.group_size; ++k)
      dst[k] = static_cast<Scalar>(static_cast<float>(q[k]) * scales[g]);
  }
}

}  // namespace detail

namespace io {

/// std::runtime_error if path cannot be read; FormatError if the header is implausible or
/// the file size disagrees with it (naming the truncated array, or the trailing bytes), or
/// a weight or v2 scale is not finite.
template <typename Scalar>
Checkpoint<Scalar> load_llama2c(const std::string& path) {
  detail::BinaryFile file(path);
  char bytes[detail::llama2c_versioned_header_size] = {};
  const std::size_t n = static_cast<std::size_t>(
      std::min<std::uint64_t>(file.size(), detail::llama2c_versioned_header_size));
  file.read(0, n, bytes, "llama2.c header");
  const detail::Llama2cHeader header = detail::parse_llama2c_header(bytes, n, path);
  const std::vector<detail::Llama2cArray> arrays = detail::llama2c_layout(header, path);
  // Everything is validated before the first allocation.
  detail::check_llama2c_size(arrays, file.size(), path);

  auto array = [&](const char* name) -> const detail::Llama2cArray& {
    for (const auto& a : arrays)
      if (a.name == name) return a;
    throw std::logic_error(std::string("llama2.c layout lacks ") + name);
  };
  // Names in messages: "array 'wq' (layer 3)" for the arrays stacked over layers.
  auto label = [&](const char* name, std::size_t index) {
    return "array '" + std::string(name) + "'" +
           (array(name).layered ? " (layer " + std::to_string(index) + ")" : std::string());
  };
  // Reads slice `index` of an array into dst.
  auto read_slice = [&](const char* name, std::size_t index, Scalar* dst) {
    const detail::Llama2cArray& a = array(name);
    if (a.encoding == detail::Llama2cArray::Encoding::Int8)
      return detail::read_llama2c_int8(file, a, index, dst, label(name, index));
    detail::read_elements(file, a.offset + index * a.slice_bytes(), detail::ElementType::F32,
                          static_cast<std::size_t>(a.count), dst, label(name, index));
  };
  auto matrix = [&](const char* name, std::size_t index, Eigen::Index rows, Eigen::Index cols) {
    RowMatrix<Scalar> m(rows, cols);
    read_slice(name, index, m.data());
    detail::require_finite(m, path, label(name, index));
    return m;
  };
  auto vector = [&](const char* name, std::size_t index, Eigen::Index size) {
    Vector<Scalar> v(size);
    read_slice(name, index, v.data());
    detail::require_finite(v, path, label(name, index));
    return v;
  };

  Checkpoint<Scalar> result;
  result.config = header.config;
  const Config& c = result.config;
  Weights<Scalar>& w = result.weights;
  w.token_embedding = matrix("token_embedding", 0, c.vocab_size, c.dim);
  w.layers.resize(static_cast<std::size_t>(c.n_layers));
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    LayerWeights<Scalar>& layer = w.layers[l];
    layer.attention_norm = vector("rms_att", l, c.dim);
    layer.wq = matrix("wq", l, c.q_width(), c.dim);
    layer.wk = matrix("wk", l, c.kv_width(), c.dim);
    layer.wv = matrix("wv", l, c.kv_width(), c.dim);
    layer.wo = matrix("wo", l, c.dim, c.q_width());
    layer.mlp_norm = vector("rms_ffn", l, c.dim);
    layer.w1 = matrix("w1", l, c.hidden_dim, c.dim);
    layer.w2 = matrix("w2", l, c.dim, c.hidden_dim);
    layer.w3 = matrix("w3", l, c.hidden_dim, c.dim);
  }
  w.final_norm = vector("rms_final", 0, c.dim);
  if (!header.shared_classifier) w.output = matrix("wcls", 0, c.vocab_size, c.dim);
  w.validate(c);  // cannot fail for a layout built from c; guards future edits
  return result;
}

}  // namespace io
}  // namespace depass
