#pragma once
// The transformer forward pass. Every block runs the real computation on the hidden state
// and, when a ComponentState rides along, propagates the components with the block's
// nonlinear coefficients frozen (method note, sections 2-4). The plain forward pass is
// the same code with no components, so the two can never drift apart.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "ComponentTensor.hpp"
#include "Config.hpp"
#include "Weights.hpp"

namespace depass {

/// How an MLP neuron's output is shared among the components that drive its gate.
enum class MlpSplit {
  Softmax,      ///< softmax over components of gate contribution / temperature (default)
  Argmax,       ///< whole neuron to the component with the largest gate contribution
  Proportional  ///< signed share g_m / g; softmax where the g_m nearly cancel (see below)
};

/// Proportional split: where |sum g_m| <= this * sum |g_m| the signed shares would exceed
/// 1/this in magnitude and rounding would break losslessness, so softmax is used there.
constexpr double kProportionalCancelRatio = 1e-3;

inline const char* to_string(MlpSplit split) {
  switch (split) {
    case MlpSplit::Softmax: return "softmax";
    case MlpSplit::Argmax: return "argmax";
    case MlpSplit::Proportional: return "proportional";
  }
  return "?";
}

inline MlpSplit parse_mlp_split(const std::string& name) {
  if (name == "softmax") return MlpSplit::Softmax;
  if (name == "argmax") return MlpSplit::Argmax;
  if (name == "proportional") return MlpSplit::Proportional;
  throw std::invalid_argument("mlp split '" + name +
                              "' is unknown (allowed: softmax, argmax, proportional)");
}

/// Components carried through the blocks, and the rules that propagate them.
template <typename Scalar>
struct ComponentState {
  ComponentTensor<Scalar> tensor;    // M x N x D
  Eigen::Index bias_component = -1;  // receives biases and neurons no component drives
  Eigen::Index sink_component = -1;  // attention sink: MLP output only at position 0
  MlpSplit split = MlpSplit::Softmax;
  Scalar temperature = Scalar(0.1);
  /// Per component, the first position that can be non-zero (rows before it are zero and
  /// stay zero: token m never reaches positions < m under the causal mask). Empty: all 0.
  /// The engine skips the zero rows, which halves the work of a token-level run.
  std::vector<Eigen::Index> first_position;
  /// Rows (component x position) processed together; bounds the scratch memory.
  Eigen::Index block_rows = 16384;
  /// The MLP split keeps the gate contributions of all rows between its two passes when
  /// they fit in this many bytes, and recomputes them otherwise.
  std::size_t gate_cache_bytes = std::size_t(1) << 30;
  /// Propagate with the plain dense formulas (every row, whole (M*N) x I buffers) instead
  /// of the blocked, triangular engine: slower, kept as the reference the fast path is
  /// tested against.
  bool straightforward = false;
};

/// What a hook sees after a named sub-step.
template <typename Scalar>
struct HookEvent {
  const char* name;  // embed, attn_norm, attn_probs, attn_heads, attn_out, attn_resid,
                     // ffn_norm, ffn_gate, ffn_up, ffn_act, ffn_out, layer_out,
                     // final_norm, logits
  int layer;         // block index, -1 before the first block and after the last
  Eigen::Ref<const Matrix<Scalar>> value;      // the tensor just computed (see names above)
  const ComponentTensor<Scalar>* components;  // set on residual-stream events of a decomposed pass
};

template <typename Scalar>
using Hook = std::function<void(const HookEvent<Scalar>&)>;

template <typename Scalar>
class Model {
 public:
  using MatrixType = Matrix<Scalar>;
  using VectorType = Vector<Scalar>;

  explicit Model(Checkpoint<Scalar> checkpoint) : checkpoint_(std::move(checkpoint)) {
    checkpoint_.config.validate();
    checkpoint_.weights.validate(checkpoint_.config);
  }

  const Config& config() const { return checkpoint_.config; }
  const Weights<Scalar>& weights() const { return checkpoint_.weights; }

  /// Throws std::invalid_argument unless ids is a non-empty sequence of valid token ids
  /// that fits in the context.
  void check_tokens(const std::vector<int>& ids) const {
    const Config& cfg = config();
    if (ids.empty()) throw std::invalid_argument("token sequence is empty");
    if (static_cast<long long>(ids.size()) > cfg.max_seq_len)
      throw std::invalid_argument("token sequence has " + std::to_string(ids.size()) +
                                  " tokens, longer than the model's context of " +
                                  std::to_string(cfg.max_seq_len));
    for (std::size_t i = 0; i < ids.size(); ++i)
      if (ids[i] < 0 || ids[i] >= cfg.vocab_size)
        throw std::invalid_argument("token id " + std::to_string(ids[i]) + " at position " +
                                    std::to_string(i) + " is out of range [0, " +
                                    std::to_string(cfg.vocab_size) + ")");
  }

  void check_layer(int layer) const {
    if (layer < 0 || layer >= config().n_layers)
      throw std::invalid_argument("layer " + std::to_string(layer) + " is out of range [0, " +
                                  std::to_string(config().n_layers) + ")");
  }

  /// Token embeddings, N x D.
  MatrixType embed(const std::vector<int>& ids, const Hook<Scalar>& hook = {}) const {
    check_tokens(ids);
    MatrixType x(static_cast<Eigen::Index>(ids.size()), config().dim);
    for (std::size_t i = 0; i < ids.size(); ++i)
      x.row(static_cast<Eigen::Index>(i)) = weights().token_embedding.row(ids[i]);
    if (config().positions == PositionKind::Learned)
      x += weights().position_embedding.topRows(x.rows());
    emit(hook, "embed", -1, x, nullptr);
    return x;
  }

  /// x += attention(norm(x)); components (if any) propagate with frozen probabilities.
  void attention_block(int layer, MatrixType& x, ComponentState<Scalar>* components = nullptr,
                       const Hook<Scalar>& hook = {}) const {
    check_layer(layer);
    check_state(x, components);
    const Config& cfg = config();
    const LayerWeights<Scalar>& w = weights().layers[static_cast<std::size_t>(layer)];
    const Eigen::Index N = x.rows(), d = cfg.head_dim;
    const int H = cfg.n_heads, group = cfg.heads_per_kv();

    VectorType scale;
    const MatrixType xn = norm(x, w.attention_norm, w.attention_norm_bias, &scale);
    emit(hook, "attn_norm", layer, xn, nullptr);
    MatrixType q = xn * w.wq.transpose();
    MatrixType k = xn * w.wk.transpose();
    MatrixType v = xn * w.wv.transpose();
    if (w.bq.size()) q.rowwise() += w.bq.transpose();
    if (w.bk.size()) k.rowwise() += w.bk.transpose();
    if (w.bv.size()) v.rowwise() += w.bv.transpose();
    if (cfg.positions == PositionKind::Rotary) {
      apply_rope(q, cfg.n_heads);
      apply_rope(k, cfg.n_kv_heads);
    }

    // probs stacks the H attention matrices: rows [h*N, (h+1)*N) are head h.
    MatrixType probs(H * N, N);
    MatrixType heads(N, cfg.q_width());
    const Scalar inv_sqrt_d = Scalar(1) / std::sqrt(static_cast<Scalar>(d));
    for (int h = 0; h < H; ++h) {
      const Eigen::Index kv = h / group;
      Eigen::Block<MatrixType> A = probs.middleRows(h * N, N);
      A.noalias() = (q.middleCols(h * d, d) * k.middleCols(kv * d, d).transpose()) * inv_sqrt_d;
      causal_softmax_rows(A);
      heads.middleCols(h * d, d).noalias() = A * v.middleCols(kv * d, d);
    }
    emit(hook, "attn_probs", layer, probs, nullptr);
    emit(hook, "attn_heads", layer, heads, nullptr);
    MatrixType out = heads * w.wo.transpose();
    if (w.bo.size()) out.rowwise() += w.bo.transpose();
    emit(hook, "attn_out", layer, out, nullptr);
    x += out;

    if (components && !components->straightforward) {
      propagate_attention(*components, probs, scale, w);
    } else if (components) {
      ComponentTensor<Scalar>& C = components->tensor;
      const Eigen::Index M = C.components();
      MatrixType values =
          frozen_norm(*components, scale, w.attention_norm, w.attention_norm_bias) * w.wv.transpose();
      if (w.bv.size()) bias_rows(values, *components).rowwise() += w.bv.transpose();
      // Mix each component with the frozen probabilities per head first, then project
      // once: H times cheaper than expanding every head through Wo before mixing.
      MatrixType mixed(M * N, cfg.q_width());
      for (Eigen::Index m = 0; m < M; ++m)
        for (int h = 0; h < H; ++h)
          mixed.block(m * N, h * d, N, d).noalias() =
              probs.middleRows(h * N, N) * values.block(m * N, (h / group) * d, N, d);
      C.stacked().noalias() += mixed * w.wo.transpose();
      if (w.bo.size()) bias_rows(C.stacked(), *components).rowwise() += w.bo.transpose();
    }
    emit(hook, "attn_resid", layer, x, components ? &components->tensor : nullptr);
  }

  /// x += mlp(norm(x)); each neuron's output is split among components by the split rule.
  void mlp_block(int layer, MatrixType& x, ComponentState<Scalar>* components = nullptr,
                 const Hook<Scalar>& hook = {}) const {
    check_layer(layer);
    check_state(x, components);
    const LayerWeights<Scalar>& w = weights().layers[static_cast<std::size_t>(layer)];
    const Eigen::Index N = x.rows(), I = config().hidden_dim;

    VectorType scale;
    const MatrixType xn = norm(x, w.mlp_norm, w.mlp_norm_bias, &scale);
    emit(hook, "ffn_norm", layer, xn, nullptr);
    MatrixType gate = xn * w.w1.transpose();
    if (w.b1.size()) gate.rowwise() += w.b1.transpose();
    emit(hook, "ffn_gate", layer, gate, nullptr);
    MatrixType act;
    if (config().gated_mlp()) {
      MatrixType up = xn * w.w3.transpose();
      if (w.b3.size()) up.rowwise() += w.b3.transpose();
      emit(hook, "ffn_up", layer, up, nullptr);
      act = silu(gate).cwiseProduct(up);
    } else {
      act = gelu_tanh(gate);
    }
    emit(hook, "ffn_act", layer, act, nullptr);
    MatrixType out = act * w.w2.transpose();
    if (w.b2.size()) out.rowwise() += w.b2.transpose();
    emit(hook, "ffn_out", layer, out, nullptr);
    x += out;

    if (components && !components->straightforward) {
      propagate_mlp(*components, act, scale, w);
    } else if (components) {
      ComponentTensor<Scalar>& C = components->tensor;
      // Per-component gate contributions; overwritten in place by each component's
      // share of the neuron's output so that only one (M*N) x I buffer is live.
      MatrixType share =
          frozen_norm(*components, scale, w.mlp_norm, w.mlp_norm_bias) * w.w1.transpose();
      if (w.b1.size()) bias_rows(share, *components).rowwise() += w.b1.transpose();
      split_neurons(share, act, *components, N, I);
      C.stacked().noalias() += share * w.w2.transpose();
      if (w.b2.size()) bias_rows(C.stacked(), *components).rowwise() += w.b2.transpose();
    }
    emit(hook, "layer_out", layer, x, components ? &components->tensor : nullptr);
  }

  /// Final norm of x (N x D); its per-row scale goes to *scale for freezing.
  MatrixType final_norm(const MatrixType& x, VectorType* scale = nullptr) const {
    return norm(x, weights().final_norm, weights().final_norm_bias, scale);
  }

  /// Final norm with the real state's scale frozen, applied in place to every component
  /// (the norm's offset goes to the bias component).
  void final_norm_components(ComponentState<Scalar>& cs, const VectorType& scale) const {
    ComponentTensor<Scalar>& C = cs.tensor;
    const VectorType& gain = weights().final_norm;
    for (Eigen::Index m = 0; m < C.components(); ++m) {
      typename ComponentTensor<Scalar>::Block block = C.component(m);
      if (config().norm == NormKind::LayerNorm) block = block.colwise() - block.rowwise().mean();
      block.array().colwise() *= scale.array();
      block.array().rowwise() *= gain.transpose().array();
    }
    if (weights().final_norm_bias.size())
      bias_rows(C.stacked(), cs).rowwise() += weights().final_norm_bias.transpose();
  }

  /// Runs every block and returns the logits (N x V), or only the last row when last_only.
  MatrixType forward(const std::vector<int>& ids, const Hook<Scalar>& hook = {},
                     bool last_only = false) const {
    MatrixType x = embed(ids, hook);
    for (int l = 0; l < config().n_layers; ++l) {
      attention_block(l, x, nullptr, hook);
      mlp_block(l, x, nullptr, hook);
    }
    const MatrixType normed = final_norm(x);
    emit(hook, "final_norm", -1, normed, nullptr);
    MatrixType logits = last_only ? MatrixType(normed.bottomRows(1) * weights().unembedding().transpose())
                                  : MatrixType(normed * weights().unembedding().transpose());
    emit(hook, "logits", -1, logits, nullptr);
    return logits;
  }

  /// Greedy continuation of prompt: up to max_new tokens, stopping after stop_token
  /// (if >= 0) or when the context is full. Returns only the new tokens.
  std::vector<int> generate(const std::vector<int>& prompt, int max_new, int stop_token = -1) const {
    if (max_new < 0)
      throw std::invalid_argument("max_new = " + std::to_string(max_new) + " must be >= 0");
    check_tokens(prompt);
    std::vector<int> sequence = prompt, generated;
    while (static_cast<int>(generated.size()) < max_new &&
           static_cast<int>(sequence.size()) < config().max_seq_len) {
      const MatrixType logits = forward(sequence, {}, true);
      Eigen::Index best = 0;
      logits.row(0).maxCoeff(&best);
      sequence.push_back(static_cast<int>(best));
      generated.push_back(static_cast<int>(best));
      if (best == stop_token) break;
    }
    return generated;
  }

  /// The model's normalisation of x with gain (and LayerNorm offset); the per-row scale
  /// r goes to *scale. RMSNorm: x_i r_i w, r_i = 1/sqrt(mean(x_i^2) + eps). LayerNorm:
  /// (x_i - mean(x_i)) r_i g + b, r_i = 1/sqrt(var(x_i) + eps).
  MatrixType norm(const MatrixType& x, const VectorType& gain, const VectorType& bias,
                  VectorType* scale) const {
    const Scalar eps = static_cast<Scalar>(config().norm_eps);
    MatrixType centred;
    const bool layer_norm = config().norm == NormKind::LayerNorm;
    if (layer_norm) centred = x.colwise() - x.rowwise().mean();
    const MatrixType& base = layer_norm ? centred : x;
    VectorType r = ((base.array().square().rowwise().sum() / Scalar(x.cols())) + eps).rsqrt().matrix();
    MatrixType y = (base.array().colwise() * r.array()).rowwise() * gain.transpose().array();
    if (bias.size()) y.rowwise() += bias.transpose();
    if (scale) *scale = std::move(r);
    return y;
  }

 private:
  void check_state(const MatrixType& x, const ComponentState<Scalar>* components) const {
    if (x.cols() != config().dim)
      throw std::invalid_argument("hidden state has width " + std::to_string(x.cols()) +
                                  ", expected dim = " + std::to_string(config().dim));
    if (x.rows() < 1 || x.rows() > config().max_seq_len)
      throw std::invalid_argument("hidden state has " + std::to_string(x.rows()) +
                                  " positions, allowed [1, " +
                                  std::to_string(config().max_seq_len) + "]");
    if (!components) return;
    const ComponentTensor<Scalar>& C = components->tensor;
    if (C.positions() != x.rows() || C.width() != x.cols())
      throw std::invalid_argument("component tensor is " + std::to_string(C.components()) + " x " +
                                  std::to_string(C.positions()) + " x " +
                                  std::to_string(C.width()) + ", state is " +
                                  std::to_string(x.rows()) + " x " + std::to_string(x.cols()));
    if (config().has_biases() &&
        (components->bias_component < 0 || components->bias_component >= C.components()))
      throw std::invalid_argument("model has biases: the component state needs a bias component");
  }

  static void emit(const Hook<Scalar>& hook, const char* name, int layer, const MatrixType& value,
                   const ComponentTensor<Scalar>* components) {
    if (hook) hook(HookEvent<Scalar>{name, layer, value, components});
  }

  static Eigen::Block<MatrixType> bias_rows(MatrixType& stacked, const ComponentState<Scalar>& cs) {
    if (cs.bias_component < 0)
      throw std::logic_error("a bias term needs a bias component, and none was set up");
    const Eigen::Index N = cs.tensor.positions();
    return stacked.middleRows(cs.bias_component * N, N);
  }

  /// norm(C[m]) with the real state's scale r (N) frozen: row i of every component times
  /// r_i * w (LayerNorm: each component centred first, the offset b to the bias component).
  MatrixType frozen_norm(const ComponentState<Scalar>& cs, const VectorType& scale,
                         const VectorType& gain, const VectorType& bias) const {
    const ComponentTensor<Scalar>& C = cs.tensor;
    const Eigen::Index N = C.positions();
    const bool layer_norm = config().norm == NormKind::LayerNorm;
    MatrixType out(C.stacked().rows(), C.width());
    for (Eigen::Index m = 0; m < C.components(); ++m) {
      if (layer_norm)
        out.middleRows(m * N, N) =
            (C.component(m).colwise() - C.component(m).rowwise().mean()).array().colwise() * scale.array();
      else
        out.middleRows(m * N, N) = C.component(m).array().colwise() * scale.array();
    }
    out.array().rowwise() *= gain.transpose().array();
    if (bias.size()) bias_rows(out, cs).rowwise() += bias.transpose();
    return out;
  }

  static MatrixType silu(const MatrixType& g) {
    return (g.array() / (Scalar(1) + (-g.array()).exp())).matrix();
  }

  /// GELU, tanh approximation: 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))).
  static MatrixType gelu_tanh(const MatrixType& g) {
    const Scalar k = static_cast<Scalar>(0.7978845608028654);  // sqrt(2/pi)
    return (Scalar(0.5) * g.array() *
            (Scalar(1) + (k * (g.array() + Scalar(0.044715) * g.array().cube())).tanh()))
        .matrix();
  }

  /// Rotary frequency of pair j, after any context-length scaling.
  double rope_frequency(Eigen::Index j) const {
    const Config& cfg = config();
    const double base = std::pow(cfg.rope_theta, -2.0 * static_cast<double>(j) / static_cast<double>(cfg.head_dim));
    const RopeScaling& rs = cfg.rope_scaling;
    switch (rs.type) {
      case RopeScaling::Type::None: return base;
      case RopeScaling::Type::Linear: return base / rs.factor;
      case RopeScaling::Type::Llama3: {
        // Long wavelengths are slowed by `factor`, short ones kept, the band between blended.
        const double pi = 3.14159265358979323846;
        const double wavelength = 2 * pi / base;
        const double low_freq_wavelength = rs.original_max_position / rs.low_freq_factor;
        const double high_freq_wavelength = rs.original_max_position / rs.high_freq_factor;
        if (wavelength < high_freq_wavelength) return base;
        if (wavelength > low_freq_wavelength) return base / rs.factor;
        const double smooth = (rs.original_max_position / wavelength - rs.low_freq_factor) /
                              (rs.high_freq_factor - rs.low_freq_factor);
        return (1 - smooth) * base / rs.factor + smooth * base;
      }
    }
    return base;
  }

  /// Row-wise softmax over columns j <= i (causal mask); masked entries become exactly 0.
  static void causal_softmax_rows(Eigen::Block<MatrixType>& A) {
    for (Eigen::Index i = 0; i < A.rows(); ++i) {
      Scalar peak = A(i, 0);
      for (Eigen::Index j = 1; j <= i; ++j) peak = std::max(peak, A(i, j));
      Scalar total = 0;
      for (Eigen::Index j = 0; j <= i; ++j) total += (A(i, j) = std::exp(A(i, j) - peak));
      for (Eigen::Index j = 0; j <= i; ++j) A(i, j) /= total;
      for (Eigen::Index j = i + 1; j < A.cols(); ++j) A(i, j) = 0;
    }
  }

  /// Rotates each head's pairs of q or k (N x heads*d) by position-dependent angles.
  void apply_rope(MatrixType& t, int n_heads) const {
    const Config& cfg = config();
    const Eigen::Index d = cfg.head_dim, half = d / 2;
    const bool adjacent = cfg.rope_layout == RopeLayout::AdjacentPairs;
    for (Eigen::Index j = 0; j < half; ++j) {
      // Frequencies in double: the angle for late positions loses digits in float.
      const double freq = rope_frequency(j);
      for (Eigen::Index pos = 0; pos < t.rows(); ++pos) {
        const double angle = static_cast<double>(pos) * freq;
        const Scalar c = static_cast<Scalar>(std::cos(angle)), s = static_cast<Scalar>(std::sin(angle));
        for (int h = 0; h < n_heads; ++h) {
          const Eigen::Index a = h * d + (adjacent ? 2 * j : j);
          const Eigen::Index b = h * d + (adjacent ? 2 * j + 1 : j + half);
          const Scalar x0 = t(pos, a), x1 = t(pos, b);
          t(pos, a) = x0 * c - x1 * s;
          t(pos, b) = x0 * s + x1 * c;
        }
      }
    }
  }

  /// share: (M*N) x I gate contributions in, each component's part of a[i,k] out.
  static void split_neurons(MatrixType& share, const MatrixType& act, const ComponentState<Scalar>& cs,
                            Eigen::Index N, Eigen::Index I) {
    const Eigen::Index M = cs.tensor.components();
    const Scalar inv_t = Scalar(1) / cs.temperature;
    std::vector<Scalar> weight(static_cast<std::size_t>(M));
    for (Eigen::Index k = 0; k < I; ++k) {
      Scalar* column = share.col(k).data();
      for (Eigen::Index i = 0; i < N; ++i) {
        // A component is eligible when it drives the gate at all (zero contributions come
        // from components that are absent at this position) and is not the attention sink
        // past its own position.
        auto eligible = [&](Eigen::Index m) {
          return column[m * N + i] != Scalar(0) && !(m == cs.sink_component && i > 0);
        };
        Eigen::Index count = 0, best = -1;
        Scalar peak = -std::numeric_limits<Scalar>::infinity(), total = 0, magnitude = 0;
        for (Eigen::Index m = 0; m < M; ++m) {
          if (!eligible(m)) continue;
          const Scalar g = column[m * N + i];
          ++count;
          total += g;
          magnitude += std::abs(g);
          if (g > peak) { peak = g; best = m; }
        }
        for (Eigen::Index m = 0; m < M; ++m) weight[static_cast<std::size_t>(m)] = 0;
        if (count == 0) {
          if (cs.bias_component < 0)
            throw std::logic_error("a neuron driven by no component needs a bias component");
          weight[static_cast<std::size_t>(cs.bias_component)] = 1;
        } else if (cs.split == MlpSplit::Argmax) {
          weight[static_cast<std::size_t>(best)] = 1;
        } else if (cs.split == MlpSplit::Proportional &&
                   std::abs(total) > static_cast<Scalar>(kProportionalCancelRatio) * magnitude) {
          for (Eigen::Index m = 0; m < M; ++m)
            if (eligible(m)) weight[static_cast<std::size_t>(m)] = column[m * N + i] / total;
        } else {
          Scalar norm = 0;
          for (Eigen::Index m = 0; m < M; ++m)
            if (eligible(m)) {
              const Scalar e = std::exp((column[m * N + i] - peak) * inv_t);
              weight[static_cast<std::size_t>(m)] = e;
              norm += e;
            }
          for (Eigen::Index m = 0; m < M; ++m) weight[static_cast<std::size_t>(m)] /= norm;
        }
        const Scalar a = act(i, k);
        for (Eigen::Index m = 0; m < M; ++m) column[m * N + i] = weight[static_cast<std::size_t>(m)] * a;
      }
    }
  }

  // ---- Blocked, triangular propagation -------------------------------------------------
  //
  // Components are processed in blocks of rows. Only the rows that can be non-zero
  // (positions >= first_position[m]) are gathered into a packed matrix, so every linear
  // map is one GEMM over live rows only. The MLP split needs, for each (position, neuron),
  // statistics over all components; they are accumulated in a first pass over the blocks
  // (online softmax), and the shares applied in a second, so no (M*N) x I buffer exists.

  /// Which rows of which components a block holds, packed one component after another.
  struct RowBlock {
    std::vector<Eigen::Index> component;  // component of each segment
    std::vector<Eigen::Index> first;      // its first live position
    std::vector<Eigen::Index> offset;     // its first row in the packed matrix
    Eigen::Index rows = 0;
  };

  static Eigen::Index first_of(const ComponentState<Scalar>& cs, Eigen::Index m) {
    return cs.first_position.empty() ? 0 : cs.first_position[static_cast<std::size_t>(m)];
  }

  static std::vector<RowBlock> plan_blocks(const ComponentState<Scalar>& cs) {
    const Eigen::Index M = cs.tensor.components(), N = cs.tensor.positions();
    std::vector<RowBlock> blocks(1);
    for (Eigen::Index m = 0; m < M; ++m) {
      const Eigen::Index first = std::min(first_of(cs, m), N);
      if (first >= N) continue;
      if (blocks.back().rows > 0 && blocks.back().rows + (N - first) > std::max<Eigen::Index>(cs.block_rows, N))
        blocks.emplace_back();
      RowBlock& b = blocks.back();
      b.component.push_back(m);
      b.first.push_back(first);
      b.offset.push_back(b.rows);
      b.rows += N - first;
    }
    return blocks;
  }

  /// Frozen norm of the block's live rows (with the norm offset on the bias component).
  MatrixType gather_normed(const ComponentState<Scalar>& cs, const RowBlock& b, const VectorType& scale,
                           const VectorType& gain, const VectorType& bias) const {
    const ComponentTensor<Scalar>& C = cs.tensor;
    const Eigen::Index N = C.positions();
    const bool layer_norm = config().norm == NormKind::LayerNorm;
    MatrixType out(b.rows, C.width());
    for (std::size_t s = 0; s < b.component.size(); ++s) {
      const Eigen::Index m = b.component[s], f = b.first[s], n = N - f;
      Eigen::Block<MatrixType> dst = out.middleRows(b.offset[s], n);
      dst = C.stacked().middleRows(m * N + f, n);
      if (layer_norm) dst = dst.colwise() - dst.rowwise().mean();
      dst.array().colwise() *= scale.segment(f, n).array();
      if (m == cs.bias_component && bias.size()) {
        dst.array().rowwise() *= gain.transpose().array();
        dst.rowwise() += bias.transpose();
        continue;
      }
      dst.array().rowwise() *= gain.transpose().array();
    }
    return out;
  }

  /// Adds the packed update rows back into the components.
  static void scatter_add(ComponentTensor<Scalar>& C, const RowBlock& b, const MatrixType& update) {
    const Eigen::Index N = C.positions();
    for (std::size_t s = 0; s < b.component.size(); ++s) {
      const Eigen::Index m = b.component[s], f = b.first[s];
      C.stacked().middleRows(m * N + f, N - f) += update.middleRows(b.offset[s], N - f);
    }
  }

  /// Rows of the bias component inside a packed block (or an empty range).
  static std::pair<Eigen::Index, Eigen::Index> bias_segment(const ComponentState<Scalar>& cs,
                                                           const RowBlock& b, Eigen::Index N) {
    for (std::size_t s = 0; s < b.component.size(); ++s)
      if (b.component[s] == cs.bias_component) return {b.offset[s], N - b.first[s]};
    return {0, 0};
  }

  void propagate_attention(ComponentState<Scalar>& cs, const MatrixType& probs, const VectorType& scale,
                           const LayerWeights<Scalar>& w) const {
    const Config& cfg = config();
    const Eigen::Index N = cs.tensor.positions(), d = cfg.head_dim;
    const int H = cfg.n_heads, group = cfg.heads_per_kv();
    for (const RowBlock& b : plan_blocks(cs)) {
      if (b.rows == 0) continue;
      MatrixType values = gather_normed(cs, b, scale, w.attention_norm, w.attention_norm_bias) * w.wv.transpose();
      const auto bias = bias_segment(cs, b, N);
      if (w.bv.size() && bias.second) values.middleRows(bias.first, bias.second).rowwise() += w.bv.transpose();
      // Mix with the frozen probabilities per head first, then project once (H times
      // cheaper than expanding every head through Wo). Rows before a component's first
      // position are zero, and by causality its mixed output there is zero too, so only
      // the lower-right (lower-triangular) corner of A is needed.
      MatrixType mixed(b.rows, cfg.q_width());
      // Eigen does not thread triangular products, so thread over components instead.
      const std::ptrdiff_t segments = static_cast<std::ptrdiff_t>(b.component.size());
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 4)
#endif
      for (std::ptrdiff_t si = 0; si < segments; ++si) {
        const std::size_t s = static_cast<std::size_t>(si);
        const Eigen::Index f = b.first[s], n = N - f, o = b.offset[s];
        for (int h = 0; h < H; ++h)
          mixed.block(o, h * d, n, d).noalias() =
              probs.block(h * N + f, f, n, n).template triangularView<Eigen::Lower>() *
              values.block(o, (h / group) * d, n, d);
      }
      MatrixType update = mixed * w.wo.transpose();
      if (w.bo.size() && bias.second) update.middleRows(bias.first, bias.second).rowwise() += w.bo.transpose();
      scatter_add(cs.tensor, b, update);
    }
  }

  /// Per (position, neuron) statistics over the eligible components, for the split.
  struct SplitStats {
    MatrixType peak;       // N x I: largest eligible gate contribution (-inf: none)
    MatrixType sum_exp;    // N x I: sum of exp((g - peak) / T) over eligible components
    MatrixType total;      // N x I: sum of eligible contributions (proportional rule)
    MatrixType magnitude;  // N x I: sum of their absolute values (its cancellation guard)
    Eigen::Matrix<Eigen::Index, Eigen::Dynamic, Eigen::Dynamic> best;   // argmax component
    Eigen::Matrix<Eigen::Index, Eigen::Dynamic, Eigen::Dynamic> count;  // eligible components
  };

  using ArrayType = Eigen::Array<Scalar, Eigen::Dynamic, 1>;

  /// 1 where component m drives neuron k at position f+j (non-zero contribution, and not
  /// the attention sink past position 0), else 0.
  static ArrayType eligibility(const ComponentState<Scalar>& cs, Eigen::Index m, Eigen::Index f,
                               const ArrayType& v) {
    ArrayType mask = (v != Scalar(0)).template cast<Scalar>();
    if (m == cs.sink_component) mask.tail(mask.size() - (f == 0 ? 1 : 0)).setZero();
    return mask;
  }

  void propagate_mlp(ComponentState<Scalar>& cs, const MatrixType& act, const VectorType& scale,
                     const LayerWeights<Scalar>& w) const {
    using IndexArray = Eigen::Array<Eigen::Index, Eigen::Dynamic, 1>;
    const Eigen::Index N = cs.tensor.positions(), I = config().hidden_dim;
    const std::vector<RowBlock> blocks = plan_blocks(cs);
    const Scalar inv_t = Scalar(1) / cs.temperature;
    const Scalar ratio = static_cast<Scalar>(kProportionalCancelRatio);
    const Scalar neg_inf = -std::numeric_limits<Scalar>::infinity();

    auto gate_contributions = [&](const RowBlock& b) {
      MatrixType g = gather_normed(cs, b, scale, w.mlp_norm, w.mlp_norm_bias) * w.w1.transpose();
      const auto bias = bias_segment(cs, b, N);
      if (w.b1.size() && bias.second) g.middleRows(bias.first, bias.second).rowwise() += w.b1.transpose();
      return g;
    };

    // Keep every block's gate contributions between the passes when they fit the cache
    // budget; otherwise recompute them (one more GEMM) to keep memory flat.
    std::size_t live_rows = 0;
    for (const RowBlock& b : blocks) live_rows += static_cast<std::size_t>(b.rows);
    const bool keep = live_rows * static_cast<std::size_t>(I) * sizeof(Scalar) <= cs.gate_cache_bytes;
    std::vector<MatrixType> kept;

    // Pass 1: statistics over components, with an online softmax (the running sum is
    // rescaled whenever the maximum grows) so that one sweep suffices.
    SplitStats st;
    st.peak = MatrixType::Constant(N, I, neg_inf);
    st.sum_exp = MatrixType::Zero(N, I);
    st.total = MatrixType::Zero(N, I);
    st.magnitude = MatrixType::Zero(N, I);
    st.best = decltype(st.best)::Constant(N, I, -1);
    st.count = decltype(st.count)::Zero(N, I);
    for (const RowBlock& b : blocks) {
      if (b.rows == 0) continue;
      MatrixType g = gate_contributions(b);
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
      for (Eigen::Index k = 0; k < I; ++k) {
        for (std::size_t s = 0; s < b.component.size(); ++s) {
          const Eigen::Index m = b.component[s], f = b.first[s], n = N - f;
          const ArrayType v = g.col(k).segment(b.offset[s], n).array();
          const ArrayType mask = eligibility(cs, m, f, v);
          const ArrayType candidate = (mask > Scalar(0)).select(v, neg_inf);
          Eigen::Map<ArrayType> peak_col(st.peak.col(k).data() + f, n);
          const ArrayType peak = peak_col.array();
          const ArrayType new_peak = peak.max(candidate);
          const ArrayType rescale =
              (new_peak == neg_inf).select(Scalar(0), ((peak - new_peak) * inv_t).exp());
          st.sum_exp.col(k).segment(f, n).array() =
              st.sum_exp.col(k).segment(f, n).array() * rescale +
              (mask > Scalar(0)).select(((v - new_peak) * inv_t).exp(), Scalar(0));
          // Strictly greater: on ties the lowest component keeps the neuron.
          if (cs.split == MlpSplit::Argmax)
            st.best.col(k).segment(f, n).array() =
                (candidate > peak).select(IndexArray::Constant(n, m), st.best.col(k).segment(f, n).array());
          peak_col = new_peak;
          st.count.col(k).segment(f, n).array() += mask.template cast<Eigen::Index>();
          if (cs.split == MlpSplit::Proportional) {
            st.total.col(k).segment(f, n).array() += (mask > Scalar(0)).select(v, Scalar(0));
            st.magnitude.col(k).segment(f, n).array() += (mask > Scalar(0)).select(v.abs(), Scalar(0));
          }
        }
      }
      if (keep) kept.push_back(std::move(g));
    }
    if (cs.bias_component < 0 && (st.count.array() == 0).any())
      throw std::logic_error("a neuron driven by no component needs a bias component");

    // Pass 2: each component's share of every neuron, then one projection per block.
    std::size_t kept_index = 0;
    for (const RowBlock& b : blocks) {
      if (b.rows == 0) continue;
      MatrixType share = keep ? std::move(kept[kept_index++]) : gate_contributions(b);
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
      for (Eigen::Index k = 0; k < I; ++k) {
        for (std::size_t s = 0; s < b.component.size(); ++s) {
          const Eigen::Index m = b.component[s], f = b.first[s], n = N - f;
          Eigen::Map<ArrayType> cell(share.col(k).data() + b.offset[s], n);
          const ArrayType v = cell;
          const ArrayType mask = eligibility(cs, m, f, v);
          const ArrayType peak = st.peak.col(k).segment(f, n).array();
          const ArrayType softmax = ((v - peak) * inv_t).exp() / st.sum_exp.col(k).segment(f, n).array();
          ArrayType weight;
          if (cs.split == MlpSplit::Argmax) {
            weight = (st.best.col(k).segment(f, n).array() == m).select(ArrayType::Ones(n), ArrayType::Zero(n));
          } else if (cs.split == MlpSplit::Proportional) {
            const ArrayType total = st.total.col(k).segment(f, n).array();
            const ArrayType guard = ratio * st.magnitude.col(k).segment(f, n).array();
            weight = (mask > Scalar(0)).select((total.abs() > guard).select(v / total, softmax), Scalar(0));
          } else {
            weight = (mask > Scalar(0)).select(softmax, Scalar(0));
          }
          // Neurons no component drives belong to the bias component.
          if (m == cs.bias_component)
            weight = (st.count.col(k).segment(f, n).array() == 0).select(ArrayType::Ones(n), weight);
          cell = weight * act.col(k).segment(f, n).array();
        }
      }
      MatrixType update = share * w.w2.transpose();
      const auto bias = bias_segment(cs, b, N);
      if (w.b2.size() && bias.second) update.middleRows(bias.first, bias.second).rowwise() += w.b2.transpose();
      scatter_add(cs.tensor, b, update);
    }
  }

  Checkpoint<Scalar> checkpoint_;
};

using Modelf = Model<float>;
using Modeld = Model<double>;

}  // namespace depass
