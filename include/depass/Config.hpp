#pragma once
// Shape and hyper-parameters of a decoder-only transformer, and the architecture choices
// (normalisation, MLP, positions, biases) that the layer types of layers/ read once when
// they are built.

#include <cstdint>
#include <stdexcept>
#include <string>

namespace depass {

/// How rotary embeddings pair up the dimensions of a head.
enum class RopeLayout {
  AdjacentPairs,  ///< (0,1), (2,3), ... : llama2.c and GGUF llama checkpoints
  Halves          ///< (0, d/2), (1, d/2+1), ... : Hugging Face checkpoints
};

inline const char* to_string(RopeLayout layout) {
  return layout == RopeLayout::AdjacentPairs ? "adjacent-pairs" : "halves";
}

/// Normalisation before each block and before the unembedding.
enum class NormKind {
  RMSNorm,   ///< x * r * w, r = 1/sqrt(mean(x^2) + eps): Llama, Mistral, Qwen2 (Gemma's
             ///< x * r * (1 + w) is read as this with w + 1 as the gain)
  LayerNorm  ///< (x - mean) * r * g + b, r = 1/sqrt(var + eps): GPT-2
};

/// The MLP's nonlinearity.
enum class MlpKind {
  GatedSiLU,      ///< SwiGLU: silu(x W1^T) * (x W3^T), then W2
  GeluTanh,       ///< gelu_tanh(x W1^T + b1), then W2: GPT-2's "gelu_new"
  GatedGeluTanh,  ///< GeGLU: gelu_tanh(x W1^T) * (x W3^T), then W2: Gemma's "gelu_pytorch_tanh"
  GeluErf         ///< gelu(x W1^T + b1) with the exact x Phi(x), Phi the normal CDF, then W2: GPT-NeoX's "gelu"
};

/// Whether the MLP multiplies its activation by an up projection (SwiGLU, GeGLU).
inline bool gated(MlpKind kind) { return kind == MlpKind::GatedSiLU || kind == MlpKind::GatedGeluTanh; }

inline const char* to_string(MlpKind kind) {
  switch (kind) {
    case MlpKind::GatedSiLU: return "gated-silu";
    case MlpKind::GeluTanh: return "gelu-tanh";
    case MlpKind::GatedGeluTanh: return "gated-gelu-tanh";
    case MlpKind::GeluErf: return "gelu-erf";
  }
  return "?";
}

/// How positions enter the model.
enum class PositionKind {
  Rotary,  ///< rotary embeddings on queries and keys
  Learned  ///< a learned table added to the token embeddings (GPT-2)
};

/// Rescaling of the rotary frequencies for long contexts.
struct RopeScaling {
  enum class Type { None, Linear, Llama3 };
  Type type = Type::None;
  double factor = 1.0;               // Linear, Llama3: how much longer the context got
  double low_freq_factor = 1.0;      // Llama3
  double high_freq_factor = 4.0;     // Llama3
  double original_max_position = 0;  // Llama3: context length before scaling
};

struct Config {
  std::string architecture = "llama";  // family name as read from the checkpoint
  int dim = 0;                         // D: residual stream width
  int n_layers = 0;                    // L: transformer blocks
  int n_heads = 0;                     // H: query heads
  int n_kv_heads = 0;                  // G: key/value heads, divides H (GQA)
  int head_dim = 0;                    // d: per-head width (H*d need not equal D)
  int hidden_dim = 0;                  // I: MLP width
  int vocab_size = 0;                  // V
  int max_seq_len = 0;                 // longest sequence the model accepts
  double norm_eps = 1e-5;              // RMSNorm epsilon
  double rope_theta = 10000.0;         // RoPE base frequency
  RopeLayout rope_layout = RopeLayout::Halves;
  bool tied_embeddings = false;        // unembedding == token embedding
  bool attention_qkv_bias = false;     // q/k/v projections carry biases (Qwen2)
  bool attention_out_bias = false;     // output projection carries a bias
  bool mlp_bias = false;               // gate/up/down projections carry biases
  bool qk_norm = false;                // RMSNorm over each head's query and key before RoPE (Qwen3)
  NormKind norm = NormKind::RMSNorm;   // LayerNorm always carries a bias
  MlpKind mlp = MlpKind::GatedSiLU;
  PositionKind positions = PositionKind::Rotary;
  RopeScaling rope_scaling;            // only with Rotary positions
  double embedding_scale = 1.0;        // token embeddings are multiplied by this (Gemma: sqrt(D));
                                       // the tied unembedding reads the unscaled table
  bool post_norms = false;             // Gemma 2: each block's output is RMS-normed before the residual add
  double attention_scale = 0;          // scores = q.k * this; 0: 1/sqrt(head_dim) (Gemma 2: query_pre_attn_scalar^-1/2)
  double attention_softcap = 0;        // > 0: scores -> cap * tanh(scores / cap) before the softmax (Gemma 2)
  double final_softcap = 0;            // > 0: logits -> cap * tanh(logits / cap) (Gemma 2)
  int rotary_dims = 0;                 // rotated dimensions of each head, even, <= head_dim; 0: all (GPT-NeoX: rotary_pct * d)
  bool parallel_residual = false;      // GPT-NeoX: x += attention(norm1(x)) + mlp(norm2(x)), both reading the layer input

  int q_width() const { return n_heads * head_dim; }
  int kv_width() const { return n_kv_heads * head_dim; }
  int heads_per_kv() const { return n_heads / n_kv_heads; }
  bool gated_mlp() const { return gated(mlp); }
  /// How many leading dimensions of each head the rotary embedding turns.
  int rotated_dims() const { return rotary_dims > 0 ? rotary_dims : head_dim; }
  /// Terms no input owns (biases, norm offsets): DePass routes them to a bias component.
  bool has_biases() const {
    return attention_qkv_bias || attention_out_bias || mlp_bias || norm == NormKind::LayerNorm;
  }

  /// Throws std::invalid_argument naming the first field out of range.
  void validate() const {
    // Upper bounds keep products like V*D and L*D*I far from overflow and refuse
    // headers that would make us allocate absurd amounts of memory.
    auto check = [](const char* name, long long value, long long lo, long long hi) {
      if (value < lo || value > hi)
        throw std::invalid_argument("Config: " + std::string(name) + " = " + std::to_string(value) +
                                    " is out of range [" + std::to_string(lo) + ", " +
                                    std::to_string(hi) + "]");
    };
    check("dim", dim, 1, 1 << 16);
    check("n_layers", n_layers, 1, 1024);
    check("n_heads", n_heads, 1, 1024);
    check("n_kv_heads", n_kv_heads, 1, n_heads);
    check("head_dim", head_dim, 2, 1 << 12);
    check("hidden_dim", hidden_dim, 1, 1 << 18);
    check("vocab_size", vocab_size, 1, 1 << 22);
    check("max_seq_len", max_seq_len, 1, 1 << 22);
    if (n_heads % n_kv_heads != 0)
      throw std::invalid_argument("Config: n_heads (" + std::to_string(n_heads) +
                                  ") must be a multiple of n_kv_heads (" +
                                  std::to_string(n_kv_heads) + ")");
    if (head_dim % 2 != 0)
      throw std::invalid_argument("Config: head_dim (" + std::to_string(head_dim) +
                                  ") must be even for rotary embeddings");
    if (!(norm_eps >= 0.0) || !(norm_eps < 1.0))
      throw std::invalid_argument("Config: norm_eps = " + std::to_string(norm_eps) +
                                  " is out of range [0, 1)");
    if (rope_scaling.type != RopeScaling::Type::None) {
      if (!(rope_scaling.factor >= 1.0) || !(rope_scaling.factor < 1e6))
        throw std::invalid_argument("Config: rope_scaling.factor = " +
                                    std::to_string(rope_scaling.factor) +
                                    " is out of range [1, 1e6)");
      if (rope_scaling.type == RopeScaling::Type::Llama3 &&
          (!(rope_scaling.original_max_position >= 1) ||
           !(rope_scaling.low_freq_factor > 0) ||
           !(rope_scaling.high_freq_factor > rope_scaling.low_freq_factor)))
        throw std::invalid_argument(
            "Config: llama3 rope_scaling needs original_max_position >= 1 and "
            "0 < low_freq_factor < high_freq_factor");
    }
    auto check_real = [](const char* name, double value, double lo, double hi) {
      if (!(value >= lo) || !(value <= hi))
        throw std::invalid_argument("Config: " + std::string(name) + " = " + std::to_string(value) +
                                    " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    };
    check_real("embedding_scale", embedding_scale, 1e-6, 1e6);
    check_real("attention_scale", attention_scale, 0.0, 1e6);
    check_real("attention_softcap", attention_softcap, 0.0, 1e6);
    check_real("final_softcap", final_softcap, 0.0, 1e6);
    check("rotary_dims", rotary_dims, 0, head_dim);
    if (rotary_dims % 2 != 0)
      throw std::invalid_argument("Config: rotary_dims (" + std::to_string(rotary_dims) + ") must be even");
    if (!(rope_theta > 1.0) || !(rope_theta < 1e12))
      throw std::invalid_argument("Config: rope_theta = " + std::to_string(rope_theta) +
                                  " is out of range (1, 1e12)");
  }
};

}  // namespace depass
