#pragma once
// Loader for GGUF checkpoints (llama.cpp's format) of the llama architecture: the
// hyper-parameters come from the llama.* metadata keys, the weights from the token_embd /
// blk.N.* / output* tensors (F32, F16, BF16, or a quantised type of detail/io/GgmlQuants.hpp,
// dequantised to Scalar on load: docs/formats.md says what that costs in memory).
//
// RoPE scaling: linear from the llama.rope.scaling.* keys, Llama 3 from the rope_freqs.weight
// tensor of per-pair divisors (detail/io/GgufRope.hpp).
//
// llama.cpp's converters permute Hugging Face's Q and K rows so that rotary embeddings pair
// adjacent dimensions; GGUF llama checkpoints therefore use RopeLayout::AdjacentPairs, like
// llama2.c files, and load with no permutation.

#include <climits>
#include <set>
#include <string>
#include <vector>

#include "../Config.hpp"
#include "../Error.hpp"
#include "../Weights.hpp"
#include "../detail/io/Finite.hpp"
#include "../detail/io/GgufFile.hpp"
#include "../detail/io/GgufRope.hpp"

namespace depass {
namespace detail {

/// Linear RoPE scaling from `llama.rope.scaling.type` = "linear" with
/// `llama.rope.scaling.factor`, or from the older `llama.rope.scale_linear`. Llama 3
/// scaling comes as the rope_freqs.weight tensor (see load_gguf); YaRN and LongRoPE are
/// refused.
inline RopeScaling gguf_rope_scaling(const GgufFile& f) {
  RopeScaling rs;
  const std::string type = f.get_string("llama.rope.scaling.type", "none");
  if (type == "linear") {
    rs.type = RopeScaling::Type::Linear;
    rs.factor = f.get_float("llama.rope.scaling.factor");
  } else if (type != "none") {
    f.fail("unsupported llama.rope.scaling.type '" + type +
           "' (supported: none, linear; llama3 scaling comes as the rope_freqs.weight tensor)");
  }
  if (f.has("llama.rope.scale_linear")) {
    const double factor = f.get_float("llama.rope.scale_linear");
    if (rs.type == RopeScaling::Type::Linear && factor != rs.factor)
      f.fail("llama.rope.scale_linear (" + std::to_string(factor) +
             ") disagrees with llama.rope.scaling.factor (" + std::to_string(rs.factor) + ")");
    if (factor != 1.0 || rs.type == RopeScaling::Type::Linear) {
      rs.type = RopeScaling::Type::Linear;
      rs.factor = factor;
    }
  }
  return rs;
}

/// The llama hyper-parameters of a GGUF file, validated (FormatError naming the key).
inline Config gguf_llama_config(const GgufFile& f) {
  const std::string arch = f.get_string("general.architecture");
  if (arch != "llama") f.fail("unsupported GGUF architecture '" + arch + "' (supported: llama)");
  if (f.get_uint("llama.expert_count", 0) > 0)
    f.fail("llama.expert_count is " + std::to_string(f.get_uint("llama.expert_count")) +
           ": mixture-of-experts GGUF models are not supported");

  auto int_key = [&](const std::string& key) {
    return static_cast<int>(f.get_uint_at_most(key, INT_MAX));
  };
  Config c;
  c.architecture = "llama";
  c.dim = int_key("llama.embedding_length");
  c.n_layers = int_key("llama.block_count");
  c.hidden_dim = int_key("llama.feed_forward_length");
  c.n_heads = int_key("llama.attention.head_count");
  c.n_kv_heads =
      f.has("llama.attention.head_count_kv") ? int_key("llama.attention.head_count_kv") : c.n_heads;
  c.max_seq_len = int_key("llama.context_length");
  c.norm_eps = f.get_float("llama.attention.layer_norm_rms_epsilon");
  c.rope_theta = f.get_float("llama.rope.freq_base", 10000.0);
  c.rope_layout = RopeLayout::AdjacentPairs;
  c.rope_scaling = gguf_rope_scaling(f);

  // The head width is embedding_length / head_count unless attention.key_length says
  // otherwise (checked against value_length below: depass has one head_dim).
  if (f.has("llama.attention.key_length")) {
    c.head_dim = int_key("llama.attention.key_length");
  } else {
    if (c.n_heads > 0 && c.dim % c.n_heads != 0)
      f.fail("llama.attention.head_count (" + std::to_string(c.n_heads) +
             ") does not divide llama.embedding_length (" + std::to_string(c.dim) + ")");
    c.head_dim = c.n_heads > 0 ? c.dim / c.n_heads : 0;
  }
  // The vocabulary size: the tokenizer's token list, else llama.vocab_size; if both are
  // present they must agree.
  const bool has_tokens = f.has("tokenizer.ggml.tokens");
  if (!has_tokens && !f.has("llama.vocab_size"))
    f.fail(
        "cannot determine the vocabulary size: neither 'tokenizer.ggml.tokens' nor "
        "'llama.vocab_size' is present");
  if (has_tokens) {
    const std::size_t n = f.get_strings("tokenizer.ggml.tokens").size();
    if (n > static_cast<std::size_t>(INT_MAX)) f.fail("tokenizer.ggml.tokens is too long");
    c.vocab_size = static_cast<int>(n);
    if (f.has("llama.vocab_size") && int_key("llama.vocab_size") != c.vocab_size)
      f.fail("llama.vocab_size (" + std::to_string(int_key("llama.vocab_size")) +
             ") disagrees with the " + std::to_string(c.vocab_size) +
             " entries of tokenizer.ggml.tokens");
  } else {
    c.vocab_size = int_key("llama.vocab_size");
  }
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;

  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    f.fail(std::string("implausible GGUF llama configuration: ") + e.what());
  }
  if (f.has("llama.attention.value_length") &&
      int_key("llama.attention.value_length") != c.head_dim)
    f.fail("llama.attention.value_length (" +
           std::to_string(int_key("llama.attention.value_length")) +
           ") differs from the key length (" + std::to_string(c.head_dim) +
           "), which is not supported");
  // Partial rotary embeddings (rotating only the first dimensions of a head) are not
  // implemented; running such a model with full rotation would be silently wrong.
  if (f.has("llama.rope.dimension_count") && int_key("llama.rope.dimension_count") != c.head_dim)
    f.fail("llama.rope.dimension_count (" + std::to_string(int_key("llama.rope.dimension_count")) +
           ") differs from the head width (" + std::to_string(c.head_dim) +
           "): partial rotary embeddings are not supported");

  return c;
}

/// Llama 3 RoPE scaling from the (vetted) rope_freqs.weight tensor, if the file has one.
inline void apply_gguf_rope_freqs(GgufFile& f, Config& c) {
  const GgufTensorInfo* t = f.find_tensor("rope_freqs.weight");
  if (!t) return;
  std::vector<double> divisors(static_cast<std::size_t>(c.head_dim / 2));
  f.read_tensor(*t, divisors.data());
  c.rope_scaling = rope_scaling_from_divisors(divisors, c.rope_theta, c.head_dim, f.path());
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    f.fail(std::string("implausible RoPE scaling from tensor 'rope_freqs.weight': ") + e.what());
  }
}

}  // namespace detail

namespace io {

/// A parsed GGUF file: its metadata and tensor infos (see detail/io/GgufFile.hpp).
using GgufFile = detail::GgufFile;

/// std::runtime_error naming the path if it cannot be read; FormatError naming the file,
/// the key or tensor and the problem if it is malformed, not a llama model, holds a tensor
/// of the wrong shape or of a type depass does not convert, or holds tensors depass would
/// ignore (a model run without some of its weights would be silently wrong).
template <typename Scalar>
Checkpoint<Scalar> load_gguf(const std::string& path) {
  GgufFile f(path);
  Checkpoint<Scalar> result;
  result.config = detail::gguf_llama_config(f);
  const Config& c = result.config;
  const std::int64_t D = c.dim, I = c.hidden_dim, V = c.vocab_size, Q = c.q_width(),
                     K = c.kv_width();

  // Vet every tensor (presence, shape, type) before allocating any, and refuse extras.
  std::set<std::string> used;
  auto expect = [&](const std::string& name, std::vector<std::int64_t> shape) {
    f.check_tensor(name, shape);
    used.insert(name);
  };
  auto blk = [](std::size_t l, const char* name) {
    return "blk." + std::to_string(l) + "." + name + ".weight";
  };
  const auto L = static_cast<std::size_t>(c.n_layers);
  expect("token_embd.weight", {V, D});
  for (std::size_t l = 0; l < L; ++l) {
    expect(blk(l, "attn_norm"), {D});
    expect(blk(l, "attn_q"), {Q, D});
    expect(blk(l, "attn_k"), {K, D});
    expect(blk(l, "attn_v"), {K, D});
    expect(blk(l, "attn_output"), {D, Q});
    expect(blk(l, "ffn_norm"), {D});
    expect(blk(l, "ffn_gate"), {I, D});
    expect(blk(l, "ffn_up"), {I, D});
    expect(blk(l, "ffn_down"), {D, I});
  }
  expect("output_norm.weight", {D});
  if (!c.tied_embeddings) expect("output.weight", {V, D});
  if (f.find_tensor("rope_freqs.weight")) {
    expect("rope_freqs.weight", {c.head_dim / 2});
    if (c.rope_scaling.type != RopeScaling::Type::None)
      f.fail("tensor 'rope_freqs.weight' (llama3 RoPE scaling) together with linear scaling is "
             "not supported");
  }
  for (const auto& t : f.tensors()) {
    if (used.count(t.name)) continue;
    f.fail("tensor '" + t.name + "' is not part of a llama model as depass reads it (unsupported)");
  }

  auto matrix = [&](const std::string& name) {
    const auto& t = *f.find_tensor(name);
    // ne = [cols, rows] with ne[0] fastest: exactly RowMatrix's storage order.
    RowMatrix<Scalar> m(static_cast<Eigen::Index>(t.ne[1]), static_cast<Eigen::Index>(t.ne[0]));
    f.read_tensor(t, m.data());
    detail::require_finite(m, f.path(), "tensor '" + name + "'");
    return m;
  };
  auto vector = [&](const std::string& name) {
    const auto& t = *f.find_tensor(name);
    Vector<Scalar> v(static_cast<Eigen::Index>(t.ne[0]));
    f.read_tensor(t, v.data());
    detail::require_finite(v, f.path(), "tensor '" + name + "'");
    return v;
  };

  detail::apply_gguf_rope_freqs(f, result.config);

  Weights<Scalar>& w = result.weights;
  w.token_embedding = matrix("token_embd.weight");
  w.layers.resize(L);
  for (std::size_t l = 0; l < L; ++l) {
    LayerWeights<Scalar>& layer = w.layers[l];
    layer.attention_norm = vector(blk(l, "attn_norm"));
    layer.wq = matrix(blk(l, "attn_q"));
    layer.wk = matrix(blk(l, "attn_k"));
    layer.wv = matrix(blk(l, "attn_v"));
    layer.wo = matrix(blk(l, "attn_output"));
    layer.mlp_norm = vector(blk(l, "ffn_norm"));
    layer.w1 = matrix(blk(l, "ffn_gate"));
    layer.w3 = matrix(blk(l, "ffn_up"));
    layer.w2 = matrix(blk(l, "ffn_down"));
  }
  w.final_norm = vector("output_norm.weight");
  if (!c.tied_embeddings) w.output = matrix("output.weight");
  w.validate(c);  // cannot fail after the checks above; guards future edits
  return result;
}

}  // namespace io
}  // namespace depass
