#pragma once
// The transformer forward pass. Every block runs the real computation on the hidden state
// and, when a ComponentState rides along, propagates the components with the block's
// nonlinear coefficients frozen (method note, sections 2-4). The plain forward pass is
// the same code with no components, so the two can never drift apart.

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ComponentTensor.hpp"
#include "Config.hpp"
#include "Threads.hpp"
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
  /// Packed rows (component x position) per work item: each thread's scratch holds about
  /// this many rows of width D + I. Tests shrink it to exercise many small items.
  Eigen::Index work_rows = 4096;
  /// Propagate with the plain dense formulas (every row, whole (M*N) x I buffers) instead
  /// of the blocked, triangular engine: slower, kept as the reference the fast path is
  /// tested against.
  bool straightforward = false;
  /// Have the fast engine leave sum_m C[m] (N x D) in component_sum after each block,
  /// summed from the rows it just wrote (cheaper than summing C again for the check).
  bool track_sum = false;
  RowMatrix<Scalar> component_sum;     // valid while component_sum_current
  bool component_sum_current = false;  // set by a block that filled component_sum
  /// One scratch buffer per thread, reused by every block of the pass (allocating per
  /// block would page-fault fresh memory each time), and per-thread partial sums.
  std::vector<Vector<Scalar>> scratch;
  std::vector<RowMatrix<Scalar>> partial_sums;
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
  /// Residual-stream events (start, attn_resid, layer_out): the boundary reached, as
  /// Boundary::index counts it (blocks run so far: 2 * layer, + 1 before an MLP); else -1.
  int boundary = -1;
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
    detail::ThreadLimit limit(real_block_threads(N));

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
    limit.release();

    if (components) components->component_sum_current = false;
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
    emit(hook, "attn_resid", layer, x, components ? &components->tensor : nullptr, 2 * layer + 1);
  }

  /// x += mlp(norm(x)); each neuron's output is split among components by the split rule.
  void mlp_block(int layer, MatrixType& x, ComponentState<Scalar>* components = nullptr,
                 const Hook<Scalar>& hook = {}) const {
    check_layer(layer);
    check_state(x, components);
    const LayerWeights<Scalar>& w = weights().layers[static_cast<std::size_t>(layer)];
    const Eigen::Index N = x.rows(), I = config().hidden_dim;
    detail::ThreadLimit limit(real_block_threads(N));

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
    limit.release();

    if (components) components->component_sum_current = false;
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
    emit(hook, "layer_out", layer, x, components ? &components->tensor : nullptr, 2 * layer + 2);
  }

  /// Final norm of x (N x D); its per-row scale goes to *scale for freezing.
  MatrixType final_norm(const MatrixType& x, VectorType* scale = nullptr) const {
    return norm(x, weights().final_norm, weights().final_norm_bias, scale);
  }

  /// Final norm with the real state's scale frozen, applied in place to every component
  /// (the norm's offset goes to the bias component).
  void final_norm_components(ComponentState<Scalar>& cs, const VectorType& scale) const {
    ComponentTensor<Scalar>& C = cs.tensor;
    const Eigen::Index M = C.components(), N = C.positions();
    const VectorType& gain = weights().final_norm;
    const bool layer_norm = config().norm == NormKind::LayerNorm;
    // Rows before a component's first position are zero, and the norm keeps them zero.
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 8) num_threads(threads()) if (C.stacked().size() > (1 << 20))
#endif
    for (Eigen::Index m = 0; m < M; ++m) {
      const Eigen::Index first = std::min(first_of(cs, m), N);
      typename RowMatrixType::RowsBlockXpr rows = C.stacked().middleRows(m * N + first, N - first);
      if (layer_norm) {
        const VectorType mean = rows.rowwise().mean();
        rows.colwise() -= mean;
      }
      rows = (rows.array().colwise() * scale.segment(first, N - first).array()).rowwise() * gain.transpose().array();
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
                   const ComponentTensor<Scalar>* components, int boundary = -1) {
    if (hook) hook(HookEvent<Scalar>{name, layer, value, components, boundary});
  }

  template <typename Stacked>
  static typename Stacked::RowsBlockXpr bias_rows(Stacked& stacked, const ComponentState<Scalar>& cs) {
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
  /// Works column by column (contiguous in memory): the running row maxima and sums are
  /// vectors over the query rows, so every step is a vectorised array operation.
  static void causal_softmax_rows(Eigen::Block<MatrixType>& A) {
    using Column = Eigen::Array<Scalar, Eigen::Dynamic, 1>;
    const Eigen::Index n = A.rows();
    Column peak = Column::Constant(n, -std::numeric_limits<Scalar>::infinity());
    for (Eigen::Index j = 0; j < n; ++j) peak.tail(n - j) = peak.tail(n - j).max(A.col(j).tail(n - j).array());
    Column total = Column::Zero(n);
    for (Eigen::Index j = 0; j < n; ++j) {
      A.col(j).head(j).setZero();
      A.col(j).tail(n - j).array() = (A.col(j).tail(n - j).array() - peak.tail(n - j)).exp();
      total.tail(n - j) += A.col(j).tail(n - j).array();
    }
    for (Eigen::Index j = 0; j < n; ++j) A.col(j).tail(n - j).array() /= total.tail(n - j);
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

  // ---- Fast propagation ----------------------------------------------------------------
  //
  // Rows a component cannot reach (positions before its first_position) are zero and stay
  // zero under the causal mask, so neither block reads or writes them; the other rows go
  // through each linear map as GEMMs on packed rows. The work is cut into independent
  // items. With enough items, each OpenMP thread takes whole items (its own scratch,
  // single-threaded GEMMs, no synchronisation inside an item); with few, the items run one
  // after another and the GEMMs and inner loops are threaded instead.
  //
  // Attention couples positions, not components: an item is a group of consecutive
  // components over the positions from the group's first live one. Packed component after
  // component, the values of kv head g for the whole group form one n x (d * B) matrix
  // (columns feature-major, component-minor), so each head's mixing is one triangular
  // product with a wide right-hand side.
  //
  // The MLP split couples components, not positions: an item is a tile of positions over
  // every component live in it, so the split over components is complete inside the tile:
  // one exp per (component, position, neuron), nothing kept across tiles.
  //
  // Both blocks can also leave sum_m C[m] in cs.component_sum, summed from the rows they
  // just wrote while those are still in cache (the completeness check reads it).

  using RowMatrixType = RowMatrix<Scalar>;
  using RowMap = Eigen::Map<RowMatrixType>;
  using ColMap = Eigen::Map<MatrixType>;
  using Packet = typename Eigen::internal::packet_traits<Scalar>::type;
  static constexpr Eigen::Index kPacket = Eigen::internal::unpacket_traits<Packet>::size;
  /// Neurons per step of the MLP split: kChunk packets, kept in registers across its passes.
  static constexpr Eigen::Index kChunk = 4;

  static Eigen::Index first_of(const ComponentState<Scalar>& cs, Eigen::Index m) {
    return cs.first_position.empty() ? 0
                                     : std::max<Eigen::Index>(0, cs.first_position[static_cast<std::size_t>(m)]);
  }

  static int thread_index() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
  }

  static int thread_count() { return threads(); }

  /// Threads for a block's real computation over N positions: one when even its largest
  /// product is too small to share.
  int real_block_threads(Eigen::Index N) const {
    const double largest = 2.0 * static_cast<double>(N) * config().dim *
                           std::max(config().q_width(), config().hidden_dim);
    return largest >= kParallelWork ? thread_count() : 1;
  }

  /// Flops below which a loop runs on one thread. A second thread saves at most ~1 ms
  /// there, while waking it and meeting it at the end costs tens of microseconds on an idle
  /// machine and up to a scheduler time slice (milliseconds) on a busy one.
  static constexpr double kParallelWork = 3e7;

  /// A scratch buffer of at least size scalars (contents undefined).
  static Scalar* reserve(Vector<Scalar>& buffer, Eigen::Index size) {
    if (buffer.size() < size) buffer.resize(size);
    return buffer.data();
  }

  /// Runs body(item, thread, inner) for items 0..count-1 (about `work` flops in all), which
  /// the caller orders largest first: across threads (dynamic schedule) when there are at
  /// least two items per thread, else in order with `inner` threads for the item's own
  /// loops. Eigen runs a GEMM single-threaded inside a parallel region and threaded outside
  /// one, so the items' products follow the same choice. Small blocks run on one thread.
  /// The first exception of any item is rethrown here.
  template <typename Body>
  static void run_items(ComponentState<Scalar>& cs, Eigen::Index count, double work, const Body& body) {
    const int threads = work >= kParallelWork ? thread_count() : 1;
    const bool across = threads > 1 && count >= 2 * threads;
    const int inner = across ? 1 : threads;
    if (cs.scratch.size() < static_cast<std::size_t>(threads)) cs.scratch.resize(static_cast<std::size_t>(threads));
    const detail::ThreadLimit limit(threads);  // Eigen's products inside follow it
    std::exception_ptr error;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (across)
#endif
    for (Eigen::Index item = 0; item < count; ++item) {
      try {
        // Outside our own team the thread number may be a caller's: item scratch is slot 0.
        body(item, across ? static_cast<std::size_t>(thread_index()) : 0, inner);
      } catch (...) {
#ifdef _OPENMP
#pragma omp critical(depass_propagation_error)
#endif
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
  }

  /// dst = rows [from, to) of component m, normed with the real state's scale frozen
  /// (LayerNorm: each row centred first; the norm's offset goes to the bias component).
  /// Rows before the component's first live position are set to zero.
  template <typename Dst>
  void gather_normed(const ComponentState<Scalar>& cs, Eigen::Index m, Eigen::Index from, Eigen::Index to,
                     const VectorType& scale, const VectorType& gain, const VectorType& bias, Dst dst) const {
    const Eigen::Index N = cs.tensor.positions();
    const Eigen::Index live = std::min(std::max(first_of(cs, m), from), to), n = to - live;
    dst.topRows(live - from).setZero();
    typename Dst::RowsBlockXpr rows = dst.middleRows(live - from, n);
    const typename RowMatrixType::ConstRowsBlockXpr source = cs.tensor.stacked().middleRows(m * N + live, n);
    if (config().norm == NormKind::LayerNorm) {
      const VectorType mean = source.rowwise().mean();
      rows = ((source.colwise() - mean).array().colwise() * scale.segment(live, n).array()).rowwise() *
             gain.transpose().array();
    } else {
      rows = (source.array().colwise() * scale.segment(live, n).array()).rowwise() * gain.transpose().array();
    }
    if (m == cs.bias_component && bias.size()) rows.rowwise() += bias.transpose();
  }

  /// Adds rows [from, to) of update (one row per position) to component m, skipping the
  /// rows before its first live position; with `sum`, also adds the updated rows of C to
  /// sum's rows [from, to).
  template <typename Src>
  static void scatter_add(ComponentState<Scalar>& cs, Eigen::Index m, Eigen::Index from, Eigen::Index to,
                          const Src& update, RowMatrixType* sum) {
    const Eigen::Index N = cs.tensor.positions();
    const Eigen::Index live = std::min(std::max(first_of(cs, m), from), to), n = to - live;
    typename RowMatrixType::RowsBlockXpr rows = cs.tensor.stacked().middleRows(m * N + live, n);
    rows += update.middleRows(live - from, n);
    if (sum) sum->middleRows(live, n) += rows;
  }

  /// Per-thread partial sums for cs.component_sum, zeroed (N x D each).
  static void start_sums(ComponentState<Scalar>& cs, int threads) {
    cs.partial_sums.resize(static_cast<std::size_t>(threads));
    for (RowMatrixType& s : cs.partial_sums) s.setZero(cs.tensor.positions(), cs.tensor.width());
  }

  static void finish_sums(ComponentState<Scalar>& cs) {
    cs.component_sum = cs.partial_sums[0];
    for (std::size_t t = 1; t < cs.partial_sums.size(); ++t) cs.component_sum += cs.partial_sums[t];
    cs.component_sum_current = true;
  }

  struct AttentionGroup {
    std::vector<Eigen::Index> members;  // consecutive live components
    Eigen::Index start = 0;             // first position any of them can be non-zero at
  };

  /// Groups of about work_rows packed rows, closed early when the zero rows padded in
  /// (members that start later than the group) would exceed 3% of the group's rows.
  std::vector<AttentionGroup> plan_attention(const ComponentState<Scalar>& cs) const {
    const Eigen::Index M = cs.tensor.components(), N = cs.tensor.positions();
    std::vector<AttentionGroup> groups;
    Eigen::Index live_rows = 0;
    for (Eigen::Index m = 0; m < M; ++m) {
      const Eigen::Index first = first_of(cs, m);
      if (first >= N) continue;
      if (!groups.empty()) {
        AttentionGroup& g = groups.back();
        const Eigen::Index start = std::min(g.start, first);
        const Eigen::Index rows = static_cast<Eigen::Index>(g.members.size() + 1) * (N - start);
        const Eigen::Index live = live_rows + (N - first);
        if (rows <= std::max(cs.work_rows, N - start) && 100 * (rows - live) <= 3 * rows) {
          g.members.push_back(m);
          g.start = start;
          live_rows = live;
          continue;
        }
      }
      groups.push_back(AttentionGroup{{m}, first});
      live_rows = N - first;
    }
    // Largest first, for the dynamic schedule: mixing costs ~ B n^2, the GEMMs ~ B n D.
    const Eigen::Index D = config().dim;
    auto cost = [&](const AttentionGroup& g) {
      const double n = static_cast<double>(N - g.start);
      return static_cast<double>(g.members.size()) * n * (n + static_cast<double>(D));
    };
    std::stable_sort(groups.begin(), groups.end(),
                     [&](const AttentionGroup& a, const AttentionGroup& b) { return cost(a) > cost(b); });
    return groups;
  }

  void propagate_attention(ComponentState<Scalar>& cs, const MatrixType& probs, const VectorType& scale,
                           const LayerWeights<Scalar>& w) const {
    const Config& cfg = config();
    const Eigen::Index N = cs.tensor.positions(), D = cfg.dim, d = cfg.head_dim;
    const Eigen::Index Q = cfg.q_width(), K = cfg.kv_width();
    const int H = cfg.n_heads, group = cfg.heads_per_kv();
    const std::vector<AttentionGroup> groups = plan_attention(cs);
    if (cs.track_sum) start_sums(cs, thread_count());
    double work = 0;
    for (const AttentionGroup& g : groups) {
      const double rows = static_cast<double>(g.members.size()) * static_cast<double>(N - g.start);
      work += rows * (2.0 * static_cast<double>(D) * static_cast<double>(K + Q) +
                      static_cast<double>(N - g.start) * static_cast<double>(Q));
    }
    run_items(cs, static_cast<Eigen::Index>(groups.size()), work, [&](Eigen::Index item, std::size_t thread, int inner) {
      const AttentionGroup& g = groups[static_cast<std::size_t>(item)];
      const Eigen::Index B = static_cast<Eigen::Index>(g.members.size()), s = g.start, n = N - s, R = B * n;
      // Two regions: normed rows, then the mixed heads; values, then the update.
      const Eigen::Index first_width = std::max(D, Q), second_width = std::max(K, D);
      Scalar* base = reserve(cs.scratch[thread], R * (first_width + second_width));
      RowMap normed(base, R, D);
      ColMap values(base + R * first_width, R, K);
      for (Eigen::Index b = 0; b < B; ++b)
        gather_normed(cs, g.members[static_cast<std::size_t>(b)], s, N, scale, w.attention_norm,
                      w.attention_norm_bias, normed.middleRows(b * n, n));
      values.noalias() = normed * w.wv.transpose();
      for (Eigen::Index b = 0; b < B; ++b)
        if (g.members[static_cast<std::size_t>(b)] == cs.bias_component && w.bv.size())
          values.middleRows(b * n, n).rowwise() += w.bv.transpose();
      // Mix per head first, then project once (H times cheaper than expanding every head
      // through Wo). Causality: only the lower-right corner of A from the group's start.
      ColMap mixed(base, R, Q);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(inner) if (inner > 1)
#endif
      for (int h = 0; h < H; ++h) {
        const Eigen::Index kv = h / group;
        const Eigen::Map<const MatrixType> head_values(values.data() + kv * d * R, n, d * B);
        ColMap head_mixed(mixed.data() + h * d * R, n, d * B);
        head_mixed.noalias() = probs.block(h * N + s, s, n, n).template triangularView<Eigen::Lower>() * head_values;
      }
      RowMap update(base + R * first_width, R, D);
      update.noalias() = mixed * w.wo.transpose();
      RowMatrixType* sum = cs.track_sum ? &cs.partial_sums[thread] : nullptr;
      for (Eigen::Index b = 0; b < B; ++b) {
        const Eigen::Index m = g.members[static_cast<std::size_t>(b)];
        if (m == cs.bias_component && w.bo.size()) update.middleRows(b * n, n).rowwise() += w.bo.transpose();
        scatter_add(cs, m, s, N, update.middleRows(b * n, n), sum);
      }
    });
    if (cs.track_sum) finish_sums(cs);
  }

  void propagate_mlp(ComponentState<Scalar>& cs, const MatrixType& act, const VectorType& scale,
                     const LayerWeights<Scalar>& w) const {
    const Eigen::Index M = cs.tensor.components(), N = cs.tensor.positions(), D = config().dim;
    const Eigen::Index I = config().hidden_dim;
    // Rows of the split are padded to whole chunks of neurons (the padding is never read back).
    const Eigen::Index step = kPacket * kChunk, padded_i = (I + step - 1) / step * step;
    Eigen::Index live_components = 0;
    for (Eigen::Index m = 0; m < M; ++m) live_components += first_of(cs, m) < N ? 1 : 0;
    if (cs.track_sum) {
      cs.component_sum.setZero(N, D);
      cs.component_sum_current = true;
    }
    if (live_components == 0) return;
    // The neurons' outputs, one padded row per position.
    RowMatrixType act_rows = RowMatrixType::Zero(N, padded_i);
    act_rows.leftCols(I) = act;
    // Tile height: about work_rows packed rows per tile.
    const Eigen::Index P = std::min(N, std::max<Eigen::Index>(1, cs.work_rows / live_components));
    const Eigen::Index tiles = (N + P - 1) / P;
    std::atomic<bool> orphan{false};
    double live_rows = 0;
    for (Eigen::Index m = 0; m < M; ++m) live_rows += static_cast<double>(N - std::min(N, first_of(cs, m)));
    const double work = live_rows * static_cast<double>(I) * (4.0 * static_cast<double>(D) + 20.0);
    // The last tiles have the most live components: take them first.
    run_items(cs, tiles, work, [&](Eigen::Index item, std::size_t thread, int inner) {
      const Eigen::Index p0 = (tiles - 1 - item) * P, p1 = std::min(N, p0 + P);
      // Member b (a component live in the tile) owns packed rows [offset[b], offset[b] +
      // p1 - start[b]), one per position from start[b].
      std::vector<Eigen::Index> members, start, offset;
      Eigen::Index R = 0, bias_member = -1;
      for (Eigen::Index m = 0; m < M; ++m) {
        const Eigen::Index first = first_of(cs, m);
        if (first >= p1) continue;
        if (m == cs.bias_component) bias_member = static_cast<Eigen::Index>(members.size());
        members.push_back(m);
        start.push_back(std::max(first, p0));
        offset.push_back(R);
        R += p1 - start.back();
      }
      const Eigen::Index B = static_cast<Eigen::Index>(members.size());
      Scalar* base = reserve(cs.scratch[thread], R * (D + padded_i));
      RowMap normed(base, R, D), gate_rows(base + R * D, R, padded_i);
      Eigen::Map<RowMatrixType, 0, Eigen::OuterStride<>> gate(gate_rows.data(), R, I, Eigen::OuterStride<>(padded_i));
      for (Eigen::Index b = 0; b < B; ++b) {
        const Eigen::Index f = start[static_cast<std::size_t>(b)], o = offset[static_cast<std::size_t>(b)];
        gather_normed(cs, members[static_cast<std::size_t>(b)], f, p1, scale, w.mlp_norm, w.mlp_norm_bias,
                      normed.middleRows(o, p1 - f));
      }
      gate.noalias() = normed * w.w1.transpose();
      gate_rows.rightCols(padded_i - I).setZero();
      for (Eigen::Index b = 0; b < B; ++b) {
        const Eigen::Index m = members[static_cast<std::size_t>(b)];
        const Eigen::Index f = start[static_cast<std::size_t>(b)], o = offset[static_cast<std::size_t>(b)];
        if (b == bias_member && w.b1.size()) gate.middleRows(o, p1 - f).rowwise() += w.b1.transpose();
        // The attention sink drives no neuron past position 0.
        if (m == cs.sink_component) {
          const Eigen::Index skip = f == 0 ? 1 : 0;
          gate_rows.middleRows(o + skip, p1 - f - skip).setZero();
        }
      }
      // The split, one position at a time over the members live there.
      bool tile_orphan = false;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) reduction(|| : tile_orphan) num_threads(inner) if (inner > 1)
#endif
      for (Eigen::Index p = p0; p < p1; ++p) {
        std::vector<Scalar*> rows;
        rows.reserve(static_cast<std::size_t>(B));
        Eigen::Index bias_slot = -1;
        for (Eigen::Index b = 0; b < B; ++b) {
          const Eigen::Index f = start[static_cast<std::size_t>(b)];
          if (f > p) continue;
          if (b == bias_member) bias_slot = static_cast<Eigen::Index>(rows.size());
          rows.push_back(gate_rows.row(offset[static_cast<std::size_t>(b)] + p - f).data());
        }
        if (split_position(cs, rows, bias_slot, act_rows.row(p).data(), I, padded_i)) tile_orphan = true;
      }
      if (tile_orphan) orphan = true;
      RowMap update(base, R, D);
      update.noalias() = gate * w.w2.transpose();
      RowMatrixType* sum = cs.track_sum ? &cs.component_sum : nullptr;
      for (Eigen::Index b = 0; b < B; ++b) {
        const Eigen::Index f = start[static_cast<std::size_t>(b)], o = offset[static_cast<std::size_t>(b)];
        if (b == bias_member && w.b2.size()) update.middleRows(o, p1 - f).rowwise() += w.b2.transpose();
        // Tiles own disjoint positions, so their rows of the sum are disjoint too.
        scatter_add(cs, members[static_cast<std::size_t>(b)], f, p1, update.middleRows(o, p1 - f), sum);
      }
    });
    if (orphan) throw std::logic_error("a neuron driven by no component needs a bias component");
  }

  /// The split at one position: rows[i] holds member i's gate contributions to every
  /// neuron (padded_i entries) and is overwritten by its share of the neuron's output
  /// act[k]. A member is eligible for a neuron where its contribution is non-zero (zero:
  /// absent). Neurons nobody drives go to bias_slot; returns true if there is none to take
  /// such a neuron.
  static bool split_position(const ComponentState<Scalar>& cs, const std::vector<Scalar*>& rows,
                             Eigen::Index bias_slot, const Scalar* act, Eigen::Index I, Eigen::Index padded_i) {
    // Written on Eigen's packet primitives: Eigen 3.4 does not vectorise select() or
    // comparisons in array expressions, and this loop touches every (member, position,
    // neuron) entry of the pass. A chunk of kChunk packets stays in registers through the
    // passes, so its rows are read from cache, not memory, after the first pass.
    namespace ei = Eigen::internal;
    const Eigen::Index count = static_cast<Eigen::Index>(rows.size());
    const MlpSplit split = cs.split;
    const Packet inv_t = ei::pset1<Packet>(Scalar(1) / cs.temperature);
    const Packet ratio = ei::pset1<Packet>(static_cast<Scalar>(kProportionalCancelRatio));
    const Packet zero = ei::pset1<Packet>(Scalar(0));
    const Packet none = ei::pset1<Packet>(Scalar(-1));
    const Packet neg_inf = ei::pset1<Packet>(-std::numeric_limits<Scalar>::infinity());
    const Packet all_ones = ei::ptrue(zero);
    auto eligible = [&](const Packet& v) { return ei::pandnot(all_ones, ei::pcmp_eq(v, zero)); };
    bool orphan = false;
    for (Eigen::Index k = 0; k < padded_i; k += kPacket * kChunk) {
      Packet a[kChunk], peak[kChunk], best[kChunk], total[kChunk], magnitude[kChunk], sum[kChunk];
      for (Eigen::Index q = 0; q < kChunk; ++q) {
        a[q] = ei::ploadu<Packet>(act + k + q * kPacket);
        peak[q] = neg_inf;
        best[q] = none;
        total[q] = magnitude[q] = sum[q] = zero;
      }
      // Pass 1: the largest eligible contribution (argmax: and whose; strictly greater, so
      // on ties the lowest member keeps the neuron); sums for the proportional rule.
      for (Eigen::Index i = 0; i < count; ++i) {
        const Scalar* row = rows[static_cast<std::size_t>(i)] + k;
        for (Eigen::Index q = 0; q < kChunk; ++q) {
          const Packet v = ei::ploadu<Packet>(row + q * kPacket);
          const Packet better = ei::pand(eligible(v), ei::pcmp_lt(peak[q], v));
          peak[q] = ei::pselect(better, v, peak[q]);
          if (split == MlpSplit::Argmax) best[q] = ei::pselect(better, ei::pset1<Packet>(static_cast<Scalar>(i)), best[q]);
          if (split == MlpSplit::Proportional) {
            total[q] = ei::padd(total[q], v);
            magnitude[q] = ei::padd(magnitude[q], ei::pabs(v));
          }
        }
      }
      Packet driven[kChunk], orphan_output[kChunk];
      for (Eigen::Index q = 0; q < kChunk; ++q) {
        driven[q] = ei::pandnot(all_ones, ei::pcmp_eq(peak[q], neg_inf));
        // Neurons no member drives go to the bias member.
        orphan_output[q] = ei::pandnot(a[q], driven[q]);
      }
      if (bias_slot < 0) {
        Scalar lanes[kPacket * kChunk];
        for (Eigen::Index q = 0; q < kChunk; ++q) ei::pstoreu(lanes + q * kPacket, driven[q]);
        for (Eigen::Index l = 0; l < kPacket * kChunk && k + l < I; ++l)
          if (!(lanes[l] != Scalar(0))) orphan = true;  // all-ones is a NaN: != 0 holds
      }
      if (split == MlpSplit::Argmax) {
        for (Eigen::Index i = 0; i < count; ++i) {
          Scalar* row = rows[static_cast<std::size_t>(i)] + k;
          const Packet index = ei::pset1<Packet>(static_cast<Scalar>(i));
          for (Eigen::Index q = 0; q < kChunk; ++q) {
            Packet out = ei::pand(ei::pcmp_eq(best[q], index), a[q]);
            if (i == bias_slot) out = ei::padd(out, orphan_output[q]);
            ei::pstoreu(row + q * kPacket, out);
          }
        }
        continue;
      }
      // Pass 2: softmax weights exp((g - peak) / T) and their sum over eligible members.
      for (Eigen::Index i = 0; i < count; ++i) {
        Scalar* row = rows[static_cast<std::size_t>(i)] + k;
        for (Eigen::Index q = 0; q < kChunk; ++q) {
          const Packet v = ei::ploadu<Packet>(row + q * kPacket);
          const Packet e = ei::pand(eligible(v), ei::pexp(ei::pmul(ei::psub(v, peak[q]), inv_t)));
          sum[q] = ei::padd(sum[q], e);
          if (split == MlpSplit::Softmax) ei::pstoreu(row + q * kPacket, e);
        }
      }
      Packet coef[kChunk], signed_share[kChunk];
      for (Eigen::Index q = 0; q < kChunk; ++q) {
        coef[q] = ei::pand(driven[q], ei::pdiv(a[q], sum[q]));
        // Proportional: g / total, unless the contributions nearly cancel (then softmax).
        signed_share[q] = ei::pcmp_lt(ei::pmul(ratio, magnitude[q]), ei::pabs(total[q]));
      }
      // Pass 3: the shares.
      for (Eigen::Index i = 0; i < count; ++i) {
        Scalar* row = rows[static_cast<std::size_t>(i)] + k;
        for (Eigen::Index q = 0; q < kChunk; ++q) {
          const Packet v = ei::ploadu<Packet>(row + q * kPacket);
          Packet out;
          if (split == MlpSplit::Softmax) {
            out = ei::pmul(v, coef[q]);
          } else {
            const Packet e = ei::pexp(ei::pmul(ei::psub(v, peak[q]), inv_t));
            out = ei::pand(eligible(v), ei::pselect(signed_share[q], ei::pmul(ei::pdiv(v, total[q]), a[q]),
                                                    ei::pmul(e, coef[q])));
          }
          if (i == bias_slot) out = ei::padd(out, orphan_output[q]);
          ei::pstoreu(row + q * kPacket, out);
        }
      }
    }
    return orphan;
  }

  Checkpoint<Scalar> checkpoint_;
};

using Modelf = Model<float>;
using Modeld = Model<double>;

}  // namespace depass
