#pragma once
// DePass: runs the forward pass with a component tensor riding along (method note,
// sections 1-6) and returns the components at the end boundary, with readouts.

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ComponentTensor.hpp"
#include "Model.hpp"

namespace depass {

/// Which block of a layer a boundary sits in front of.
enum class Site { Attention, Mlp };

/// A point of the residual stream: before the attention or the MLP of a layer, or the
/// output (after the last layer, where the final norm and the unembedding follow).
struct Boundary {
  int layer = 0;
  Site site = Site::Attention;
  bool is_output = false;

  static Boundary before_attention(int layer) { return Boundary{layer, Site::Attention, false}; }
  static Boundary before_mlp(int layer) { return Boundary{layer, Site::Mlp, false}; }
  static Boundary output() { return Boundary{-1, Site::Attention, true}; }

  /// Number of blocks in front of this boundary: 2*layer (+1 before an MLP); 2L at the output.
  int index(int n_layers) const {
    return is_output ? 2 * n_layers : 2 * layer + (site == Site::Mlp ? 1 : 0);
  }
  static Boundary from_index(int index, int n_layers) {
    if (index >= 2 * n_layers) return output();
    return Boundary{index / 2, index % 2 ? Site::Mlp : Site::Attention, false};
  }
  std::string to_string() const {
    if (is_output) return "output";
    return std::string(site == Site::Mlp ? "before mlp " : "before attention ") +
           std::to_string(layer);
  }
};

enum class InitKind { Token, Module, Head, Neuron, Subspace, Custom };

/// What the components are (method note, section 6).
template <typename Scalar>
struct Initialisation {
  InitKind kind = InitKind::Token;
  Boundary start = Boundary::before_attention(0);  // token/subspace/custom: where components start
  int layer = 0;                                   // module/head/neuron: the layer
  Site module = Site::Attention;                   // module: which block's output is split off
  std::vector<int> neurons;                        // neuron: selected neurons (empty = all)
  std::vector<Matrix<Scalar>> bases;               // subspace: D x k bases (or D x D projections)
  bool bases_are_projections = false;
  ComponentTensor<Scalar> custom;                  // custom: M x N x D, must sum to the state
  std::vector<std::string> custom_labels;

  /// One component per input position: the state's row m at position m.
  static Initialisation tokens(Boundary start = Boundary::before_attention(0)) {
    Initialisation init;
    init.kind = InitKind::Token;
    init.start = start;
    return init;
  }
  /// {state before the block, the block's output} for the attention or MLP of layer.
  static Initialisation module_output(int layer, Site module) {
    Initialisation init;
    init.kind = InitKind::Module;
    init.layer = layer;
    init.module = module;
    return init;
  }
  /// {residual input, head 0, ..., head H-1} after the attention of layer (+ bias).
  static Initialisation heads(int layer) {
    Initialisation init;
    init.kind = InitKind::Head;
    init.layer = layer;
    init.module = Site::Attention;
    return init;
  }
  /// {state before the MLP, each selected neuron's output, the other neurons} after the
  /// MLP of layer (+ bias).
  static Initialisation neuron_outputs(int layer, std::vector<int> selected = {}) {
    Initialisation init;
    init.kind = InitKind::Neuron;
    init.layer = layer;
    init.module = Site::Mlp;
    init.neurons = std::move(selected);
    return init;
  }
  /// Component s = x P_s for the orthogonal projection P_s onto span(bases[s]) (D x k_s),
  /// plus the remainder x - sum_s x P_s. With projections = true each entry is a D x D
  /// projection matrix used as given.
  static Initialisation subspaces(Boundary at, std::vector<Matrix<Scalar>> bases,
                                  bool projections = false) {
    Initialisation init;
    init.kind = InitKind::Subspace;
    init.start = at;
    init.bases = std::move(bases);
    init.bases_are_projections = projections;
    return init;
  }
  /// Any user split of the state at `at`; verified to sum to the state before propagating.
  static Initialisation custom_components(Boundary at, ComponentTensor<Scalar> components,
                                          std::vector<std::string> labels = {}) {
    Initialisation init;
    init.kind = InitKind::Custom;
    init.start = at;
    init.custom = std::move(components);
    init.custom_labels = std::move(labels);
    return init;
  }
};

struct DecomposeOptions {
  MlpSplit split = MlpSplit::Softmax;
  double temperature = 0.1;            // softmax split temperature, > 0
  bool bos_sink = true;                // token level: position 0 gets MLP output only at itself
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
  bool straightforward = false;        // dense reference propagation (tests compare against it)
  long work_rows = 4096;               // packed rows per work item of the fast engine, > 0:
                                       // per-thread scratch ~ work_rows x (D + I) scalars
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

  /// Components at the end boundary; at the output they are final-normed (frozen scale),
  /// so that component_logits is a plain product with the unembedding. They cover every
  /// position, or only kept_positions() (in that order) when DecomposeOptions::keep_positions
  /// was set; row() finds a position either way.
  const ComponentTensor<Scalar>& components() const { return components_; }
  /// Component m at position (D values).
  ConstRow row(Eigen::Index component, Eigen::Index position) const {
    check_component(component);
    return components_.stacked().row(component * components_.positions() + slot(position));
  }
  /// The real state at the end boundary (final-normed at the output), every position.
  const MatrixType& state() const { return state_; }
  const std::vector<std::string>& labels() const { return labels_; }
  Eigen::Index component_count() const { return components_.components(); }
  /// Length of the sequence.
  Eigen::Index positions() const { return state_.rows(); }
  /// Positions the components are kept at, ascending; empty when every position is kept.
  const std::vector<Eigen::Index>& kept_positions() const { return kept_; }
  bool keeps(Eigen::Index position) const {
    return position >= 0 && position < positions() && (kept_.empty() || slot_[static_cast<std::size_t>(position)] >= 0);
  }
  Eigen::Index bias_component() const { return bias_component_; }
  /// Index of the "chunk residual" component of a chunked run, else -1.
  Eigen::Index chunk_residual_component() const { return chunk_residual_component_; }
  bool chunked() const { return chunks_ > 1 || forced_chunking_; }
  int chunk_count() const { return chunks_; }
  const Boundary& end() const { return end_; }
  const std::vector<BoundaryCheck>& completeness() const { return checks_; }

  /// Largest max|sum - x| / max|x| over every boundary of every chunk pass.
  double max_relative_residual() const {
    double worst = 0;
    for (const BoundaryCheck& c : checks_)
      worst = std::max(worst, c.state_max_abs > 0 ? c.residual_max_abs / c.state_max_abs
                                                  : c.residual_max_abs);
    return worst;
  }

  /// The real logit of target at position.
  Scalar logit(Eigen::Index position, int target) const {
    check_readout(position, target, false);
    return state_.row(position).dot(model_->weights().unembedding().row(target));
  }
  /// Real logits (V) at position.
  VectorType logits(Eigen::Index position) const {
    check_readout(position, 0, false);
    return model_->weights().unembedding() * state_.row(position).transpose();
  }
  /// Each component's logit for target at position (M values that sum to logit()).
  VectorType component_logits(Eigen::Index position, int target) const {
    check_readout(position, target, true);
    const Eigen::Index M = components_.components();
    VectorType scores(M);
    const auto& unembedding = model_->weights().unembedding().row(target);
    for (Eigen::Index m = 0; m < M; ++m) scores(m) = row(m, position).dot(unembedding);
    return scores;
  }
  /// Every component's logits at position: M x V.
  MatrixType component_logits(Eigen::Index position) const {
    check_readout(position, 0, true);
    const Eigen::Index M = components_.components();
    MatrixType rows(M, components_.width());
    for (Eigen::Index m = 0; m < M; ++m) rows.row(m) = row(m, position);
    return rows * model_->weights().unembedding().transpose();
  }
  /// The k tokens component m pushes up most at position, best first: (token, logit).
  std::vector<std::pair<int, Scalar>> top_tokens(Eigen::Index component, Eigen::Index position,
                                                 int k) const {
    check_component(component);
    if (k < 0) throw std::invalid_argument("k = " + std::to_string(k) + " must be >= 0");
    check_readout(position, 0, true);
    const VectorType logits = model_->weights().unembedding() * row(component, position).transpose();
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
  template <typename>
  friend class Decomposer;

  /// Row of position within each stored component.
  Eigen::Index slot(Eigen::Index position) const {
    if (position < 0 || position >= positions())
      throw std::invalid_argument("position " + std::to_string(position) + " is out of range [0, " +
                                  std::to_string(positions()) + ")");
    if (kept_.empty()) return position;
    const Eigen::Index s = slot_[static_cast<std::size_t>(position)];
    if (s < 0) {
      std::string list;
      for (Eigen::Index p : kept_) list += (list.empty() ? "" : ", ") + std::to_string(p);
      throw std::invalid_argument("position " + std::to_string(position) +
                                  " was not kept: this decomposition keeps positions {" + list +
                                  "} (DecomposeOptions::keep_positions)");
    }
    return s;
  }

  void check_component(Eigen::Index component) const {
    if (component < 0 || component >= components_.components())
      throw std::invalid_argument("component " + std::to_string(component) + " is out of range [0, " +
                                  std::to_string(components_.components()) + ")");
  }

  void check_readout(Eigen::Index position, int target, bool needs_components) const {
    if (!end_.is_output)
      throw std::invalid_argument("logit readouts need a decomposition that ends at the output; "
                                  "this one ends " + end_.to_string());
    if (needs_components) slot(position);
    else if (position < 0 || position >= positions())
      throw std::invalid_argument("position " + std::to_string(position) + " is out of range [0, " +
                                  std::to_string(positions()) + ")");
    if (target < 0 || target >= model_->config().vocab_size)
      throw std::invalid_argument("target token id " + std::to_string(target) +
                                  " is out of range [0, " +
                                  std::to_string(model_->config().vocab_size) + ")");
  }

  const Model<Scalar>* model_ = nullptr;
  ComponentTensor<Scalar> components_;
  MatrixType state_;
  std::vector<std::string> labels_;
  std::vector<Eigen::Index> kept_;  // ascending; empty: all positions
  std::vector<Eigen::Index> slot_;  // per position: its row in components_, -1 if not kept
  Eigen::Index bias_component_ = -1;
  Eigen::Index chunk_residual_component_ = -1;
  int chunks_ = 1;
  bool forced_chunking_ = false;
  Boundary end_ = Boundary::output();
  std::vector<BoundaryCheck> checks_;
};

template <typename Scalar>
class Decomposer {
 public:
  using MatrixType = Matrix<Scalar>;
  using VectorType = Vector<Scalar>;

  /// The model must outlive the decomposer and every Decomposition it returns.
  explicit Decomposer(const Model<Scalar>& model) : model_(model) {}

  Decomposition<Scalar> run(const std::vector<int>& ids, const Initialisation<Scalar>& init,
                            const DecomposeOptions& options = {},
                            const Hook<Scalar>& hook = {}) const {
    check_options(options);
    model_.check_tokens(ids);
    // 1. Plain forward up to where the components are defined.
    MatrixType x = model_.embed(ids, hook);
    const Start start = prepare_start(x, ids, init, hook);
    const int end_index = check_boundary(options.end, "end");
    if (end_index < start.boundary_index)
      throw std::invalid_argument("end boundary (" + options.end.to_string() +
                                  ") lies before the start of the decomposition (" +
                                  Boundary::from_index(start.boundary_index, model_.config().n_layers).to_string() +
                                  ")");
    Decomposition<Scalar> result;
    result.model_ = &model_;
    result.end_ = options.end;
    keep_positions(result, options.keep_positions, x.rows());
    // 2. Every component in one pass, or in chunks (each with a remainder component).
    const Eigen::Index K = start.members();
    const Eigen::Index stored = result.kept_.empty() ? x.rows() : static_cast<Eigen::Index>(result.kept_.size());
    const Eigen::Index chunk = plan_chunk(options, K, x.rows(), stored);
    if (options.chunk_size == 0 && chunk >= K) run_whole(start, init, options, end_index, hook, result);
    else run_chunked(start, init, options, chunk, stored, end_index, hook, result);
    return result;
  }

  /// Bytes a run over N positions needs, by DecomposeOptions::memory_budget_bytes' account,
  /// when `members` components (plus the remainder and bias components) run in one pass and
  /// the result keeps `total` components at `stored` positions.
  std::size_t working_bytes(Eigen::Index N, Eigen::Index members, Eigen::Index total, Eigen::Index stored,
                            long work_rows = DecomposeOptions{}.work_rows) const {
    const Config& c = model_.config();
    const double s = sizeof(Scalar), n = static_cast<double>(N), D = c.dim, I = c.hidden_dim;
    const double Q = c.q_width(), KV = c.kv_width(), H = c.n_heads;
    const double threads = depass::threads();
    const double live = static_cast<double>(members + 2), rows = static_cast<double>(work_rows);
    // The real forward and the start (states, projections, probabilities, activations).
    const double forward = n * (12 * D + 3 * Q + 2 * KV + 6 * I) + H * n * n;
    // Per-pass sums of the completeness check and the per-thread partial sums.
    const double sums = (threads + 3) * n * D;
    // Per-thread scratch of the blocked engine: an MLP tile holds about work_rows packed
    // rows (at least one position of every live component), an attention group about
    // work_rows (at least one component's live positions); neither more than all live rows.
    const double mlp_rows = std::min(n * live, std::max(rows, live));
    const double attention_rows = std::min(n * live, std::max(rows, n));
    const double scratch = threads * std::max(mlp_rows * (D + I + 64),
                                              attention_rows * (std::max(D, Q) + std::max(KV, D)));
    const double tensor = live * n * D;
    const double result = static_cast<double>(total) * static_cast<double>(stored) * D;
    return static_cast<std::size_t>(s * (forward + sums + scratch + tensor + result));
  }

 private:
  /// The components at the start boundary, built one at a time (a chunked run never holds
  /// them all at once).
  struct Start {
    int boundary_index = 0;            // blocks already run
    MatrixType state;                  // N x D at that boundary
    MatrixType bias;                   // N x D: the bias component's start value
    std::vector<std::string> labels;   // one per member
    std::vector<Eigen::Index> first;   // per member: first position it can be non-zero at
    /// Writes member m (N x D) into a block that is zero on entry.
    std::function<void(Eigen::Index, Eigen::Ref<RowMatrix<Scalar>>)> fill;
    Eigen::Index members() const { return static_cast<Eigen::Index>(labels.size()); }
  };

  static void check_options(const DecomposeOptions& options) {
    if (!(options.temperature > 0.0) || !std::isfinite(options.temperature))
      throw std::invalid_argument("temperature = " + std::to_string(options.temperature) +
                                  " must be a finite number > 0");
    if (options.work_rows <= 0)
      throw std::invalid_argument("work_rows = " + std::to_string(options.work_rows) + " must be > 0");
    if (options.chunk_size < 0)
      throw std::invalid_argument("chunk_size = " + std::to_string(options.chunk_size) +
                                  " must be >= 0");
  }

  /// Records which positions the result keeps (sorted, duplicates merged).
  static void keep_positions(Decomposition<Scalar>& result, const std::vector<long>& wanted, Eigen::Index N) {
    if (wanted.empty()) return;
    result.slot_.assign(static_cast<std::size_t>(N), -1);
    for (long p : wanted) {
      if (p < -N || p >= N)
        throw std::invalid_argument("keep_positions: position " + std::to_string(p) + " is out of range [" +
                                    std::to_string(-N) + ", " + std::to_string(N) + ")");
      result.slot_[static_cast<std::size_t>(p < 0 ? p + N : p)] = 0;
    }
    for (Eigen::Index p = 0; p < N; ++p)
      if (result.slot_[static_cast<std::size_t>(p)] == 0) {
        result.slot_[static_cast<std::size_t>(p)] = static_cast<Eigen::Index>(result.kept_.size());
        result.kept_.push_back(p);
      }
  }

  /// Components per pass: options.chunk_size, else as many as the memory budget allows.
  Eigen::Index plan_chunk(const DecomposeOptions& o, Eigen::Index K, Eigen::Index N, Eigen::Index stored) const {
    if (o.chunk_size > 0) return std::min<Eigen::Index>(K, o.chunk_size);
    const std::size_t budget = o.memory_budget_bytes;
    if (budget == 0 || working_bytes(N, K - 1, K + 1, stored, o.work_rows) <= budget) return K;
    // Largest chunk that fits; the result then holds K + 2 components (chunk residual, bias).
    Eigen::Index lo = 0, hi = K - 1;
    while (lo < hi) {
      const Eigen::Index mid = (lo + hi + 1) / 2;
      if (working_bytes(N, mid, K + 2, stored, o.work_rows) <= budget) lo = mid;
      else hi = mid - 1;
    }
    if (lo == 0) {
      const std::size_t need = working_bytes(N, 1, K + 2, stored, o.work_rows);
      throw std::invalid_argument(
          "memory_budget_bytes = " + std::to_string(budget) + " is too small for this run: one component per chunk needs " +
          std::to_string(need) + " bytes" +
          (stored == N ? std::string(" (the result keeps every position; set keep_positions)") : std::string()));
    }
    return lo;
  }

  void configure(ComponentState<Scalar>& cs, const DecomposeOptions& options, const Initialisation<Scalar>& init,
                 Eigen::Index first_member) const {
    cs.split = options.split;
    cs.temperature = static_cast<Scalar>(options.temperature);
    cs.straightforward = options.straightforward;
    cs.track_sum = true;
    cs.work_rows = static_cast<Eigen::Index>(options.work_rows);
    cs.sink_component = init.kind == InitKind::Token && options.bos_sink && first_member == 0 ? 0 : -1;
  }

  /// One pass from the start boundary to the end; returns the real end state.
  MatrixType propagate(ComponentState<Scalar>& cs, const Start& start, const DecomposeOptions& options,
                       int end_index, const Hook<Scalar>& hook, std::vector<BoundaryCheck>& checks) const {
    const int L = model_.config().n_layers;
    const Boundary from = Boundary::from_index(start.boundary_index, L);
    MatrixType state = start.state;
    record_sum(checks, cs.tensor.sum(cs.first_position), state, from);
    if (hook) hook(HookEvent<Scalar>{"start", from.layer, state, &cs.tensor, start.boundary_index});
    for (int b = start.boundary_index; b < end_index; ++b) {
      if (b % 2 == 0) model_.attention_block(b / 2, state, &cs, hook);
      else model_.mlp_block(b / 2, state, &cs, hook);
      record(checks, cs, state, Boundary::from_index(b + 1, L));
    }
    if (options.end.is_output) {
      VectorType scale;
      state = model_.final_norm(state, &scale);
      model_.final_norm_components(cs, scale);
    }
    return state;
  }

  /// Every component in one pass, propagated in place.
  void run_whole(const Start& start, const Initialisation<Scalar>& init, const DecomposeOptions& options,
                 int end_index, const Hook<Scalar>& hook, Decomposition<Scalar>& result) const {
    const Eigen::Index K = start.members();
    ComponentState<Scalar> cs;
    configure(cs, options, init, 0);
    cs.tensor.resize(K + 1, start.state.rows(), start.state.cols());
    for (Eigen::Index m = 0; m < K; ++m) start.fill(m, cs.tensor.component(m));
    cs.tensor.component(K) = start.bias;
    cs.bias_component = K;
    cs.first_position = start.first;
    cs.first_position.push_back(0);
    result.labels_ = start.labels;
    result.labels_.push_back("bias");
    result.bias_component_ = K;
    result.state_ = propagate(cs, start, options, end_index, hook, result.checks_);
    if (result.kept_.empty()) {
      result.components_ = std::move(cs.tensor);
    } else {
      result.components_.resize(K + 1, static_cast<Eigen::Index>(result.kept_.size()), start.state.cols());
      for (Eigen::Index m = 0; m <= K; ++m) store_rows(cs.tensor, m, result, m);
    }
    result.chunks_ = 1;
    if (options.end.is_output) record_output(result);
  }

  /// Components in chunks of `chunk`, each pass with a remainder component (the state minus
  /// the chunk's members and the bias) so that every pass is lossless. Chunks interact
  /// through the MLP split, so the members of different chunks need not sum to the state:
  /// the difference is reported as the "chunk residual" component.
  void run_chunked(const Start& start, const Initialisation<Scalar>& init, const DecomposeOptions& options,
                   Eigen::Index chunk, Eigen::Index stored, int end_index, const Hook<Scalar>& hook,
                   Decomposition<Scalar>& result) const {
    const Eigen::Index K = start.members(), N = start.state.rows(), D = start.state.cols();
    result.labels_ = start.labels;
    result.labels_.push_back("chunk residual");
    result.labels_.push_back("bias");
    result.chunk_residual_component_ = K;
    result.bias_component_ = K + 1;
    result.forced_chunking_ = options.chunk_size > 0;
    result.chunks_ = 0;
    result.components_.resize(K + 2, stored, D);
    ComponentState<Scalar> cs;  // reused by every chunk: its scratch stays allocated
    for (Eigen::Index first = 0; first < K; first += chunk) {
      const Eigen::Index count = std::min<Eigen::Index>(chunk, K - first);
      configure(cs, options, init, first);
      cs.tensor.resize(count + 2, N, D);
      cs.first_position.assign(start.first.begin() + first, start.first.begin() + first + count);
      cs.first_position.insert(cs.first_position.end(), {0, 0});
      MatrixType rest = start.state - start.bias;
      for (Eigen::Index m = 0; m < count; ++m) {
        start.fill(first + m, cs.tensor.component(m));
        rest -= cs.tensor.component(m);
      }
      cs.tensor.component(count) = rest;
      cs.tensor.component(count + 1) = start.bias;
      cs.bias_component = count + 1;
      const MatrixType state = propagate(cs, start, options, end_index, hook, result.checks_);
      for (Eigen::Index m = 0; m < count; ++m) store_rows(cs.tensor, m, result, first + m);
      if (result.chunks_ == 0) {
        store_rows(cs.tensor, count + 1, result, result.bias_component_);
        result.state_ = state;
      }
      ++result.chunks_;
    }
    const MatrixType stored_state = stored_rows(result);
    RowMatrix<Scalar> rest = stored_state;
    const Eigen::Index P = result.components_.positions();
    for (Eigen::Index m = 0; m < K + 2; ++m)
      if (m != result.chunk_residual_component_) rest -= result.components_.stacked().middleRows(m * P, P);
    result.components_.component(result.chunk_residual_component_) = rest;
    if (options.end.is_output) record_output(result);
  }

  /// Copies the stored positions' rows of component `from` of C to component `to` of the result.
  static void store_rows(const ComponentTensor<Scalar>& C, Eigen::Index from, Decomposition<Scalar>& result,
                         Eigen::Index to) {
    const Eigen::Index N = C.positions();
    if (result.kept_.empty()) {
      result.components_.component(to) = C.component(from);
      return;
    }
    const Eigen::Index P = static_cast<Eigen::Index>(result.kept_.size());
    for (Eigen::Index i = 0; i < P; ++i)
      result.components_.stacked().row(to * P + i) = C.stacked().row(from * N + result.kept_[static_cast<std::size_t>(i)]);
  }

  /// The real end state at the stored positions.
  static MatrixType stored_rows(const Decomposition<Scalar>& result) {
    if (result.kept_.empty()) return result.state_;
    MatrixType rows(static_cast<Eigen::Index>(result.kept_.size()), result.state_.cols());
    for (std::size_t i = 0; i < result.kept_.size(); ++i)
      rows.row(static_cast<Eigen::Index>(i)) = result.state_.row(result.kept_[i]);
    return rows;
  }

  /// The output boundary itself: the normed components against the normed state.
  static void record_output(Decomposition<Scalar>& result) {
    record_sum(result.checks_, result.components_.sum(), stored_rows(result), Boundary::output(), true);
  }

  int check_boundary(const Boundary& b, const char* what) const {
    if (b.is_output) return 2 * model_.config().n_layers;
    if (b.layer < 0 || b.layer >= model_.config().n_layers)
      throw std::invalid_argument(std::string(what) + " boundary layer " +
                                  std::to_string(b.layer) + " is out of range [0, " +
                                  std::to_string(model_.config().n_layers) + ")");
    return b.index(model_.config().n_layers);
  }

  void run_blocks(MatrixType& x, int from, int to, const Hook<Scalar>& hook) const {
    for (int b = from; b < to; ++b) {
      if (b % 2 == 0) model_.attention_block(b / 2, x, nullptr, hook);
      else model_.mlp_block(b / 2, x, nullptr, hook);
    }
  }

  /// After a block: the engine's own sum of the components when it left one.
  static void record(std::vector<BoundaryCheck>& checks, const ComponentState<Scalar>& cs,
                     const MatrixType& state, const Boundary& boundary) {
    if (cs.component_sum_current) record_sum(checks, cs.component_sum, state, boundary);
    else record_sum(checks, cs.tensor.sum(), state, boundary);
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

  // ---- Initialisations: what the components are at the start boundary --------------------

  Start prepare_start(MatrixType& x, const std::vector<int>& ids, const Initialisation<Scalar>& init,
                      const Hook<Scalar>& hook) const {
    if (init.kind == InitKind::Token || init.kind == InitKind::Subspace || init.kind == InitKind::Custom) {
      if (init.start.is_output)
        throw std::invalid_argument("start boundary cannot be the output: nothing is left to propagate");
      const int index = check_boundary(init.start, "start");
      run_blocks(x, 0, index, hook);
      if (init.kind == InitKind::Token) return token_start(x, ids, index);
      if (init.kind == InitKind::Subspace) return subspace_start(x, init, index);
      return custom_start(x, init, index);
    }
    model_.check_layer(init.layer);
    const int block = 2 * init.layer + (init.module == Site::Mlp ? 1 : 0);
    run_blocks(x, 0, block, hook);
    if (init.kind == InitKind::Module) return module_start(x, init, hook);
    if (init.kind == InitKind::Head) return head_start(x, init, hook);
    return neuron_start(x, init, hook);
  }

  static Start empty_start(const MatrixType& x, int boundary_index) {
    Start s;
    s.boundary_index = boundary_index;
    s.state = x;
    s.bias = MatrixType::Zero(x.rows(), x.cols());
    return s;
  }

  /// One component per input position: the state's row m at position m.
  Start token_start(const MatrixType& x, const std::vector<int>& ids, int boundary_index) const {
    const Eigen::Index N = x.rows();
    Start s = empty_start(x, boundary_index);
    // At the embeddings, learned position vectors belong to no token: they get a
    // component of their own ("positions"), so each token owns only its embedding.
    const bool split_positions = boundary_index == 0 && model_.config().positions == PositionKind::Learned;
    for (Eigen::Index m = 0; m < N; ++m) {
      s.first.push_back(m);  // causality: token m never reaches an earlier position
      s.labels.push_back("token " + std::to_string(m));
    }
    if (split_positions) {
      s.first.push_back(0);
      s.labels.push_back("positions");
    }
    const Weights<Scalar>& w = model_.weights();
    s.fill = [x, ids, split_positions, &w, N](Eigen::Index m, Eigen::Ref<RowMatrix<Scalar>> dst) {
      if (m == N) dst = w.position_embedding.topRows(N);
      else if (split_positions) dst.row(m) = w.token_embedding.row(ids[static_cast<std::size_t>(m)]);
      else dst.row(m) = x.row(m);
    };
    return s;
  }

  /// Component s = x P_s for each basis, then the orthogonal remainder.
  Start subspace_start(const MatrixType& x, const Initialisation<Scalar>& init, int boundary_index) const {
    if (init.bases.empty()) throw std::invalid_argument("subspace initialisation needs at least one basis");
    Start s = empty_start(x, boundary_index);
    std::vector<MatrixType> parts;
    MatrixType rest = x;
    for (std::size_t i = 0; i < init.bases.size(); ++i) {
      parts.push_back(x * projection(init.bases[i], static_cast<Eigen::Index>(i), init.bases_are_projections));
      rest -= parts.back();
      s.labels.push_back("subspace " + std::to_string(i));
    }
    parts.push_back(rest);
    s.labels.push_back("remainder");
    s.first.assign(parts.size(), 0);
    s.fill = [parts](Eigen::Index m, Eigen::Ref<RowMatrix<Scalar>> dst) { dst = parts[static_cast<std::size_t>(m)]; };
    return s;
  }

  /// The user's tensor, once it is verified to sum to the state.
  Start custom_start(const MatrixType& x, const Initialisation<Scalar>& init, int boundary_index) const {
    const ComponentTensor<Scalar>& C = init.custom;
    const Eigen::Index N = x.rows(), D = x.cols();
    if (C.positions() != N || C.width() != D)
      throw std::invalid_argument("custom components are " + std::to_string(C.components()) + " x " +
                                  std::to_string(C.positions()) + " x " + std::to_string(C.width()) +
                                  ", expected M x " + std::to_string(N) + " x " + std::to_string(D));
    if (C.components() < 1) throw std::invalid_argument("custom components: need at least one component");
    if (!init.custom_labels.empty() && static_cast<Eigen::Index>(init.custom_labels.size()) != C.components())
      throw std::invalid_argument("custom components: " + std::to_string(init.custom_labels.size()) +
                                  " labels for " + std::to_string(C.components()) + " components");
    const double err = static_cast<double>(C.residual_max_abs(x));
    const double scale = std::max(1.0, static_cast<double>(x.cwiseAbs().maxCoeff()));
    const double tol = (std::is_same<Scalar, float>::value ? 1e-5 : 1e-10) * scale;
    if (!(err <= tol))
      throw std::invalid_argument("custom components do not sum to the hidden state at " + init.start.to_string() +
                                  ": max |sum - state| = " + std::to_string(err) + " exceeds " + std::to_string(tol));
    Start s = empty_start(x, boundary_index);
    for (Eigen::Index m = 0; m < C.components(); ++m)
      s.labels.push_back(init.custom_labels.empty() ? "component " + std::to_string(m)
                                                    : init.custom_labels[static_cast<std::size_t>(m)]);
    s.first.assign(static_cast<std::size_t>(C.components()), 0);
    s.fill = [&C](Eigen::Index m, Eigen::Ref<RowMatrix<Scalar>> dst) { dst = C.component(m); };
    return s;
  }

  /// {state before the block, the block's output}.
  Start module_start(MatrixType& x, const Initialisation<Scalar>& init, const Hook<Scalar>& hook) const {
    const char* wanted = init.module == Site::Mlp ? "ffn_out" : "attn_out";
    const MatrixType before = x;
    MatrixType out;
    run_module(x, init, [&](const HookEvent<Scalar>& e) {
      if (std::string(e.name) == wanted) out = e.value;
      if (hook) hook(e);
    });
    Start s = empty_start(x, 2 * init.layer + (init.module == Site::Mlp ? 2 : 1));
    s.labels = {"residual", (init.module == Site::Mlp ? "mlp " : "attention ") + std::to_string(init.layer)};
    s.first = {0, 0};
    s.fill = [before, out](Eigen::Index m, Eigen::Ref<RowMatrix<Scalar>> dst) { dst = m == 0 ? before : out; };
    return s;
  }

  /// {residual input, head 0, ..., head H-1}; the output bias goes to the bias component.
  Start head_start(MatrixType& x, const Initialisation<Scalar>& init, const Hook<Scalar>& hook) const {
    const LayerWeights<Scalar>& w = model_.weights().layers[static_cast<std::size_t>(init.layer)];
    const MatrixType before = x;
    MatrixType heads;
    run_module(x, init, [&](const HookEvent<Scalar>& e) {
      if (std::string(e.name) == "attn_heads") heads = e.value;
      if (hook) hook(e);
    });
    Start s = empty_start(x, 2 * init.layer + 1);
    s.labels.push_back("residual");
    for (int h = 0; h < model_.config().n_heads; ++h) s.labels.push_back("head " + std::to_string(h));
    s.first.assign(s.labels.size(), 0);
    if (w.bo.size()) s.bias.rowwise() += w.bo.transpose();
    const Eigen::Index d = model_.config().head_dim;
    s.fill = [before, heads, &w, d](Eigen::Index m, Eigen::Ref<RowMatrix<Scalar>> dst) {
      if (m == 0) dst = before;
      else dst.noalias() = heads.middleCols((m - 1) * d, d) * w.wo.middleCols((m - 1) * d, d).transpose();
    };
    return s;
  }

  /// {state before the MLP, each selected neuron's output, the other neurons}; the down
  /// projection's bias goes to the bias component.
  Start neuron_start(MatrixType& x, const Initialisation<Scalar>& init, const Hook<Scalar>& hook) const {
    const LayerWeights<Scalar>& w = model_.weights().layers[static_cast<std::size_t>(init.layer)];
    const std::vector<int> selected = selected_neurons(init.neurons);
    const MatrixType before = x;
    MatrixType act, out;
    run_module(x, init, [&](const HookEvent<Scalar>& e) {
      const std::string name = e.name;
      if (name == "ffn_act") act = e.value;
      if (name == "ffn_out") out = e.value;
      if (hook) hook(e);
    });
    const Eigen::Index K = static_cast<Eigen::Index>(selected.size());
    Start s = empty_start(x, 2 * init.layer + 2);
    if (w.b2.size()) s.bias.rowwise() += w.b2.transpose();
    // The other neurons: the MLP's output minus the selected neurons and the bias, so that
    // the components sum to the state after the MLP.
    MatrixType chosen_act(act.rows(), K), chosen_w2(w.w2.rows(), K);
    for (Eigen::Index j = 0; j < K; ++j) {
      chosen_act.col(j) = act.col(selected[static_cast<std::size_t>(j)]);
      chosen_w2.col(j) = w.w2.col(selected[static_cast<std::size_t>(j)]);
    }
    MatrixType others = out - s.bias;
    others.noalias() -= chosen_act * chosen_w2.transpose();
    s.labels.push_back("residual");
    for (int k : selected) s.labels.push_back("neuron " + std::to_string(k));
    s.labels.push_back("other neurons");
    s.first.assign(s.labels.size(), 0);
    s.fill = [before, chosen_act, chosen_w2, others, K](Eigen::Index m, Eigen::Ref<RowMatrix<Scalar>> dst) {
      if (m == 0) dst = before;
      else if (m == K + 1) dst = others;
      else dst.noalias() = chosen_act.col(m - 1) * chosen_w2.col(m - 1).transpose();
    };
    return s;
  }

  /// The selected neurons (all when none are given), checked.
  std::vector<int> selected_neurons(std::vector<int> selected) const {
    const int I = model_.config().hidden_dim;
    if (selected.empty())
      for (int k = 0; k < I; ++k) selected.push_back(k);
    std::vector<char> seen(static_cast<std::size_t>(I), 0);
    for (int k : selected) {
      if (k < 0 || k >= I)
        throw std::invalid_argument("neuron " + std::to_string(k) + " is out of range [0, " + std::to_string(I) + ")");
      if (seen[static_cast<std::size_t>(k)]++)
        throw std::invalid_argument("neuron " + std::to_string(k) + " is selected twice");
    }
    return selected;
  }

  template <typename Capture>
  void run_module(MatrixType& x, const Initialisation<Scalar>& init, Capture capture) const {
    const Hook<Scalar> tap = capture;
    if (init.module == Site::Mlp) model_.mlp_block(init.layer, x, nullptr, tap);
    else model_.attention_block(init.layer, x, nullptr, tap);
  }

  /// D x D orthogonal projection onto span(B), or B itself when it is a projection.
  MatrixType projection(const MatrixType& B, Eigen::Index index, bool is_projection) const {
    const Eigen::Index D = model_.config().dim;
    const std::string name = "basis " + std::to_string(index);
    if (B.rows() != D)
      throw std::invalid_argument(name + " has " + std::to_string(B.rows()) +
                                  " rows; it must have the model width D = " + std::to_string(D));
    if (!B.allFinite()) throw std::invalid_argument(name + " contains NaN or infinite values");
    if (is_projection) {
      if (B.cols() != D)
        throw std::invalid_argument(name + " is a projection and must be " + std::to_string(D) +
                                    " x " + std::to_string(D));
      return B;
    }
    if (B.cols() < 1 || B.cols() > D)
      throw std::invalid_argument(name + " has " + std::to_string(B.cols()) +
                                  " columns; allowed [1, " + std::to_string(D) + "]");
    const MatrixType gram = B.transpose() * B;
    Eigen::LDLT<MatrixType> ldlt(gram);
    const VectorType pivots = ldlt.vectorD();
    const Scalar largest = pivots.cwiseAbs().maxCoeff();
    if (ldlt.info() != Eigen::Success || !(pivots.minCoeff() > largest * Scalar(1e-4)))
      throw std::invalid_argument(name + " is rank-deficient: its columns must be linearly independent");
    return B * ldlt.solve(B.transpose());
  }

  const Model<Scalar>& model_;
};

}  // namespace depass
