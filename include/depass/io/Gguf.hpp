#pragma once
// Loader for GGUF checkpoints (llama.cpp's format) of the llama, qwen2, qwen3, phi3 and gpt2
// architectures: the hyper-parameters come from the {arch}.* metadata keys
// (detail/io/GgufConfig.hpp), the weights from the token_embd / position_embd / blk.N.* /
// output* tensors (detail/io/GgufTensors.hpp), in F32, F16, BF16, or a quantised type of
// detail/io/GgmlQuants.hpp, dequantised to Scalar on load: docs/formats.md says what that
// costs in memory.
//
// RoPE scaling: linear from the {arch}.rope.scaling.* keys; Llama 3 (llama only) from the
// rope_freqs.weight tensor of per-pair divisors (detail/io/GgufRope.hpp).
//
// llama.cpp's llama converter permutes Hugging Face's Q and K rows so that rotary embeddings
// pair adjacent dimensions; GGUF llama checkpoints therefore use RopeLayout::AdjacentPairs,
// like llama2.c files, and load with no permutation. Its qwen2, qwen3 and phi3 converters do
// not permute, and those models rotate halves (RopeLayout::Halves), as on Hugging Face.

#include <string>
#include <vector>

#include "../Config.hpp"
#include "../Error.hpp"
#include "../Weights.hpp"
#include "../detail/io/GgufConfig.hpp"
#include "../detail/io/GgufFile.hpp"
#include "../detail/io/GgufRope.hpp"
#include "../detail/io/GgufTensors.hpp"

namespace depass {
namespace detail {

/// Marks llama's rope_freqs.weight (Llama 3 RoPE scaling) as read, after checking its
/// shape and that no linear scaling comes with it. Other families refuse the tensor.
template <typename Scalar>
void vet_gguf_rope_freqs(GgufTensors<Scalar>& t, const Config& c, const GgufFile& f) {
  if (c.architecture != "llama" || !t.has("rope_freqs.weight")) return;
  t.vector("rope_freqs.weight", c.head_dim / 2);
  if (c.rope_scaling.type != RopeScaling::Type::None)
    f.fail("tensor 'rope_freqs.weight' (llama3 RoPE scaling) together with linear scaling is "
           "not supported");
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
/// the key or tensor and the problem if it is malformed, not of a supported architecture
/// (detail::kGgufArchitectures), lacks a tensor or metadata key, holds a tensor
/// of the wrong shape or of a type depass does not convert, or holds tensors depass would
/// ignore (a model run without some of its weights would be silently wrong).
template <typename Scalar>
Checkpoint<Scalar> load_gguf(const std::string& path) {
  GgufFile f(path);
  Checkpoint<Scalar> result;
  result.config = detail::gguf_config(f);
  // Vet every tensor (presence, shape, type) before allocating any, and refuse extras.
  detail::GgufTensors<Scalar> tensors(f);
  detail::visit_gguf_model(tensors, result.config, result.weights);
  detail::vet_gguf_rope_freqs(tensors, result.config, f);
  tensors.refuse_unused(result.config.architecture);

  detail::apply_gguf_rope_freqs(f, result.config);
  tensors.start_reading();
  detail::visit_gguf_model(tensors, result.config, result.weights);
  result.weights.validate(result.config);  // cannot fail after the checks above; guards future edits
  return result;
}

}  // namespace io
}  // namespace depass
