#pragma once
// DePass: runs the forward pass with a component tensor riding along (method note,
// sections 1-6) and returns the components at the end boundary, with readouts.

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
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
  std::size_t memory_budget_bytes = 0; // 0: no limit; else components are run in chunks
  long chunk_size = 0;                 // components per chunk; 0: all (or from the budget)
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

  /// Components at the end boundary; at the output they are final-normed (frozen scale),
  /// so that component_logits is a plain product with the unembedding.
  const ComponentTensor<Scalar>& components() const { return components_; }
  /// The real state at the end boundary (final-normed at the output).
  const MatrixType& state() const { return state_; }
  const std::vector<std::string>& labels() const { return labels_; }
  Eigen::Index component_count() const { return components_.components(); }
  Eigen::Index positions() const { return components_.positions(); }
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
    check_readout(position, target);
    return state_.row(position).dot(model_->weights().unembedding().row(target));
  }
  /// Real logits (V) at position.
  VectorType logits(Eigen::Index position) const {
    check_readout(position, 0);
    return model_->weights().unembedding() * state_.row(position).transpose();
  }
  /// Each component's logit for target at position (M values that sum to logit()).
  VectorType component_logits(Eigen::Index position, int target) const {
    check_readout(position, target);
    const Eigen::Index M = components_.components(), N = components_.positions();
    VectorType scores(M);
    const auto& row = model_->weights().unembedding().row(target);
    for (Eigen::Index m = 0; m < M; ++m)
      scores(m) = components_.stacked().row(m * N + position).dot(row);
    return scores;
  }
  /// Every component's logits at position: M x V.
  MatrixType component_logits(Eigen::Index position) const {
    check_readout(position, 0);
    const Eigen::Index M = components_.components(), N = components_.positions();
    MatrixType rows(M, components_.width());
    for (Eigen::Index m = 0; m < M; ++m) rows.row(m) = components_.stacked().row(m * N + position);
    return rows * model_->weights().unembedding().transpose();
  }
  /// The k tokens component m pushes up most at position, best first: (token, logit).
  std::vector<std::pair<int, Scalar>> top_tokens(Eigen::Index component, Eigen::Index position,
                                                 int k) const {
    if (component < 0 || component >= components_.components())
      throw std::invalid_argument("component " + std::to_string(component) +
                                  " is out of range [0, " +
                                  std::to_string(components_.components()) + ")");
    if (k < 0) throw std::invalid_argument("k = " + std::to_string(k) + " must be >= 0");
    check_readout(position, 0);
    const VectorType logits = model_->weights().unembedding() *
                              components_.stacked().row(component * components_.positions() + position).transpose();
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

  void check_readout(Eigen::Index position, int target) const {
    if (!end_.is_output)
      throw std::invalid_argument("logit readouts need a decomposition that ends at the output; "
                                  "this one ends " + end_.to_string());
    if (position < 0 || position >= components_.positions())
      throw std::invalid_argument("position " + std::to_string(position) +
                                  " is out of range [0, " +
                                  std::to_string(components_.positions()) + ")");
    if (target < 0 || target >= model_->config().vocab_size)
      throw std::invalid_argument("target token id " + std::to_string(target) +
                                  " is out of range [0, " +
                                  std::to_string(model_->config().vocab_size) + ")");
  }

  const Model<Scalar>* model_ = nullptr;
  ComponentTensor<Scalar> components_;
  MatrixType state_;
  std::vector<std::string> labels_;
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
    const Config& cfg = model_.config();
    const int L = cfg.n_layers;
    check_options(options);
    model_.check_tokens(ids);

    // 1. Plain forward up to where the components are defined.
    MatrixType x = model_.embed(ids, hook);
    Start start = prepare_start(x, ids, init, hook);
    const int end_index = check_boundary(options.end, "end");
    if (end_index < start.boundary_index)
      throw std::invalid_argument("end boundary (" + options.end.to_string() +
                                  ") lies before the start of the decomposition (" +
                                  Boundary::from_index(start.boundary_index, L).to_string() + ")");

    // 2. Chunking: members go through in groups, each with a remainder component.
    const Eigen::Index K = static_cast<Eigen::Index>(start.labels.size());
    const Eigen::Index N = x.rows();
    Eigen::Index chunk = K;
    bool forced = false;
    if (options.chunk_size > 0) {
      chunk = std::min<Eigen::Index>(K, options.chunk_size);
      forced = true;
    } else if (options.memory_budget_bytes > 0) {
      const std::size_t per_component = bytes_per_component(N);
      const std::size_t fit = options.memory_budget_bytes / per_component;
      // Two slots of every chunk go to its remainder and the bias component.
      chunk = std::max<Eigen::Index>(1, std::min<Eigen::Index>(
                                            K, static_cast<Eigen::Index>(fit > 2 ? fit - 2 : 1)));
    }
    const bool chunked = forced || chunk < K;

    Decomposition<Scalar> result;
    result.model_ = &model_;
    result.end_ = options.end;
    result.forced_chunking_ = forced;
    result.chunks_ = 0;
    const Eigen::Index total = K + (chunked ? 1 : 0) + 1;
    result.labels_ = start.labels;
    if (chunked) result.labels_.push_back("chunk residual");
    result.labels_.push_back("bias");
    result.bias_component_ = total - 1;
    result.chunk_residual_component_ = chunked ? K : -1;

    auto make_state = [&](Eigen::Index first_member) {
      ComponentState<Scalar> cs;
      cs.split = options.split;
      cs.temperature = static_cast<Scalar>(options.temperature);
      cs.straightforward = options.straightforward;
      cs.track_sum = true;
      cs.work_rows = static_cast<Eigen::Index>(options.work_rows);
      if (init.kind == InitKind::Token && options.bos_sink && first_member == 0) cs.sink_component = 0;
      return cs;
    };
    // Runs one pass from the start boundary to the end; returns the real end state.
    auto propagate = [&](ComponentState<Scalar>& cs) {
      MatrixType state = start.state;
      record_sum(result.checks_, cs.tensor.sum(cs.first_position), state, Boundary::from_index(start.boundary_index, L));
      if (hook)
        hook(HookEvent<Scalar>{"start", Boundary::from_index(start.boundary_index, L).layer, state, &cs.tensor,
                               start.boundary_index});
      for (int b = start.boundary_index; b < end_index; ++b) {
        if (b % 2 == 0) model_.attention_block(b / 2, state, &cs, hook);
        else model_.mlp_block(b / 2, state, &cs, hook);
        record(result.checks_, cs, state, Boundary::from_index(b + 1, L));
      }
      if (options.end.is_output) {
        VectorType scale;
        state = model_.final_norm(state, &scale);
        model_.final_norm_components(cs, scale);
      }
      return state;
    };

    if (!chunked) {
      // Every component in one pass, propagated in place: the start tensor already has
      // the bias component in its last slot.
      ComponentState<Scalar> cs = make_state(0);
      cs.tensor = std::move(start.members);
      cs.bias_component = K;
      cs.first_position = start.first;
      cs.first_position.push_back(0);
      result.state_ = propagate(cs);
      result.components_ = std::move(cs.tensor);
      result.chunks_ = 1;
      if (options.end.is_output)
        record(result.checks_, result.components_, result.state_, Boundary::output(), true);
      return result;
    }

    result.components_.resize(total, N, cfg.dim);
    for (Eigen::Index first = 0; first < K; first += chunk) {
      const Eigen::Index count = std::min<Eigen::Index>(chunk, K - first);
      ComponentState<Scalar> cs = make_state(first);
      const Eigen::Index local = count + 2;  // members, remainder, bias
      cs.tensor.resize(local, N, cfg.dim);
      for (Eigen::Index m = 0; m < count; ++m) {
        cs.tensor.component(m) = start.members.component(first + m);
        cs.first_position.push_back(start.first[static_cast<std::size_t>(first + m)]);
      }
      cs.first_position.push_back(0);
      cs.first_position.push_back(0);
      cs.bias_component = local - 1;
      cs.tensor.component(cs.bias_component) = start.members.component(K);
      // The remainder owns everything outside this chunk, so each pass is lossless.
      MatrixType rest = start.state - start.members.component(K);
      for (Eigen::Index m = 0; m < count; ++m) rest -= cs.tensor.component(m);
      cs.tensor.component(count) = rest;

      const MatrixType state = propagate(cs);
      for (Eigen::Index m = 0; m < count; ++m)
        result.components_.component(first + m) = cs.tensor.component(m);
      if (result.chunks_ == 0) {
        result.components_.component(result.bias_component_) = cs.tensor.component(cs.bias_component);
        result.state_ = state;
      }
      ++result.chunks_;
    }
    // Chunks interact through the softmax split, so members of different chunks need not
    // sum to the state; the difference is reported as its own component.
    MatrixType rest = result.state_;
    for (Eigen::Index m = 0; m < total; ++m)
      if (m != result.chunk_residual_component_) rest -= result.components_.component(m);
    result.components_.component(result.chunk_residual_component_) = rest;
    if (options.end.is_output) {
      // The output boundary itself: the normed components against the normed state.
      record(result.checks_, result.components_, result.state_, Boundary::output(), true);
    }
    return result;
  }

 private:
  struct Start {
    int boundary_index = 0;                // blocks already run
    MatrixType state;                      // N x D at that boundary
    ComponentTensor<Scalar> members;       // (K+1) x N x D: K members, then the bias component
    std::vector<Eigen::Index> first;       // K: first position each member can be non-zero at
    std::vector<std::string> labels;       // K labels
  };

  /// Bytes one component costs during a pass: its slice of C, and its rows in each
  /// thread's MLP tile once the tiles are one position high (the engine's other scratch
  /// is bounded by work_rows, not by the number of components).
  std::size_t bytes_per_component(Eigen::Index N) const {
    const Config& cfg = model_.config();
    const std::size_t threads = static_cast<std::size_t>(std::max(1, Eigen::nbThreads()));
    return (static_cast<std::size_t>(N) * static_cast<std::size_t>(cfg.dim) +
            threads * static_cast<std::size_t>(cfg.dim + cfg.hidden_dim)) * sizeof(Scalar);
  }

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
    else record(checks, cs.tensor, state, boundary);
  }

  static void record(std::vector<BoundaryCheck>& checks, const ComponentTensor<Scalar>& C,
                     const MatrixType& state, const Boundary& boundary, bool final_normed = false) {
    record_sum(checks, C.sum(), state, boundary, final_normed);
  }

  template <typename Sum>
  static void record_sum(std::vector<BoundaryCheck>& checks, const Sum& sum, const MatrixType& state,
                         const Boundary& boundary, bool final_normed = false) {
    BoundaryCheck check;
    check.boundary = boundary;
    check.final_normed = final_normed;
    check.residual_max_abs = static_cast<double>((sum - state).cwiseAbs().maxCoeff());
    check.state_max_abs = static_cast<double>(state.cwiseAbs().maxCoeff());
    checks.push_back(check);
  }

  Start prepare_start(MatrixType& x, const std::vector<int>& ids, const Initialisation<Scalar>& init,
                      const Hook<Scalar>& hook) const {
    const Config& cfg = model_.config();
    const Eigen::Index N = x.rows(), D = cfg.dim;
    Start s;
    switch (init.kind) {
      case InitKind::Token:
      case InitKind::Subspace:
      case InitKind::Custom: {
        if (init.start.is_output)
          throw std::invalid_argument("start boundary cannot be the output: nothing is left to propagate");
        s.boundary_index = check_boundary(init.start, "start");
        run_blocks(x, 0, s.boundary_index, hook);
        break;
      }
      case InitKind::Module:
      case InitKind::Head:
      case InitKind::Neuron: {
        model_.check_layer(init.layer);
        const int block = 2 * init.layer + (init.module == Site::Mlp ? 1 : 0);
        run_blocks(x, 0, block, hook);
        s.boundary_index = block + 1;
        break;
      }
    }
    // Every members tensor gets one slot more than it has members: the bias component.
    MatrixType bias = MatrixType::Zero(N, D);
    switch (init.kind) {
      case InitKind::Token: {
        // At the embeddings, learned position vectors belong to no token: they get a
        // component of their own ("positions"), so each token owns only its embedding.
        const bool split_positions = s.boundary_index == 0 && cfg.positions == PositionKind::Learned;
        s.members.resize(N + (split_positions ? 1 : 0) + 1, N, D);
        for (Eigen::Index m = 0; m < N; ++m) {
          s.first.push_back(m);  // causality: token m never reaches an earlier position
          if (split_positions)
            s.members.component(m).row(m) = model_.weights().token_embedding.row(ids[static_cast<std::size_t>(m)]);
          else
            s.members.component(m).row(m) = x.row(m);
          s.labels.push_back("token " + std::to_string(m));
        }
        if (split_positions) {
          s.members.component(N) = model_.weights().position_embedding.topRows(N);
          s.labels.push_back("positions");
          s.first.push_back(0);
        }
        s.state = x;
        break;
      }
      case InitKind::Subspace: {
        if (init.bases.empty()) throw std::invalid_argument("subspace initialisation needs at least one basis");
        const Eigen::Index S = static_cast<Eigen::Index>(init.bases.size());
        s.members.resize(S + 2, N, D);
        MatrixType rest = x;
        for (Eigen::Index i = 0; i < S; ++i) {
          const MatrixType P = projection(init.bases[static_cast<std::size_t>(i)], i, init.bases_are_projections);
          s.members.component(i) = x * P;
          rest -= s.members.component(i);
          s.labels.push_back("subspace " + std::to_string(i));
        }
        s.members.component(S) = rest;
        s.labels.push_back("remainder");
        s.state = x;
        break;
      }
      case InitKind::Custom: {
        const ComponentTensor<Scalar>& C = init.custom;
        if (C.positions() != N || C.width() != D)
          throw std::invalid_argument("custom components are " + std::to_string(C.components()) + " x " +
                                      std::to_string(C.positions()) + " x " + std::to_string(C.width()) +
                                      ", expected M x " + std::to_string(N) + " x " + std::to_string(D));
        if (C.components() < 1) throw std::invalid_argument("custom components: need at least one component");
        if (!init.custom_labels.empty() &&
            static_cast<Eigen::Index>(init.custom_labels.size()) != C.components())
          throw std::invalid_argument("custom components: " + std::to_string(init.custom_labels.size()) +
                                      " labels for " + std::to_string(C.components()) + " components");
        const double err = static_cast<double>(C.residual_max_abs(x));
        const double scale = std::max(1.0, static_cast<double>(x.cwiseAbs().maxCoeff()));
        const double tol = (std::is_same<Scalar, float>::value ? 1e-5 : 1e-10) * scale;
        if (!(err <= tol))
          throw std::invalid_argument("custom components do not sum to the hidden state at " +
                                      init.start.to_string() + ": max |sum - state| = " +
                                      std::to_string(err) + " exceeds " + std::to_string(tol));
        s.members.resize(C.components() + 1, N, D);
        s.members.stacked().topRows(C.components() * N) = C.stacked();
        for (Eigen::Index m = 0; m < C.components(); ++m)
          s.labels.push_back(init.custom_labels.empty() ? "component " + std::to_string(m)
                                                        : init.custom_labels[static_cast<std::size_t>(m)]);
        s.state = x;
        break;
      }
      case InitKind::Module: {
        const char* wanted = init.module == Site::Mlp ? "ffn_out" : "attn_out";
        MatrixType out;
        const MatrixType before = x;
        run_module(x, init, [&](const HookEvent<Scalar>& e) {
          if (std::string(e.name) == wanted) out = e.value;
          if (hook) hook(e);
        });
        s.members.resize(3, N, D);
        s.members.component(0) = before;
        s.members.component(1) = out;
        s.labels = {"residual", init.module == Site::Mlp ? "mlp " + std::to_string(init.layer)
                                                         : "attention " + std::to_string(init.layer)};
        s.state = x;
        break;
      }
      case InitKind::Head: {
        const LayerWeights<Scalar>& w = model_.weights().layers[static_cast<std::size_t>(init.layer)];
        MatrixType heads;
        const MatrixType before = x;
        run_module(x, init, [&](const HookEvent<Scalar>& e) {
          if (std::string(e.name) == "attn_heads") heads = e.value;
          if (hook) hook(e);
        });
        const Eigen::Index H = cfg.n_heads, d = cfg.head_dim;
        s.members.resize(H + 2, N, D);
        s.members.component(0) = before;
        s.labels.push_back("residual");
        for (Eigen::Index h = 0; h < H; ++h) {
          s.members.component(h + 1).noalias() =
              heads.middleCols(h * d, d) * w.wo.middleCols(h * d, d).transpose();
          s.labels.push_back("head " + std::to_string(h));
        }
        if (w.bo.size()) bias.rowwise() += w.bo.transpose();
        s.state = x;
        break;
      }
      case InitKind::Neuron: {
        const LayerWeights<Scalar>& w = model_.weights().layers[static_cast<std::size_t>(init.layer)];
        std::vector<int> selected = init.neurons;
        if (selected.empty())
          for (int k = 0; k < cfg.hidden_dim; ++k) selected.push_back(k);
        std::vector<char> seen(static_cast<std::size_t>(cfg.hidden_dim), 0);
        for (int k : selected) {
          if (k < 0 || k >= cfg.hidden_dim)
            throw std::invalid_argument("neuron " + std::to_string(k) + " is out of range [0, " +
                                        std::to_string(cfg.hidden_dim) + ")");
          if (seen[static_cast<std::size_t>(k)]++)
            throw std::invalid_argument("neuron " + std::to_string(k) + " is selected twice");
        }
        MatrixType act, out;
        const MatrixType before = x;
        run_module(x, init, [&](const HookEvent<Scalar>& e) {
          const std::string name = e.name;
          if (name == "ffn_act") act = e.value;
          if (name == "ffn_out") out = e.value;
          if (hook) hook(e);
        });
        const Eigen::Index K = static_cast<Eigen::Index>(selected.size());
        s.members.resize(K + 3, N, D);
        s.members.component(0) = before;
        s.labels.push_back("residual");
        // The remainder is the MLP's output minus the selected neurons (and the bias),
        // so that the components sum to the state after the MLP.
        MatrixType others = out;
        if (w.b2.size()) {
          bias.rowwise() += w.b2.transpose();
          others -= bias;
        }
        for (Eigen::Index j = 0; j < K; ++j) {
          const int k = selected[static_cast<std::size_t>(j)];
          s.members.component(j + 1).noalias() = act.col(k) * w.w2.col(k).transpose();
          others -= s.members.component(j + 1);
          s.labels.push_back("neuron " + std::to_string(k));
        }
        s.members.component(K + 1) = others;
        s.labels.push_back("other neurons");
        s.state = x;
        break;
      }
    }
    const Eigen::Index K = static_cast<Eigen::Index>(s.labels.size());
    s.members.component(K) = bias;
    s.first.resize(static_cast<std::size_t>(K), 0);
    return s;
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
