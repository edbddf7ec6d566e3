#pragma once
// Loader for legacy llama2.c checkpoints (run.c's format): seven int32 header fields,
// then every weight as f32, each kind stacked over layers. Matrices are stored
// [out, in] row-major, exactly RowMatrix's layout, so each one is a single read.

#include <string>
#include <vector>

#include "../Weights.hpp"
#include "../detail/io/BinaryFile.hpp"
#include "../detail/io/Convert.hpp"
#include "../detail/io/Finite.hpp"
#include "../detail/io/Llama2cLayout.hpp"

namespace depass {
namespace io {

/// std::runtime_error if path cannot be read; FormatError if the header is implausible or
/// the file size disagrees with it (naming the truncated array, or the trailing bytes).
template <typename Scalar>
Checkpoint<Scalar> load_llama2c(const std::string& path) {
  detail::BinaryFile file(path);
  if (file.size() < detail::llama2c_header_size)
    throw FormatError(path + ": truncated: " + std::to_string(file.size()) +
                      "-byte file is too short for the 28-byte llama2.c header");
  char bytes[detail::llama2c_header_size];
  file.read(0, sizeof bytes, bytes, "llama2.c header");
  const detail::Llama2cHeader header = detail::parse_llama2c_header(bytes, path);
  const std::vector<detail::Llama2cArray> arrays = detail::llama2c_layout(header, path);
  // Everything is validated before the first allocation.
  detail::check_llama2c_size(arrays, file.size(), path);

  auto array = [&](const char* name) -> const detail::Llama2cArray& {
    for (const auto& a : arrays)
      if (a.name == name) return a;
    throw std::logic_error(std::string("llama2.c layout lacks ") + name);
  };
  // Reads slice `index` of a stacked array into dst (count elements per slice).
  auto read_slice = [&](const char* name, std::size_t index, Scalar* dst, std::size_t count) {
    const detail::Llama2cArray& a = array(name);
    const std::uint64_t offset = a.offset + index * count * sizeof(float);
    detail::read_elements(file, offset, detail::ElementType::F32, count, dst,
                          "array '" + std::string(name) + "'");
  };
  // Names in messages: "array 'wq' (layer 3)" for the arrays stacked over layers.
  auto label = [](const char* name, std::size_t index) {
    const std::string n(name);
    const bool per_layer = n != "token_embedding" && n != "rms_final" && n != "wcls";
    return "array '" + n + "'" + (per_layer ? " (layer " + std::to_string(index) + ")" : "");
  };
  auto matrix = [&](const char* name, std::size_t index, Eigen::Index rows, Eigen::Index cols) {
    RowMatrix<Scalar> m(rows, cols);
    read_slice(name, index, m.data(), static_cast<std::size_t>(m.size()));
    detail::require_finite(m, path, label(name, index));
    return m;
  };
  auto vector = [&](const char* name, std::size_t index, Eigen::Index size) {
    Vector<Scalar> v(size);
    read_slice(name, index, v.data(), static_cast<std::size_t>(size));
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
