#pragma once
// DePass: the forward pass with a component tensor riding along (docs/method.md). The
// Decomposer builds the start components (Initialisation.hpp), moves them through the
// model's blocks, in one pass or in chunks, and returns a Decomposition with readouts.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "Boundary.hpp"
#include "ComponentState.hpp"
#include "ComponentTensor.hpp"
#include "Initialisation.hpp"
#include "Model.hpp"

namespace depass {

struct DecomposeOptions {
  MlpSplit split = MlpSplit::Softmax;
  double temperature = 0.1;            // softmax split temperature, > 0
  bool bos_sink = true;                // token level: position 0 gets MLP output only at itself
  /// Token level, >= 0: 0 = off; else before each MLP, every position that the layer's
  /// attention gives at least sink_ratio x uniform attention (mean over the heads and over
  /// at least kSinkMinQueries later queries) gets MLP output only at itself too.
  double sink_ratio = 0;
  Boundary end = Boundary::output();   // where propagation stops
  /// 0: no limit. Else a bound on the run's working memory in bytes (component tensors,
  /// engine scratch, the result, the forward pass's buffers; not the model): components
  /// run in chunks small enough to fit. A budget too small for one component per chunk, or
  /// for the result, is refused; set keep_positions, or the result holds every position.
  std::size_t memory_budget_bytes = 0;
  long chunk_size = 0;                 // components per chunk; 0: all (or as the budget allows)
  /// Positions whose component rows the result keeps; readouts work there only. Empty:
  /// every position. Negative values count from the end (-1: the last position).
  std::vector<long> keep_positions;
  bool straightforward = false;        // each layer's dense reference rule instead of the blocked engine
  long work_rows = 4096;               // packed rows per work item of the blocked engine, > 0:
                                       // per-thread scratch ~ work_rows x (D + I) scalars
                                       // (at most 1/32 of the live rows, >= 1024)
  /// A sharded run (docs/distributed.md): this process holds a share of the components and
  /// combines the MLP split and the completeness sums with the group's other processes,
  /// which make the same call. Rank 0's result holds every component; the others' none,
  /// unless shards_share_result. Null: one process holds every component.
  ShardGroup* shards = nullptr;
  bool shards_share_result = false;    // sharded: every rank receives the whole result
  /// Native: every product in Scalar. Bf16 (float models, oneDNN builds, blocked engine):
  /// the weight products of the propagation in bfloat16 with float accumulation
  /// (GemmPrecision.hpp); completeness() then shows the rounding's residual.
  GemmPrecision gemm_precision = GemmPrecision::Native;

  SplitRule split_rule() const { return SplitRule{split, temperature}; }
  EngineOptions engine_options() const {
    EngineOptions e;
    e.work_rows = static_cast<Eigen::Index>(work_rows);
    e.reference = straightforward;
    e.track_sum = true;
    e.gemm_precision = gemm_precision;
    return e;
  }
};

/// Completeness at one boundary: max |sum_m C[m] - x| and max |x| for scale.
struct BoundaryCheck {
  Boundary boundary;
  bool final_normed = false;  // at the output: after the final norm (what the logits read)
  double residual_max_abs = 0;
  double state_max_abs = 0;
};

template <typename Scalar>
class Decomposition {
 public:
  using MatrixType = Matrix<Scalar>;
  using VectorType = Vector<Scalar>;
  using ConstRow = typename RowMatrix<Scalar>::ConstRowXpr;

  /// What a decomposition holds (the Decomposer fills one in).
  struct Parts {
    ComponentTensor<Scalar> components;     // at the end boundary, every or the kept positions
    MatrixType state;                       // the real state at the end boundary, N x D
    std::vector<std::string> labels;        // one per component
    std::vector<Eigen::Index> kept;         // ascending positions held, empty: all
    Eigen::Index bias_component = -1;
    Eigen::Index chunk_residual_component = -1;
    int chunks = 1;
    bool forced_chunking = false;           // chunk_size was given
    Boundary end = Boundary::output();
    std::vector<BoundaryCheck> checks;
    std::string gemm_kernel;                // GemmPrecision::Bf16: what ran the products
  };

  Decomposition() = default;
  /// The model must outlive the decomposition.
  Decomposition(const Model<Scalar>& model, Parts parts) : model_(&model), p_(std::move(parts)) {
    const Eigen::Index P = p_.kept.empty() ? p_.state.rows() : static_cast<Eigen::Index>(p_.kept.size());
    if (p_.components.positions() != P || static_cast<Eigen::Index>(p_.labels.size()) != p_.components.components())
      throw std::logic_error("Decomposition: components, labels and kept positions disagree");
    if (!p_.kept.empty()) {
      slot_.assign(static_cast<std::size_t>(p_.state.rows()), -1);
      for (std::size_t i = 0; i < p_.kept.size(); ++i) slot_[static_cast<std::size_t>(p_.kept[i])] = static_cast<Eigen::Index>(i);
    }
  }

  /// Components at the end boundary; at the output they are final-normed (frozen scale),
  /// so that component_logits is a plain product with the unembedding. They cover every
  /// position, or only kept_positions() (in that order) when DecomposeOptions::keep_positions
  /// was set; row() finds a position either way.
  const ComponentTensor<Scalar>& components() const { return p_.components; }
  /// Component m at position (D values).
  ConstRow row(Eigen::Index component, Eigen::Index position) const {
    check_component(component);
    return p_.components.stacked().row(component * p_.components.positions() + slot(position));
  }
  /// The real state at the end boundary (final-normed at the output), every position.
  const MatrixType& state() const { return p_.state; }
  const std::vector<std::string>& labels() const { return p_.labels; }
  Eigen::Index component_count() const { return p_.components.components(); }
  /// Length of the sequence.
  Eigen::Index positions() const { return p_.state.rows(); }
  /// Positions the components are kept at, ascending; empty when every position is kept.
  const std::vector<Eigen::Index>& kept_positions() const { return p_.kept; }
  bool keeps(Eigen::Index position) const {
    return position >= 0 && position < positions() && (p_.kept.empty() || slot_[static_cast<std::size_t>(position)] >= 0);
  }
  Eigen::Index bias_component() const { return p_.bias_component; }
  /// With GemmPrecision::Bf16, what computed the products (oneDNN's kernel, e.g.
  /// "brg:avx512_core_bf16", or the fallback); empty for native precision.
  const std::string& gemm_kernel() const { return p_.gemm_kernel; }
  /// Index of the "chunk residual" component of a chunked run, else -1.
  Eigen::Index chunk_residual_component() const { return p_.chunk_residual_component; }
  bool chunked() const { return p_.chunks > 1 || p_.forced_chunking; }
  int chunk_count() const { return p_.chunks; }
  const Boundary& end() const { return p_.end; }
  const std::vector<BoundaryCheck>& completeness() const { return p_.checks; }

  /// Largest max|sum - x| / max|x| over every boundary of every chunk pass.
  double max_relative_residual() const {
    double worst = 0;
    for (const BoundaryCheck& c : p_.checks)
      worst = std::max(worst, c.state_max_abs > 0 ? c.residual_max_abs / c.state_max_abs : c.residual_max_abs);
    return worst;
  }

  /// The real logit of target at position.
  Scalar logit(Eigen::Index position, int target) const {
    check_readout(position, target, false);
    return output().cap(pre_cap_logit(position, target));
  }
  /// Real logits (V) at position.
  VectorType logits(Eigen::Index position) const {
    check_readout(position, 0, false);
    return output().logits(p_.state.row(position)).transpose();
  }
  /// Each component's logit for target at position (M values that sum to logit()). With a
  /// final soft cap, each component's pre-cap logit times the real frozen ratio.
  VectorType component_logits(Eigen::Index position, int target) const {
    check_readout(position, target, true);
    const Scalar ratio = output().frozen_ratio(pre_cap_logit(position, target));
    VectorType scores(component_count());
    for (Eigen::Index m = 0; m < component_count(); ++m) scores(m) = ratio * row(m, position).dot(unembedding().row(target));
    return scores;
  }
  /// Every component's logits at position: M x V.
  MatrixType component_logits(Eigen::Index position) const {
    check_readout(position, 0, true);
    MatrixType rows(component_count(), p_.components.width());
    for (Eigen::Index m = 0; m < component_count(); ++m) rows.row(m) = row(m, position);
    MatrixType scores = rows * unembedding().transpose();
    if (output().capped()) scores.array().rowwise() *= frozen_ratios(position).transpose().array();
    return scores;
  }
  /// The k tokens component m pushes up most at position, best first: (token, logit).
  std::vector<std::pair<int, Scalar>> top_tokens(Eigen::Index component, Eigen::Index position, int k) const {
    check_component(component);
    if (k < 0) throw std::invalid_argument("k = " + std::to_string(k) + " must be >= 0");
    check_readout(position, 0, true);
    VectorType logits = unembedding() * row(component, position).transpose();
    if (output().capped()) logits.array() *= frozen_ratios(position).array();
    std::vector<int> order(static_cast<std::size_t>(logits.size()));
    for (std::size_t t = 0; t < order.size(); ++t) order[t] = static_cast<int>(t);
    const std::size_t keep = std::min<std::size_t>(static_cast<std::size_t>(k), order.size());
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(),
                      [&](int a, int b) { return logits(a) > logits(b) || (logits(a) == logits(b) && a < b); });
    std::vector<std::pair<int, Scalar>> top;
    for (std::size_t t = 0; t < keep; ++t) top.emplace_back(order[t], logits(order[t]));
    return top;
  }

 private:
  const RowMatrix<Scalar>& unembedding() const { return model_->weights().unembedding(); }
  Unembedding<Scalar> output() const { return model_->unembedding(); }
  Scalar pre_cap_logit(Eigen::Index position, int target) const { return p_.state.row(position).dot(unembedding().row(target)); }
  /// The final soft cap's frozen ratio of every vocabulary entry at position (V).
  VectorType frozen_ratios(Eigen::Index position) const {
    const Unembedding<Scalar> out = output();
    VectorType z = unembedding() * p_.state.row(position).transpose();
    for (Eigen::Index v = 0; v < z.size(); ++v) z(v) = out.frozen_ratio(z(v));
    return z;
  }

  /// Row of position within each stored component.
  Eigen::Index slot(Eigen::Index position) const {
    if (position < 0 || position >= positions())
      throw std::invalid_argument("position " + std::to_string(position) + " is out of range [0, " +
                                  std::to_string(positions()) + ")");
    if (p_.kept.empty()) return position;
    const Eigen::Index s = slot_[static_cast<std::size_t>(position)];
    if (s < 0) {
      std::string list;
      for (Eigen::Index p : p_.kept) list += (list.empty() ? "" : ", ") + std::to_string(p);
      throw std::invalid_argument("position " + std::to_string(position) + " was not kept: this decomposition keeps positions {" +
                                  list + "} (DecomposeOptions::keep_positions)");
    }
    return s;
  }

  void check_component(Eigen::Index component) const {
    if (component < 0 || component >= component_count())
      throw std::invalid_argument("component " + std::to_string(component) + " is out of range [0, " +
                                  std::to_string(component_count()) + ")");
  }

  void check_readout(Eigen::Index position, int target, bool needs_components) const {
    if (!p_.end.is_output)
      throw std::invalid_argument("logit readouts need a decomposition that ends at the output; this one ends " +
                                  p_.end.to_string());
    if (needs_components) slot(position);
    else if (position < 0 || position >= positions())
      throw std::invalid_argument("position " + std::to_string(position) + " is out of range [0, " +
                                  std::to_string(positions()) + ")");
    if (target < 0 || target >= model_->config().vocab_size)
      throw std::invalid_argument("target token id " + std::to_string(target) + " is out of range [0, " +
                                  std::to_string(model_->config().vocab_size) + ")");
  }

  const Model<Scalar>* model_ = nullptr;
  Parts p_;
  std::vector<Eigen::Index> slot_;  // per position: its row in the stored components, -1 if not kept
};

template <typename Scalar>
class Decomposer {
 public:
  using MatrixType = Matrix<Scalar>;
  using VectorType = Vector<Scalar>;
  using Parts = typename Decomposition<Scalar>::Parts;

  /// The model must outlive the decomposer and every Decomposition it returns.
  explicit Decomposer(const Model<Scalar>& model) : model_(model) {}

  Decomposition<Scalar> run(const std::vector<int>& ids, const Initialisation<Scalar>& init,
                            const DecomposeOptions& options = {}, const Hook<Scalar>& hook = {}) const {
    check_options(options);
    model_.check_tokens(ids);
    const detail::StartBuilder<Scalar> builder(model_);
    MatrixType x = model_.embed(ids, hook);
    const detail::Start<Scalar> start = builder.build(x, ids, init, hook);
    const int end_index = builder.boundary_index(options.end, "end");
    if (options.sink_ratio > 0 && init.kind == InitKind::Token && start.boundary_index % 2 == 1)
      throw std::invalid_argument(
          "sink_ratio: a token-level run that starts before an MLP (" +
          Boundary::from_index(start.boundary_index, model_.config().n_layers).to_string() +
          ") has no attention of that layer to find its sinks in; start before an attention block or set sink_ratio = 0");
    if (end_index < start.boundary_index)
      throw std::invalid_argument("end boundary (" + options.end.to_string() +
                                  ") lies before the start of the decomposition (" +
                                  Boundary::from_index(start.boundary_index, model_.config().n_layers).to_string() + ")");
    Parts parts;
    parts.end = options.end;
    parts.kept = kept_positions(options.keep_positions, x.rows());
    const Eigen::Index K = start.members();
    const Eigen::Index stored = parts.kept.empty() ? x.rows() : static_cast<Eigen::Index>(parts.kept.size());
    const Eigen::Index chunk = plan_chunk(options, K, x.rows(), stored);
    if (options.shards) run_sharded(start, init, options, end_index, hook, parts);
    else if (options.chunk_size == 0 && chunk >= K) run_whole(start, init, options, end_index, hook, parts);
    else run_chunked(start, init, options, chunk, end_index, hook, parts);
    if (options.end.is_output && (!options.shards || options.shards->rank() == 0 || options.shards_share_result))
      record_output(parts);
    return Decomposition<Scalar>(model_, std::move(parts));
  }

  /// Bytes a run over N positions needs, by DecomposeOptions::memory_budget_bytes' account,
  /// when `members` components (plus the remainder and bias components) run in one pass and
  /// the result keeps `total` components at `stored` positions.
  std::size_t working_bytes(Eigen::Index N, Eigen::Index members, Eigen::Index total, Eigen::Index stored,
                            long work_rows = DecomposeOptions{}.work_rows, MlpSplit split = MlpSplit::Softmax) const {
    const Config& c = model_.config();
    const double s = sizeof(Scalar), n = static_cast<double>(N), D = c.dim, I = c.hidden_dim;
    const double Q = c.q_width(), KV = c.kv_width(), H = c.n_heads;
    const double threads = depass::threads();
    const double live = static_cast<double>(members + 2);
    const double rows = static_cast<double>(detail::tile_rows(work_rows, n * live));
    // The real forward and the start (states, projections, probabilities, activations).
    const double forward = n * (12 * D + 3 * Q + 2 * KV + 6 * I) + H * n * n;
    // Per-pass sums of the completeness check and the per-thread partial sums.
    const double sums = (threads + 3) * n * D;
    // Per-thread scratch of the blocked engine: an MLP tile holds about tile_rows packed
    // rows (at least one position of every live component), an attention group about
    // tile_rows (at least one component's live positions); neither more than all live rows.
    const double mlp_rows = std::min(n * live, std::max(rows, live));
    const double attention_rows = std::min(n * live, std::max(rows, n));
    const double scratch =
        threads * std::max(mlp_rows * (D + (SplitRule{split}.needs_up() && c.gated_mlp() ? 2 : 1) * I + 64), attention_rows * (std::max(D, Q) + std::max(KV, D)));
    // A parallel-residual model's MLP reads a copy of the tensor at the layer input.
    const double tensor = (c.parallel_residual ? 2 : 1) * live * n * D;
    const double result = static_cast<double>(total) * static_cast<double>(stored) * D;
    return static_cast<std::size_t>(s * (forward + sums + scratch + tensor + result));
  }

 private:
  static void check_options(const DecomposeOptions& options) {
    if (options.gemm_precision == GemmPrecision::Bf16) {
      detail::require_bf16_scalar<Scalar>();  // before the forward pass, not at the first block
      if (!bf16_available()) throw std::invalid_argument("gemm_precision = bf16: " + bf16_unavailable_reason());
      if (options.straightforward)
        throw std::invalid_argument("gemm_precision = bf16 runs in the blocked engine, not with straightforward");
    }
    if (!(options.temperature > 0.0) || !std::isfinite(options.temperature))
      throw std::invalid_argument("temperature = " + std::to_string(options.temperature) + " must be a finite number > 0");
    if (options.work_rows <= 0)
      throw std::invalid_argument("work_rows = " + std::to_string(options.work_rows) + " must be > 0");
    if (options.chunk_size < 0)
      throw std::invalid_argument("chunk_size = " + std::to_string(options.chunk_size) + " must be >= 0");
    if (!(options.sink_ratio >= 0.0) || !std::isfinite(options.sink_ratio))
      throw std::invalid_argument("sink_ratio = " + std::to_string(options.sink_ratio) + " must be a finite number >= 0");
    if (options.shards && options.sink_ratio > 0)
      throw std::invalid_argument("shards: a sharded run takes no sink_ratio (a sink's shares would move to the bias "
                                  "component of another process)");
    if (options.shards && (options.chunk_size > 0 || options.memory_budget_bytes > 0 || options.straightforward))
      throw std::invalid_argument(
          "shards: a sharded run takes neither chunk_size, memory_budget_bytes nor straightforward "
          "(its processes hold shares of the components instead, with the blocked engine)");
  }

  /// The positions to keep, checked, sorted, duplicates merged (empty: all).
  static std::vector<Eigen::Index> kept_positions(const std::vector<long>& wanted, Eigen::Index N) {
    std::vector<char> keep(static_cast<std::size_t>(N), 0);
    for (long p : wanted) {
      if (p < -N || p >= N)
        throw std::invalid_argument("keep_positions: position " + std::to_string(p) + " is out of range [" +
                                    std::to_string(-N) + ", " + std::to_string(N) + ")");
      keep[static_cast<std::size_t>(p < 0 ? p + N : p)] = 1;
    }
    std::vector<Eigen::Index> kept;
    for (Eigen::Index p = 0; p < N; ++p)
      if (keep[static_cast<std::size_t>(p)]) kept.push_back(p);
    return kept;
  }

  /// Components per pass: options.chunk_size, else as many as the memory budget allows.
  Eigen::Index plan_chunk(const DecomposeOptions& o, Eigen::Index K, Eigen::Index N, Eigen::Index stored) const {
    if (o.chunk_size > 0) return std::min<Eigen::Index>(K, o.chunk_size);
    const std::size_t budget = o.memory_budget_bytes;
    if (budget == 0 || working_bytes(N, K - 1, K + 1, stored, o.work_rows, o.split) <= budget) return K;
    // Largest chunk that fits; the result then holds K + 2 components (chunk residual, bias).
    Eigen::Index lo = 0, hi = K - 1;
    while (lo < hi) {
      const Eigen::Index mid = (lo + hi + 1) / 2;
      if (working_bytes(N, mid, K + 2, stored, o.work_rows, o.split) <= budget) lo = mid;
      else hi = mid - 1;
    }
    if (lo == 0)
      throw std::invalid_argument("memory_budget_bytes = " + std::to_string(budget) +
                                  " is too small for this run: one component per chunk needs " +
                                  std::to_string(working_bytes(N, 1, K + 2, stored, o.work_rows, o.split)) + " bytes" +
                                  (stored == N ? std::string(" (the result keeps every position; set keep_positions)")
                                               : std::string()));
    return lo;
  }

  /// The pass's rule and engine; its sinks: the token members, when the components are
  /// tokens, are the members [0, count) from position first_member, up to the N-th.
  static void configure(ComponentState<Scalar>& cs, const DecomposeOptions& options, const Initialisation<Scalar>& init,
                        Eigen::Index first_member, Eigen::Index count, Eigen::Index N) {
    cs.split = options.split_rule();
    cs.engine = options.engine_options();
    cs.sink_policy = SinkPolicy{};
    if (init.kind == InitKind::Token) {
      cs.sink_policy.bos = options.bos_sink;
      cs.sink_policy.ratio = options.sink_ratio;
      cs.sink_policy.first_token = first_member;
      cs.sink_policy.tokens = std::max<Eigen::Index>(0, std::min(count, N - first_member));
    }
    cs.sinks = cs.sink_policy.fixed();
  }

  /// One pass from the start boundary to the end; returns the real end state. `input`: the
  /// layer input a parallel-residual model's MLP reads, when the start lies inside a layer
  /// (the start's layer_input, laid out as cs.tensor).
  MatrixType propagate(ComponentState<Scalar>& cs, const detail::Start<Scalar>& start, const DecomposeOptions& options,
                       int end_index, const Hook<Scalar>& hook, std::vector<BoundaryCheck>& checks,
                       LayerInput<Scalar> input = {}) const {
    const int L = model_.config().n_layers;
    const Boundary from = Boundary::from_index(start.boundary_index, L);
    MatrixType state = start.state;
    record_sum(checks, every_shard(cs, cs.tensor.sum(cs.first_position)), state, from);
    detail::Tap<Scalar>{&hook, from.layer}.residual("start", state, &cs.tensor, start.boundary_index);
    for (int b = start.boundary_index; b < end_index; ++b) {
      model_.run_block(b, state, &cs, hook, input);
      const RowMatrix<Scalar>* sum = cs.component_sum();
      if (sum && !cs.shards) record_sum(checks, *sum, state, Boundary::from_index(b + 1, L));
      else if (sum) record_sum(checks, every_shard(cs, MatrixType(*sum)), state, Boundary::from_index(b + 1, L));
      else record_sum(checks, every_shard(cs, cs.tensor.sum()), state, Boundary::from_index(b + 1, L));
    }
    if (options.end.is_output) {
      VectorType scale;
      state = model_.final_norm(state, &scale);
      model_.final_norm_components(cs, scale);
    }
    return state;
  }

  /// The start's members at the layer input (a parallel-residual model started inside a
  /// layer), laid out by `build` as the start's own; else empty.
  template <typename Build>
  static LayerInput<Scalar> start_input(const detail::Start<Scalar>& start, const Build& build) {
    LayerInput<Scalar> input;
    if (!start.layer_input) return input;
    input.state = start.layer_input->state;
    build(*start.layer_input, input.components);
    return input;
  }

  /// sum_m C[m] over every process's components (a sharded run), else the local sum.
  static MatrixType every_shard(const ComponentState<Scalar>& cs, MatrixType sum) {
    if (cs.shards) cs.shards->all_sum(sum.data(), static_cast<std::size_t>(sum.size()));
    return sum;
  }

  /// This process's share of the components (shard_members) in one pass; rank 0 gathers
  /// every share into the result, the other ranks keep none.
  void run_sharded(const detail::Start<Scalar>& start, const Initialisation<Scalar>& init, const DecomposeOptions& options,
                   int end_index, const Hook<Scalar>& hook, Parts& parts) const {
    ShardGroup& group = *options.shards;
    const Eigen::Index K = start.members(), N = start.state.rows(), D = start.state.cols();
    const std::vector<std::vector<Eigen::Index>> shares = shard_members(K, group.size());
    const std::vector<Eigen::Index>& mine = shares[static_cast<std::size_t>(group.rank())];
    const Eigen::Index count = static_cast<Eigen::Index>(mine.size());
    const bool root = group.rank() == 0;
    ComponentState<Scalar> cs;
    // BOS is a sink only where it is member 0 (sink_ratio is refused with shards).
    configure(cs, options, init, 0, count > 0 && mine.front() == 0 ? 1 : 0, N);
    cs.shards = &group;
    const auto build = [&](const detail::Start<Scalar>& s, ComponentTensor<Scalar>& C) {
      C.resize(count + (root ? 1 : 0), N, D);
      for (Eigen::Index i = 0; i < count; ++i) s.fill(mine[static_cast<std::size_t>(i)], C.component(i));
      if (root) C.component(count) = s.bias;
    };
    build(start, cs.tensor);
    for (Eigen::Index i = 0; i < count; ++i) {
      const Eigen::Index m = mine[static_cast<std::size_t>(i)];
      cs.global_index.push_back(m);
      cs.first_position.push_back(start.first[static_cast<std::size_t>(m)]);
    }
    if (root) {
      cs.bias_component = count;
      cs.global_index.push_back(K);
      cs.first_position.push_back(0);
    }
    parts.state = propagate(cs, start, options, end_index, hook, parts.checks, start_input(start, build));
    parts.gemm_kernel = cs.workspace.bf16 ? cs.workspace.bf16->kernel() : std::string();
    gather_shards(group, cs, shares, start, options.shards_share_result, parts);
  }

  /// Rank 0 (or, shards_share_result, every rank) receives every process's members (rows
  /// at the stored positions), puts them in component order, and rank 0's bias after them.
  static void gather_shards(ShardGroup& group, const ComponentState<Scalar>& cs,
                            const std::vector<std::vector<Eigen::Index>>& shares, const detail::Start<Scalar>& start,
                            bool everyone, Parts& parts) {
    const Eigen::Index K = start.members(), D = cs.tensor.width();
    const Eigen::Index count = static_cast<Eigen::Index>(shares[static_cast<std::size_t>(group.rank())].size());
    const Eigen::Index P = parts.kept.empty() ? cs.tensor.positions() : static_cast<Eigen::Index>(parts.kept.size());
    const bool root = group.rank() == 0;
    Parts mine;
    mine.kept = parts.kept;
    mine.components.resize(count + (root ? 1 : 0), P, D);
    for (Eigen::Index m = 0; m < mine.components.components(); ++m) store_rows(cs.tensor, m, mine, m);
    const RowMatrix<Scalar>& rows = mine.components.stacked();
    const std::vector<Scalar> members = group.gather(rows.data(), static_cast<std::size_t>(count * P * D), everyone);
    const std::vector<Scalar> bias =
        group.gather(rows.data() + count * P * D, static_cast<std::size_t>(root ? P * D : 0), everyone);
    if (!root && !everyone) {
      parts.components.resize(0, P, D);
      return;
    }
    if (static_cast<Eigen::Index>(members.size()) != K * P * D || static_cast<Eigen::Index>(bias.size()) != P * D)
      throw std::logic_error("run_sharded: gathered " + std::to_string(members.size()) + " + " + std::to_string(bias.size()) +
                             " values, expected " + std::to_string(K * P * D) + " + " + std::to_string(P * D));
    parts.components.resize(K + 1, P, D);
    const Eigen::Map<const RowMatrix<Scalar>> received(members.data(), K * P, D);  // rank by rank
    Eigen::Index at = 0;
    for (const std::vector<Eigen::Index>& share : shares)
      for (const Eigen::Index m : share) parts.components.stacked().middleRows(m * P, P) = received.middleRows(P * at++, P);
    parts.components.stacked().bottomRows(P) = Eigen::Map<const RowMatrix<Scalar>>(bias.data(), P, D);
    parts.labels = start.labels;
    parts.labels.push_back("bias");
    parts.bias_component = K;
  }

  /// Every component in one pass, propagated in place.
  void run_whole(const detail::Start<Scalar>& start, const Initialisation<Scalar>& init, const DecomposeOptions& options,
                 int end_index, const Hook<Scalar>& hook, Parts& parts) const {
    const Eigen::Index K = start.members();
    ComponentState<Scalar> cs;
    configure(cs, options, init, 0, K, start.state.rows());
    const auto build = [K](const detail::Start<Scalar>& s, ComponentTensor<Scalar>& C) {
      C.resize(K + 1, s.state.rows(), s.state.cols());
      for (Eigen::Index m = 0; m < K; ++m) s.fill(m, C.component(m));
      C.component(K) = s.bias;
    };
    build(start, cs.tensor);
    cs.bias_component = K;
    cs.first_position = start.first;
    cs.first_position.push_back(0);
    parts.labels = start.labels;
    parts.labels.push_back("bias");
    parts.bias_component = K;
    parts.state = propagate(cs, start, options, end_index, hook, parts.checks, start_input(start, build));
    parts.gemm_kernel = cs.workspace.bf16 ? cs.workspace.bf16->kernel() : std::string();
    if (parts.kept.empty()) {
      parts.components = std::move(cs.tensor);
      return;
    }
    parts.components.resize(K + 1, static_cast<Eigen::Index>(parts.kept.size()), start.state.cols());
    for (Eigen::Index m = 0; m <= K; ++m) store_rows(cs.tensor, m, parts, m);
  }

  /// Components in chunks of `chunk`, each pass with a remainder component (the state minus
  /// the chunk's members and the bias) so that every pass is lossless. Chunks interact
  /// through the MLP split, so the members of different chunks need not sum to the state:
  /// the difference is reported as the "chunk residual" component.
  void run_chunked(const detail::Start<Scalar>& start, const Initialisation<Scalar>& init,
                   const DecomposeOptions& options, Eigen::Index chunk, int end_index, const Hook<Scalar>& hook,
                   Parts& parts) const {
    const Eigen::Index K = start.members(), N = start.state.rows(), D = start.state.cols();
    parts.labels = start.labels;
    parts.labels.push_back("chunk residual");
    parts.labels.push_back("bias");
    parts.chunk_residual_component = K;
    parts.bias_component = K + 1;
    parts.forced_chunking = options.chunk_size > 0;
    parts.chunks = 0;
    parts.components.resize(K + 2, parts.kept.empty() ? N : static_cast<Eigen::Index>(parts.kept.size()), D);
    ComponentState<Scalar> cs;  // reused by every chunk: the engine's buffers stay allocated
    for (Eigen::Index first = 0; first < K; first += chunk) {
      const Eigen::Index count = std::min<Eigen::Index>(chunk, K - first);
      configure(cs, options, init, first, count, N);
      cs.first_position.assign(start.first.begin() + first, start.first.begin() + first + count);
      cs.first_position.insert(cs.first_position.end(), {0, 0});
      const auto build = [first, count, N, D](const detail::Start<Scalar>& s, ComponentTensor<Scalar>& C) {
        C.resize(count + 2, N, D);
        MatrixType rest = s.state - s.bias;
        for (Eigen::Index m = 0; m < count; ++m) {
          s.fill(first + m, C.component(m));
          rest -= C.component(m);
        }
        C.component(count) = rest;
        C.component(count + 1) = s.bias;
      };
      build(start, cs.tensor);
      cs.bias_component = count + 1;
      const MatrixType state = propagate(cs, start, options, end_index, hook, parts.checks, start_input(start, build));
      parts.gemm_kernel = cs.workspace.bf16 ? cs.workspace.bf16->kernel() : std::string();
      for (Eigen::Index m = 0; m < count; ++m) store_rows(cs.tensor, m, parts, first + m);
      if (parts.chunks == 0) {
        store_rows(cs.tensor, count + 1, parts, parts.bias_component);
        parts.state = state;
      }
      ++parts.chunks;
    }
    RowMatrix<Scalar> rest = stored_state(parts);
    const Eigen::Index P = parts.components.positions();
    for (Eigen::Index m = 0; m < K + 2; ++m)
      if (m != parts.chunk_residual_component) rest -= parts.components.stacked().middleRows(m * P, P);
    parts.components.component(parts.chunk_residual_component) = rest;
  }

  /// Copies the stored positions' rows of component `from` of C to component `to` of the result.
  static void store_rows(const ComponentTensor<Scalar>& C, Eigen::Index from, Parts& parts, Eigen::Index to) {
    const Eigen::Index N = C.positions();
    if (parts.kept.empty()) {
      parts.components.component(to) = C.component(from);
      return;
    }
    const Eigen::Index P = static_cast<Eigen::Index>(parts.kept.size());
    for (Eigen::Index i = 0; i < P; ++i)
      parts.components.stacked().row(to * P + i) = C.stacked().row(from * N + parts.kept[static_cast<std::size_t>(i)]);
  }

  /// The real end state at the stored positions.
  static MatrixType stored_state(const Parts& parts) {
    if (parts.kept.empty()) return parts.state;
    MatrixType rows(static_cast<Eigen::Index>(parts.kept.size()), parts.state.cols());
    for (std::size_t i = 0; i < parts.kept.size(); ++i) rows.row(static_cast<Eigen::Index>(i)) = parts.state.row(parts.kept[i]);
    return rows;
  }

  /// The output boundary itself: the normed components against the normed state.
  static void record_output(Parts& parts) {
    record_sum(parts.checks, parts.components.sum(), stored_state(parts), Boundary::output(), true);
  }

  template <typename Sum>
  static void record_sum(std::vector<BoundaryCheck>& checks, const Sum& sum, const MatrixType& state,
                         const Boundary& boundary, bool final_normed = false) {
    BoundaryCheck check;
    check.boundary = boundary;
    check.final_normed = final_normed;
    check.residual_max_abs = state.size() ? static_cast<double>((sum - state).cwiseAbs().maxCoeff()) : 0.0;
    check.state_max_abs = state.size() ? static_cast<double>(state.cwiseAbs().maxCoeff()) : 0.0;
    checks.push_back(check);
  }

  const Model<Scalar>& model_;
};

}  // namespace depass
