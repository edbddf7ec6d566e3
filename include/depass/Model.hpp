#pragma once
// A decoder-only transformer composed of layer types (layers/): the embedding; per layer a
// normed attention block and a normed MLP block on the residual stream (GPT-NeoX's parallel
// residual: both read the layer's input); the final norm and the unembedding. Each block
// runs the real computation on the hidden state and, when a
// ComponentState rides along, moves the components through the same layers with the
// coefficients the real computation froze (docs/method.md): by the blocked engine
// (engine/) or by each layer's dense reference rule. The plain forward pass is the same
// code with no components, so the two can never drift apart.

#include <Eigen/Core>
#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ComponentState.hpp"
#include "ComponentTensor.hpp"
#include "Config.hpp"
#include "Gradients.hpp"
#include "Hook.hpp"
#include "Objective.hpp"
#include "Tape.hpp"
#include "Threads.hpp"
#include "Weights.hpp"
#include "engine/BlockedAttention.hpp"
#include "engine/BlockedMlp.hpp"
#include "layers/Attention.hpp"
#include "layers/Embedding.hpp"
#include "layers/Mlp.hpp"
#include "layers/NeuronSplit.hpp"
#include "layers/Norm.hpp"
#include "layers/Unembedding.hpp"

namespace depass {

/// What a parallel-residual model's MLP reads (GPT-NeoX: x += attention(norm1(x)) +
/// mlp(norm2(x))): the layer's input, boundary 2l, not the state after the attention.
template <typename Scalar>
struct LayerInput {
  Matrix<Scalar> state;                // N x D
  ComponentTensor<Scalar> components;  // M x N x D in a decomposed pass (the same members), else empty
};

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

  // The layers, as views of the weights: cheap to build, valid while the model lives.
  Embedding<Scalar> embedding() const { return Embedding<Scalar>(config(), weights()); }
  Norm<Scalar> attention_norm(int layer) const {
    const LayerWeights<Scalar>& w = layer_weights(layer);
    return Norm<Scalar>(config().norm, w.attention_norm, w.attention_norm_bias, config().norm_eps);
  }
  Attention<Scalar> attention(int layer) const {
    return Attention<Scalar>(config(), layer_weights(layer), rotary_tables_.get());
  }
  Norm<Scalar> mlp_norm(int layer) const {
    const LayerWeights<Scalar>& w = layer_weights(layer);
    return Norm<Scalar>(config().norm, w.mlp_norm, w.mlp_norm_bias, config().norm_eps);
  }
  Mlp<Scalar> mlp(int layer) const { return Mlp<Scalar>(config(), layer_weights(layer)); }
  /// Gemma 2's RMSNorm of block `site`'s output in `layer`, before the residual add; none
  /// for other models.
  std::optional<Norm<Scalar>> post_norm(int layer, Site site) const {
    if (!config().post_norms) return std::nullopt;
    const LayerWeights<Scalar>& w = layer_weights(layer);
    return Norm<Scalar>(NormKind::RMSNorm, site == Site::Attention ? w.attention_post_norm : w.mlp_post_norm, kNoOffset,
                        config().norm_eps);
  }
  /// A part of block `site`'s output in `layer` (all of it, a head's or a neuron's share, a
  /// bias) as it enters the residual stream: through the post-norm with the real output's
  /// scales `post_scale` frozen (Gemma 2; Forward::post_scale), else unchanged.
  MatrixType residual_part(int layer, Site site, MatrixType part, const VectorType& post_scale) const {
    if (const std::optional<Norm<Scalar>> post = post_norm(layer, site)) post->apply_frozen(part, post_scale, false, part);
    return part;
  }
  Unembedding<Scalar> unembedding() const { return Unembedding<Scalar>(config(), weights()); }

  /// Throws std::invalid_argument unless ids is a non-empty sequence of valid token ids
  /// that fits in the context.
  void check_tokens(const std::vector<int>& ids) const {
    const Config& cfg = config();
    if (ids.empty()) throw std::invalid_argument("token sequence is empty");
    if (static_cast<long long>(ids.size()) > cfg.max_seq_len)
      throw std::invalid_argument("token sequence has " + std::to_string(ids.size()) +
                                  " tokens, longer than the model's context of " + std::to_string(cfg.max_seq_len));
    for (std::size_t i = 0; i < ids.size(); ++i)
      if (ids[i] < 0 || ids[i] >= cfg.vocab_size)
        throw std::invalid_argument("token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                                    " is out of range [0, " + std::to_string(cfg.vocab_size) + ")");
  }

  void check_layer(int layer) const {
    if (layer < 0 || layer >= config().n_layers)
      throw std::invalid_argument("layer " + std::to_string(layer) + " is out of range [0, " +
                                  std::to_string(config().n_layers) + ")");
  }

  /// The state entering the first block, N x D.
  MatrixType embed(const std::vector<int>& ids, const Hook<Scalar>& hook = {}) const {
    check_tokens(ids);
    MatrixType x = embedding().forward(ids);
    detail::Tap<Scalar>{&hook, -1}("embed", x);
    return x;
  }

  /// x += attention(norm(x)) (Gemma 2: x += post_norm(attention(norm(x)))); components (if
  /// any) move with the frozen probabilities (and the frozen post-norm scale).
  /// Returns what the real computation gave (output, probabilities, head outputs).
  typename Attention<Scalar>::Forward attention_block(int layer, MatrixType& x,
                                                      ComponentState<Scalar>* components = nullptr,
                                                      const Hook<Scalar>& hook = {}) const {
    check_layer(layer);
    return residual_block(attention_norm(layer), attention(layer), post_norm(layer, Site::Attention), x, components,
                          detail::Tap<Scalar>{&hook, layer}, "attn_norm", "attn_post_norm", "attn_resid", 2 * layer + 1);
  }

  /// x += mlp(norm(x)); each neuron's output is shared among the components by the split
  /// rule. Returns what the real computation gave (output, neuron values). A parallel-residual
  /// model's MLP reads the layer's input instead (x += mlp(norm(input))): pass it, as
  /// run_layer does.
  typename Mlp<Scalar>::Forward mlp_block(int layer, MatrixType& x, ComponentState<Scalar>* components = nullptr,
                                          const Hook<Scalar>& hook = {}, const LayerInput<Scalar>* input = nullptr) const {
    check_layer(layer);
    check_input(layer, x, components, input);
    return residual_block(mlp_norm(layer), mlp(layer), post_norm(layer, Site::Mlp), x, components,
                          detail::Tap<Scalar>{&hook, layer}, "ffn_norm", "ffn_post_norm", "layer_out", 2 * layer + 2,
                          input);
  }

  /// Block b (2l: layer l's attention, 2l+1: its MLP) on x. `input` carries the layer's
  /// input from the attention to the MLP (a parallel-residual model's MLP reads it); it is
  /// assigned, not rebuilt, so a pass reuses its memory layer after layer. With sinks from
  /// the attention (ComponentState::sink_policy), the attention renews the MLP's sinks.
  void run_block(int b, MatrixType& x, ComponentState<Scalar>* components, const Hook<Scalar>& hook,
                 LayerInput<Scalar>& input) const {
    const bool parallel = config().parallel_residual;
    if (b % 2 == 1) {
      mlp_block(b / 2, x, components, hook, parallel ? &input : nullptr);
      return;
    }
    if (parallel) {
      input.state = x;
      if (components) input.components = components->tensor;
    }
    const typename Attention<Scalar>::Forward real = attention_block(b / 2, x, components, hook);
    // The layer's MLP split treats as sinks the positions this attention does.
    if (components && components->sink_policy.from_attention())
      components->sinks = components->sink_policy.of_layer(real.probs, config().n_heads);
  }

  /// Both blocks of a layer: attention then MLP, or (parallel residual) both from the layer's input.
  void run_layer(int layer, MatrixType& x, ComponentState<Scalar>* components = nullptr, const Hook<Scalar>& hook = {}) const {
    LayerInput<Scalar> input;
    run_block(2 * layer, x, components, hook, input);
    run_block(2 * layer + 1, x, components, hook, input);
  }

  /// Final norm of x (N x D); its per-row scale goes to *scale for freezing.
  MatrixType final_norm(const MatrixType& x, VectorType* scale = nullptr) const {
    return unembedding().norm().forward(x, scale);
  }

  /// The final norm with the real state's scale frozen, in place on every component (the
  /// norm's offset goes to the bias component).
  void final_norm_components(ComponentState<Scalar>& cs, const VectorType& scale) const {
    const Unembedding<Scalar> out = unembedding();
    const Norm<Scalar>& norm = out.norm();
    ComponentTensor<Scalar>& C = cs.tensor;
    const Eigen::Index M = C.components(), N = C.positions();
    // Rows before a component's first position are zero, and the norm keeps them zero.
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 8) num_threads(threads()) if (C.stacked().size() > (1 << 20))
#endif
    for (Eigen::Index m = 0; m < M; ++m) {
      const Eigen::Index first = std::min(cs.first(m), N);
      typename RowMatrix<Scalar>::RowsBlockXpr rows = C.stacked().middleRows(m * N + first, N - first);
      norm.apply_frozen(rows, scale.segment(first, N - first), cs.is_bias(m), rows);
    }
  }

  /// Runs every block and returns the logits (N x V), or only the last row when last_only.
  MatrixType forward(const std::vector<int>& ids, const Hook<Scalar>& hook = {}, bool last_only = false) const {
    MatrixType x = embed(ids, hook);
    for (int l = 0; l < config().n_layers; ++l) run_layer(l, x, nullptr, hook);
    const detail::Tap<Scalar> tap{&hook, -1};
    const Unembedding<Scalar> out = unembedding();
    const MatrixType normed = out.norm().forward(x, nullptr);
    tap("final_norm", normed);
    MatrixType logits = last_only ? out.logits(normed.bottomRows(1)) : out.logits(normed);
    tap("logits", logits);
    return logits;
  }

  /// The forward pass from given embeddings x0 (S*N x D: S sequences of sequence_length = N
  /// positions stacked, 0 meaning one sequence), keeping what backward() needs. The layers
  /// run their real forward, as in forward(); `ablation` zeroes heads or neurons on the way.
  /// `scope` RecordScope::at(p): the last layer's MLP runs only at position p of each
  /// sequence (Tape::scope) and the tape keeps only what backward() reads, for callers that
  /// read nothing but an objective at p and its gradients.
  Tape<Scalar> record(const Eigen::Ref<const MatrixType>& x0, Eigen::Index sequence_length = 0,
                      const Ablation& ablation = {}, const RecordScope& scope = {}) const {
    const Eigen::Index N = sequence_length > 0 ? sequence_length : x0.rows();
    check_batch(x0, N, ablation);
    check_scope(scope, N);
    Tape<Scalar> tape;
    tape.sequence_length = N;
    tape.scope = scope;
    tape.layers.resize(static_cast<std::size_t>(config().n_layers));
    MatrixType x = x0;
    for (int l = 0; l < config().n_layers; ++l) {
      LayerTape<Scalar>& t = tape.layers[static_cast<std::size_t>(l)];
      record_attention(l, t, x, ablation, N);
      if (scope.trimmed && l == config().n_layers - 1) {
        // Nothing after the last MLP reads another row than p: from here on, S rows.
        x = rows_at(x, N, scope.position);
        record_mlp(l, t, rows_at(t.mlp_input, N, scope.position), x, ablation, 1);
      } else {
        record_mlp(l, t, t.mlp_input, x, ablation, N);
      }
      if (scope.lean) drop_activations(l, t);
    }
    tape.final_normed = final_norm(x, &tape.final_scale);
    tape.final_input = std::move(x);
    return tape;
  }

  /// The objective of every sequence of a tape (S values).
  VectorType objective_values(const Tape<Scalar>& tape, const Objective& objective) const {
    objective.validate(tape.sequence_length, config().vocab_size);
    const MatrixType logits = objective_logits(tape, objective);
    VectorType values(logits.rows());
    for (Eigen::Index s = 0; s < logits.rows(); ++s) values(s) = objective.value<Scalar>(logits.row(s).transpose());
    return values;
  }

  /// Reverse mode over a recorded tape: the gradient of `objective` (read at its position in
  /// every sequence) wrt the embeddings, and wrt the residual boundaries, heads and neurons
  /// `request` names. Each block x += layer(norm(x)) passes dx += norm'(layer'(dx)); in a
  /// parallel-residual model both blocks of a layer read the gradient wrt the layer's output,
  /// which is also the gradient at boundary 2l+1 (input + attention, which nothing reads).
  /// A trimmed tape (RecordScope::at(p)) takes objectives at p only, and gives every gradient
  /// the full tape gives: the last MLP's backward runs at the rows p, the only non-zero ones.
  Gradients<Scalar> backward(const Tape<Scalar>& tape, const Objective& objective,
                             const GradientRequest& request = {}) const {
    check_request(request);
    objective.validate(tape.sequence_length, config().vocab_size);
    Gradients<Scalar> g;
    MatrixType dx = objective_gradient(tape, objective, g.values);  // S x D if the tape is trimmed
    const int L = config().n_layers;
    const bool parallel = config().parallel_residual;
    if (wanted(request.boundaries, 2 * L)) g.residual[2 * L] = every_row(tape, dx);
    for (int l = L - 1; l >= 0; --l) {
      const LayerTape<Scalar>& t = tape.layers[static_cast<std::size_t>(l)];
      const bool trimmed = tape.scope.trimmed && l == L - 1;
      MatrixType d_output = parallel ? dx : MatrixType();
      if (trimmed) {  // at the rows p, then every row: the others have no path to the objective (zero gradients)
        const MatrixType input = rows_at(t.mlp_input, tape.sequence_length, tape.scope.position);
        const MatrixType d_act = mlp_block_backward(l, t, input, dx);
        if (wanted(request.neuron_layers, l)) g.neurons[l] = every_row(tape, d_act);
        dx = every_row(tape, dx);
        if (parallel) d_output = every_row(tape, d_output);
      } else {
        keep(request.neuron_layers, l, mlp_block_backward(l, t, dx), g.neurons);
      }
      keep(request.boundaries, 2 * l + 1, parallel ? d_output : dx, g.residual);
      const MatrixType dz = attention_block_backward(l, t, dx, tape.sequence_length, parallel ? &d_output : nullptr);
      keep(request.head_layers, l, dz, g.heads);
      keep(request.boundaries, 2 * l, dx, g.residual);
    }
    g.embeddings = std::move(dx);
    return g;
  }

  /// Reverse mode through layer l's MLP block, x += post(mlp(norm(x))): dx, the gradient wrt
  /// the state after it, becomes the gradient wrt the state before it. Returns the gradient
  /// wrt the neuron values.
  MatrixType mlp_block_backward(int l, const LayerTape<Scalar>& t, MatrixType& dx) const {
    return mlp_block_backward(l, t, t.mlp_input, dx);
  }
  /// The same with the MLP's input rows given (`input`: the rows t.mlp was recorded at).
  MatrixType mlp_block_backward(int l, const LayerTape<Scalar>& t, const MatrixType& input, MatrixType& dx) const {
    const MatrixType d_act = mlp(l).backward_output(post_backward(l, Site::Mlp, t.mlp.out, t.mlp.post_scale, dx));
    dx += mlp_norm(l).backward(input, t.mlp_scale, mlp(l).backward(t.mlp, d_act));
    return d_act;
  }
  /// The same for layer l's attention block; returns the gradient wrt the heads' mixed values.
  /// d_output: the gradient wrt what the block adds, if not dx (a parallel-residual layer's
  /// attention sees the gradient wrt the layer output, before the MLP's path joined dx).
  MatrixType attention_block_backward(int l, const LayerTape<Scalar>& t, MatrixType& dx, Eigen::Index sequence_length,
                                      const MatrixType* d_output = nullptr) const {
    const MatrixType dz = attention(l).backward_output(
        post_backward(l, Site::Attention, t.attention.out, t.attention.post_scale, d_output ? *d_output : dx));
    dx += attention_norm(l).backward(t.attention_input, t.attention_scale, attention(l).backward(t.attention, dz, sequence_length));
    return dz;
  }

  /// Greedy continuation of prompt: up to max_new tokens, stopping after stop_token
  /// (if >= 0) or when the context is full. Returns only the new tokens.
  std::vector<int> generate(const std::vector<int>& prompt, int max_new, int stop_token = -1) const {
    if (max_new < 0) throw std::invalid_argument("max_new = " + std::to_string(max_new) + " must be >= 0");
    check_tokens(prompt);
    std::vector<int> sequence = prompt, generated;
    while (static_cast<int>(generated.size()) < max_new && static_cast<int>(sequence.size()) < config().max_seq_len) {
      const MatrixType logits = forward(sequence, {}, true);
      Eigen::Index best = 0;
      logits.row(0).maxCoeff(&best);
      sequence.push_back(static_cast<int>(best));
      generated.push_back(static_cast<int>(best));
      if (best == stop_token) break;
    }
    return generated;
  }

 private:
  static inline const VectorType kNoOffset{};

  /// What block `site`'s output `out` adds to the residual stream: out itself, or (Gemma 2)
  /// its post-norm, whose row scales go to *post_scale.
  MatrixType block_update(int layer, Site site, const MatrixType& out, VectorType& post_scale) const {
    if (const std::optional<Norm<Scalar>> post = post_norm(layer, site)) return post->forward(out, &post_scale);
    return out;
  }
  /// The gradient wrt a block's output from dx, the gradient wrt what it added to the residual.
  MatrixType post_backward(int layer, Site site, const MatrixType& out, const VectorType& post_scale,
                           const MatrixType& dx) const {
    if (const std::optional<Norm<Scalar>> post = post_norm(layer, site)) return post->backward(out, post_scale, dx);
    return dx;
  }

  /// Layer l's attention block of record(): x (S*N x D) += its update; fills t's attention
  /// part and t.mlp_input (and t.parallel_mid).
  void record_attention(int l, LayerTape<Scalar>& t, MatrixType& x, const Ablation& ablation, Eigen::Index N) const {
    t.attention_input = x;
    t.attention = attention(l).forward(attention_norm(l).forward(x, &t.attention_scale), {}, N);
    if (ablation.touches(l, Site::Attention)) {
      zero_columns(t.attention.heads, ablation, l, Site::Attention, N);
      t.attention.out = attention(l).output(t.attention.heads);
    }
    const MatrixType attention_update = block_update(l, Site::Attention, t.attention.out, t.attention.post_scale);
    if (config().parallel_residual) {  // the MLP reads the layer's input; boundary 2l+1 is input + attention
      t.mlp_input = x;
      t.parallel_mid = x + attention_update;
    }
    x += attention_update;
    if (!config().parallel_residual) t.mlp_input = x;
  }

  /// Layer l's MLP block of record() on `input` (what the MLP reads, row for row with x): x
  /// += its update. rows_per_sequence: N, or 1 for a trimmed last layer (row s: sequence s).
  void record_mlp(int l, LayerTape<Scalar>& t, const MatrixType& input, MatrixType& x, const Ablation& ablation,
                  Eigen::Index rows_per_sequence) const {
    t.mlp = mlp(l).forward(mlp_norm(l).forward(input, &t.mlp_scale), {});
    if (ablation.touches(l, Site::Mlp)) {
      zero_columns(t.mlp.act, ablation, l, Site::Mlp, rows_per_sequence);
      t.mlp.out = mlp(l).output(t.mlp.act);
    }
    x += block_update(l, Site::Mlp, t.mlp.out, t.mlp.post_scale);
  }

  /// What backward() does not read from layer l's tape (RecordScope::lean): the mixed
  /// values and neuron values, and the blocks' outputs unless a post-norm's backward needs them.
  void drop_activations(int l, LayerTape<Scalar>& t) const {
    t.attention.heads = MatrixType();
    t.mlp.act = MatrixType();
    if (!post_norm(l, Site::Attention)) t.attention.out = MatrixType();
    if (!post_norm(l, Site::Mlp)) t.mlp.out = MatrixType();
  }

  /// Row p of every sequence of all (S*N rows): S rows.
  static MatrixType rows_at(const MatrixType& all, Eigen::Index N, Eigen::Index p) {
    const Eigen::Index S = all.rows() / N;
    MatrixType rows(S, all.cols());
    for (Eigen::Index s = 0; s < S; ++s) rows.row(s) = all.row(s * N + p);
    return rows;
  }

  /// A gradient of a trimmed tape's rows (S rows, sequence s's position p) at every row,
  /// S*N, zero elsewhere: exactly what the full pass gives there, since no other row of the
  /// last MLP or the final state reaches the objective. Other tapes' gradients: unchanged.
  static MatrixType every_row(const Tape<Scalar>& tape, const MatrixType& rows) {
    if (!tape.scope.trimmed || rows.size() == 0) return rows;
    const Eigen::Index N = tape.sequence_length;
    MatrixType all = MatrixType::Zero(rows.rows() * N, rows.cols());
    for (Eigen::Index s = 0; s < rows.rows(); ++s) all.row(s * N + tape.scope.position) = rows.row(s);
    return all;
  }

  void check_scope(const RecordScope& scope, Eigen::Index N) const {
    if (scope.trimmed && (scope.position < 0 || scope.position >= N))
      throw std::invalid_argument("scope position " + std::to_string(scope.position) + " is out of range [0, " +
                                  std::to_string(N) + ")");
  }

  const LayerWeights<Scalar>& layer_weights(int layer) const {
    check_layer(layer);
    return weights().layers[static_cast<std::size_t>(layer)];
  }

  void check_state(const MatrixType& x, const ComponentState<Scalar>* components) const {
    if (x.cols() != config().dim)
      throw std::invalid_argument("hidden state has width " + std::to_string(x.cols()) + ", expected dim = " +
                                  std::to_string(config().dim));
    if (x.rows() < 1 || x.rows() > config().max_seq_len)
      throw std::invalid_argument("hidden state has " + std::to_string(x.rows()) + " positions, allowed [1, " +
                                  std::to_string(config().max_seq_len) + "]");
    if (!components) return;
    const ComponentTensor<Scalar>& C = components->tensor;
    if (C.positions() != x.rows() || C.width() != x.cols())
      throw std::invalid_argument("component tensor is " + std::to_string(C.components()) + " x " +
                                  std::to_string(C.positions()) + " x " + std::to_string(C.width()) + ", state is " +
                                  std::to_string(x.rows()) + " x " + std::to_string(x.cols()));
    if (config().has_biases() && !components->bias_elsewhere() && (components->bias_component < 0 || components->bias_component >= C.components()))
      throw std::invalid_argument("model has biases: the component state needs a bias component");
  }

  void check_batch(const Eigen::Ref<const MatrixType>& x0, Eigen::Index N, const Ablation& ablation) const {
    if (x0.cols() != config().dim)
      throw std::invalid_argument("embeddings have width " + std::to_string(x0.cols()) + ", expected dim = " +
                                  std::to_string(config().dim));
    if (N < 1 || N > config().max_seq_len)
      throw std::invalid_argument("sequence_length " + std::to_string(N) + " is out of range [1, " +
                                  std::to_string(config().max_seq_len) + "]");
    if (x0.rows() == 0 || x0.rows() % N != 0)
      throw std::invalid_argument("embeddings have " + std::to_string(x0.rows()) +
                                  " rows, not a positive multiple of sequence_length " + std::to_string(N));
    const Eigen::Index S = x0.rows() / N;
    if (!ablation.columns.empty()) {
      check_layer(ablation.layer);
      if (static_cast<Eigen::Index>(ablation.columns.size()) != S)
        throw std::invalid_argument("ablation has " + std::to_string(ablation.columns.size()) +
                                    " column ranges, expected one per sequence (" + std::to_string(S) + ")");
      for (const std::pair<Eigen::Index, Eigen::Index>& c : ablation.columns) check_ablated(ablation.site, c.first, c.second);
    }
    for (const AblationCut& c : ablation.cuts) {
      check_layer(c.layer);
      if (c.sequence < 0 || c.sequence >= S)
        throw std::invalid_argument("ablation cut sequence " + std::to_string(c.sequence) + " is out of range [0, " +
                                    std::to_string(S) + ")");
      check_ablated(c.site, c.begin, c.count);
    }
  }

  void check_ablated(Site site, Eigen::Index begin, Eigen::Index count) const {
    const Eigen::Index width = site == Site::Attention ? config().q_width() : config().hidden_dim;
    if (begin < 0 || count < 0 || begin + count > width)
      throw std::invalid_argument("ablation columns [" + std::to_string(begin) + ", " + std::to_string(begin + count) +
                                  ") are out of range [0, " + std::to_string(width) + ")");
  }

  /// Zeroes what `ablation` names at `site` of layer l in values (S*N rows).
  static void zero_columns(MatrixType& values, const Ablation& ablation, int l, Site site, Eigen::Index N) {
    if (ablation.layer == l && ablation.site == site)
      for (std::size_t s = 0; s < ablation.columns.size(); ++s)
        values.block(static_cast<Eigen::Index>(s) * N, ablation.columns[s].first, N, ablation.columns[s].second).setZero();
    for (const AblationCut& c : ablation.cuts)
      if (c.layer == l && c.site == site) values.block(c.sequence * N, c.begin, N, c.count).setZero();
  }

  void check_request(const GradientRequest& request) const {
    const int L = config().n_layers;
    for (int b : request.boundaries)
      if (b < 0 || b > 2 * L)
        throw std::invalid_argument("boundary " + std::to_string(b) + " is out of range [0, " + std::to_string(2 * L) +
                                    "]");
    for (int l : request.head_layers) check_layer(l);
    for (int l : request.neuron_layers) check_layer(l);
  }

  /// Logits at the objective's position of every sequence, S x V.
  MatrixType objective_logits(const Tape<Scalar>& tape, const Objective& objective) const {
    const Eigen::Index S = tape.sequences();
    MatrixType rows(S, config().dim);
    for (Eigen::Index s = 0; s < S; ++s) rows.row(s) = tape.final_normed.row(tape.final_row(s, objective.position));
    return unembedding().logits(rows);
  }

  /// df/d(final state), S*N x D (non-zero only at the objective's rows; a trimmed tape: S x
  /// D, those rows only); the values go to *values.
  MatrixType objective_gradient(const Tape<Scalar>& tape, const Objective& objective, VectorType& values) const {
    const Eigen::Index S = tape.sequences();
    const MatrixType logits = objective_logits(tape, objective);
    MatrixType d_logits(S, logits.cols());
    values.resize(S);
    for (Eigen::Index s = 0; s < S; ++s) {
      values(s) = objective.value<Scalar>(logits.row(s).transpose());
      d_logits.row(s) = objective.gradient<Scalar>(logits.row(s).transpose()).transpose();
    }
    const MatrixType d_rows = unembedding().backward(d_logits, logits);
    MatrixType d_normed = MatrixType::Zero(tape.final_normed.rows(), config().dim);
    for (Eigen::Index s = 0; s < S; ++s) d_normed.row(tape.final_row(s, objective.position)) = d_rows.row(s);
    return unembedding().norm().backward(tape.final_input, tape.final_scale, d_normed);
  }

  static bool wanted(const std::vector<int>& indices, int index) {
    return std::find(indices.begin(), indices.end(), index) != indices.end();
  }
  static void keep(const std::vector<int>& indices, int index, const MatrixType& value, std::map<int, MatrixType>& out) {
    if (wanted(indices, index)) out[index] = value;
  }

  /// x += block(norm(x)), the real computation; then the components, if any, through the
  /// same norm and block with the coefficients it froze (the blocked engine, or the
  /// block's reference rule). Hook events: `norm_name` (normed state), the block's own,
  /// `residual_name` (state after the block, with the components).
  /// `input` (parallel residual): the block reads it, not x, and adds to x.
  template <typename Block>
  typename Block::Forward residual_block(const Norm<Scalar>& norm, const Block& block, const std::optional<Norm<Scalar>>& post,
                                         MatrixType& x, ComponentState<Scalar>* components, const detail::Tap<Scalar>& tap,
                                         const char* norm_name, const char* post_name, const char* residual_name,
                                         int boundary, const LayerInput<Scalar>* input = nullptr) const {
    check_state(x, components);
    VectorType scale;
    typename Block::Forward real;
    {
      const detail::ThreadLimit limit(real_block_threads(x.rows()));
      const MatrixType xn = norm.forward(input ? input->state : x, &scale);
      tap(norm_name, xn);
      real = block.forward(xn, tap);
      if (post) {
        const MatrixType normed_out = post->forward(real.out, &real.post_scale);
        tap(post_name, normed_out);
        x += normed_out;
      } else {
        x += real.out;
      }
    }
    if (components) {
      components->workspace.sum_current = false;
      const detail::BlockInput<Scalar> reads(*components, input ? &input->components : nullptr);
      const FrozenNorm<Scalar> frozen_post{post ? &*post : nullptr, &real.post_scale};
      if (components->engine.reference)
        block.propagate(real, normed_components(norm, scale, *components), *components, frozen_post);
      else detail::propagate_blocked(block, norm, real, scale, *components, frozen_post);
    }
    tap.residual(residual_name, x, components ? &components->tensor : nullptr, boundary);
    return real;
  }

  /// A parallel-residual model's MLP needs the layer's input, of the state's shape (and the
  /// components' with components); other models' MLPs read the state.
  void check_input(int layer, const MatrixType& x, const ComponentState<Scalar>* components,
                   const LayerInput<Scalar>* input) const {
    const std::string where = "mlp_block(" + std::to_string(layer) + "): ";
    if (!config().parallel_residual) {
      if (input) throw std::invalid_argument(where + "a layer input is read only by a parallel-residual model");
      return;
    }
    if (!input)
      throw std::invalid_argument(where + "a parallel-residual model's (" + config().architecture +
                                  ") MLP reads the layer's input: pass it (or use run_layer)");
    if (input->state.rows() != x.rows() || input->state.cols() != x.cols())
      throw std::invalid_argument(where + "the layer input is " + std::to_string(input->state.rows()) + " x " +
                                  std::to_string(input->state.cols()) + ", the state " + std::to_string(x.rows()) +
                                  " x " + std::to_string(x.cols()));
    if (components && (input->components.components() != components->tensor.components() ||
                       input->components.positions() != components->tensor.positions() ||
                       input->components.width() != components->tensor.width()))
      throw std::invalid_argument(where + "the layer input's components do not match the component tensor's shape");
  }

  /// Threads for a block's real computation over N positions: one when even its largest
  /// product is too small to share.
  int real_block_threads(Eigen::Index N) const {
    const double largest =
        2.0 * static_cast<double>(N) * config().dim * std::max(config().q_width(), config().hidden_dim);
    return largest >= detail::kParallelWork ? threads() : 1;
  }

  /// Every component through the frozen norm, (M*N) x D (the reference rules' input).
  static MatrixType normed_components(const Norm<Scalar>& norm, const VectorType& scale,
                                      const ComponentState<Scalar>& cs) {
    const Eigen::Index M = cs.tensor.components(), N = cs.tensor.positions();
    MatrixType out(M * N, cs.tensor.width());
    for (Eigen::Index m = 0; m < M; ++m)
      norm.apply_frozen(cs.input().component(m), scale, cs.is_bias(m), out.middleRows(m * N, N));
    return out;
  }

  Checkpoint<Scalar> checkpoint_;
  // RoPE's cos/sin, computed once for all layers and passes (copies of the model share them).
  std::shared_ptr<detail::RotaryTables> rotary_tables_ = std::make_shared<detail::RotaryTables>();
};

using Modelf = Model<float>;
using Modeld = Model<double>;

}  // namespace depass
