#pragma once
// What the components are at the start of a decomposition (docs/method.md,
// "Initialisations"): one factory per kind, each reading what the layers give (the state,
// head outputs, neuron values, a block's output). Members are built one at a time, so a
// chunked run never holds them all; terms no input owns (biases) start in the bias component.

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "Boundary.hpp"
#include "ComponentTensor.hpp"
#include "Model.hpp"

namespace depass {

enum class InitKind { Token, Module, Head, Neuron, Subspace, Custom };

/// What the components are (docs/method.md, "Initialisations").
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

namespace detail {

/// The components at the start boundary.
template <typename Scalar>
struct Start {
  int boundary_index = 0;            // blocks already run
  Matrix<Scalar> state;              // N x D at that boundary
  Matrix<Scalar> bias;               // N x D: the bias component's start value
  std::vector<std::string> labels;   // one per member
  std::vector<Eigen::Index> first;   // per member: first position it can be non-zero at
  /// Writes member m (N x D) into a block that is zero on entry.
  std::function<void(Eigen::Index, Eigen::Ref<RowMatrix<Scalar>>)> fill;
  /// A parallel-residual model started between a layer's blocks (heads, attention module):
  /// the same members at the layer's input, which its MLP reads; else null.
  std::shared_ptr<const Start> layer_input;
  Eigen::Index members() const { return static_cast<Eigen::Index>(labels.size()); }
};

/// Runs the model up to where the components are defined and builds them.
template <typename Scalar>
class StartBuilder {
 public:
  using MatrixType = Matrix<Scalar>;
  using VectorType = Vector<Scalar>;
  using Fill = std::function<void(Eigen::Index, Eigen::Ref<RowMatrix<Scalar>>)>;

  explicit StartBuilder(const Model<Scalar>& model) : model_(model) {}

  /// x: the embeddings on entry, the state at the start boundary on exit.
  Start<Scalar> build(MatrixType& x, const std::vector<int>& ids, const Initialisation<Scalar>& init,
                      const Hook<Scalar>& hook) const {
    if (init.kind == InitKind::Token || init.kind == InitKind::Subspace || init.kind == InitKind::Custom) {
      if (init.start.is_output)
        throw std::invalid_argument("start boundary cannot be the output: nothing is left to propagate");
      const int index = boundary_index(init.start, "start");
      if (model_.config().parallel_residual && index % 2 == 1)
        throw std::invalid_argument("start boundary " + init.start.to_string() + " of a parallel-residual model (" +
                                    model_.config().architecture + "): the layer's MLP reads the layer's input, which "
                                    "components of this state do not determine; start before the attention instead");
      run_blocks(x, 0, index, hook);
      if (init.kind == InitKind::Token) return tokens(x, ids, index);
      if (init.kind == InitKind::Subspace) return subspaces(x, init, index);
      return custom(x, init, index);
    }
    model_.check_layer(init.layer);
    LayerInput<Scalar> input;  // of init.layer, for a parallel-residual model's MLP
    run_blocks(x, 0, 2 * init.layer + (init.module == Site::Mlp ? 1 : 0), hook, &input);
    if (init.kind == InitKind::Module) return module(x, init, hook, input);
    if (init.kind == InitKind::Head) return heads(x, init.layer, hook);
    return neurons(x, init, hook, input);
  }

  /// Boundary::index of b, checked against the model (`what` names it in errors).
  int boundary_index(const Boundary& b, const char* what) const {
    const int L = model_.config().n_layers;
    if (b.is_output) return 2 * L;
    if (b.layer < 0 || b.layer >= L)
      throw std::invalid_argument(std::string(what) + " boundary layer " + std::to_string(b.layer) +
                                  " is out of range [0, " + std::to_string(L) + ")");
    return b.index(L);
  }

  /// Runs blocks [from, to) on x, from a boundary before an attention block. `input` (if
  /// given) receives the input of the last layer entered (a parallel-residual model's MLP reads it).
  void run_blocks(MatrixType& x, int from, int to, const Hook<Scalar>& hook, LayerInput<Scalar>* input = nullptr) const {
    if (from % 2) throw std::logic_error("run_blocks starts before an attention block");
    LayerInput<Scalar> local;
    for (int b = from; b < to; ++b) model_.run_block(b, x, nullptr, hook, input ? *input : local);
  }

 private:
  const LayerInput<Scalar>* mlp_input(const LayerInput<Scalar>& input) const {
    return model_.config().parallel_residual ? &input : nullptr;
  }

  /// A parallel-residual model started after a layer's attention (s: residual = the layer's
  /// input `before`, then the attention's parts): the layer's MLP reads only the residual
  /// member, so at the layer input it is everything and the other members are zero.
  std::shared_ptr<const Start<Scalar>> residual_only(const Start<Scalar>& s, const MatrixType& before) const {
    if (!model_.config().parallel_residual) return nullptr;
    auto input = std::make_shared<Start<Scalar>>(empty(before, s.boundary_index - 1));
    input->labels = s.labels;
    input->first = s.first;
    input->fill = [before](Eigen::Index m, Eigen::Ref<RowMatrix<Scalar>> dst) {
      if (m == 0) dst = before;
    };
    return input;
  }

  static Start<Scalar> empty(const MatrixType& x, int boundary_index) {
    Start<Scalar> s;
    s.boundary_index = boundary_index;
    s.state = x;
    s.bias = MatrixType::Zero(x.rows(), x.cols());
    return s;
  }

  /// One component per input position: the state's row m at position m. At the embeddings,
  /// learned position vectors belong to no token: they form a "positions" component, so
  /// each token owns only its token embedding.
  Start<Scalar> tokens(const MatrixType& x, const std::vector<int>& ids, int boundary_index) const {
    const Eigen::Index N = x.rows();
    Start<Scalar> s = empty(x, boundary_index);
    const Embedding<Scalar> embedding = model_.embedding();
    const bool split_positions = boundary_index == 0 && embedding.learned_positions();
    for (Eigen::Index m = 0; m < N; ++m) {
      s.first.push_back(m);  // causality: token m never reaches an earlier position
      s.labels.push_back("token " + std::to_string(m));
    }
    if (split_positions) {
      s.first.push_back(0);
      s.labels.push_back("positions");
    }
    s.fill = [x, ids, split_positions, embedding, N](Eigen::Index m, Eigen::Ref<RowMatrix<Scalar>> dst) {
      if (m == N) dst = embedding.positions(N);
      else if (split_positions) dst.row(m) = embedding.token(ids[static_cast<std::size_t>(m)]);
      else dst.row(m) = x.row(m);
    };
    return s;
  }

  /// Component s = x P_s for each basis, then the orthogonal remainder.
  Start<Scalar> subspaces(const MatrixType& x, const Initialisation<Scalar>& init, int boundary_index) const {
    if (init.bases.empty()) throw std::invalid_argument("subspace initialisation needs at least one basis");
    Start<Scalar> s = empty(x, boundary_index);
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
  Start<Scalar> custom(const MatrixType& x, const Initialisation<Scalar>& init, int boundary_index) const {
    const ComponentTensor<Scalar>& C = init.custom;
    const Eigen::Index N = x.rows(), D = x.cols();
    if (C.positions() != N || C.width() != D)
      throw std::invalid_argument("custom components are " + std::to_string(C.components()) + " x " +
                                  std::to_string(C.positions()) + " x " + std::to_string(C.width()) +
                                  ", expected M x " + std::to_string(N) + " x " + std::to_string(D));
    if (C.components() < 1) throw std::invalid_argument("custom components: need at least one component");
    if (!init.custom_labels.empty() && static_cast<Eigen::Index>(init.custom_labels.size()) != C.components())
      throw std::invalid_argument("custom components: " + std::to_string(init.custom_labels.size()) + " labels for " +
                                  std::to_string(C.components()) + " components");
    const double err = static_cast<double>(C.residual_max_abs(x));
    const double scale = std::max(1.0, static_cast<double>(x.cwiseAbs().maxCoeff()));
    const double tol = (std::is_same<Scalar, float>::value ? 1e-5 : 1e-10) * scale;
    if (!(err <= tol))
      throw std::invalid_argument("custom components do not sum to the hidden state at " + init.start.to_string() +
                                  ": max |sum - state| = " + std::to_string(err) + " exceeds " + std::to_string(tol));
    Start<Scalar> s = empty(x, boundary_index);
    for (Eigen::Index m = 0; m < C.components(); ++m)
      s.labels.push_back(init.custom_labels.empty() ? "component " + std::to_string(m)
                                                    : init.custom_labels[static_cast<std::size_t>(m)]);
    s.first.assign(static_cast<std::size_t>(C.components()), 0);
    s.fill = [&C](Eigen::Index m, Eigen::Ref<RowMatrix<Scalar>> dst) { dst = C.component(m); };
    return s;
  }

  /// {state before the block, the block's output}, after the block.
  Start<Scalar> module(MatrixType& x, const Initialisation<Scalar>& init, const Hook<Scalar>& hook,
                       const LayerInput<Scalar>& input) const {
    const MatrixType before = x;
    const bool mlp = init.module == Site::Mlp;
    // What the block added to the residual stream (through Gemma 2's post-norm, if any).
    const MatrixType out =
        mlp ? residual_output(init.layer, Site::Mlp, model_.mlp_block(init.layer, x, nullptr, hook, mlp_input(input)))
            : residual_output(init.layer, Site::Attention, model_.attention_block(init.layer, x, nullptr, hook));
    Start<Scalar> s = empty(x, 2 * init.layer + (mlp ? 2 : 1));
    s.labels = {"residual", (mlp ? "mlp " : "attention ") + std::to_string(init.layer)};
    s.first = {0, 0};
    s.fill = [before, out](Eigen::Index m, Eigen::Ref<RowMatrix<Scalar>> dst) { dst = m == 0 ? before : out; };
    if (!mlp) s.layer_input = residual_only(s, before);
    return s;
  }

  /// {residual input, head 0, ..., head H-1} after the attention; its output bias goes to
  /// the bias component.
  Start<Scalar> heads(MatrixType& x, int layer, const Hook<Scalar>& hook) const {
    const MatrixType before = x;
    const typename Attention<Scalar>::Forward real = model_.attention_block(layer, x, nullptr, hook);
    const MatrixType heads = real.heads;
    const VectorType post_scale = real.post_scale;
    const Attention<Scalar> attention = model_.attention(layer);
    Start<Scalar> s = empty(x, 2 * layer + 1);
    route_bias(s.bias, attention.output_bias(), true);
    s.bias = model_.residual_part(layer, Site::Attention, s.bias, post_scale);
    s.labels.push_back("residual");
    for (int h = 0; h < attention.heads(); ++h) s.labels.push_back("head " + std::to_string(h));
    s.first.assign(s.labels.size(), 0);
    const Model<Scalar>* model = &model_;
    s.fill = [before, heads, attention, model, layer, post_scale](Eigen::Index m, Eigen::Ref<RowMatrix<Scalar>> dst) {
      if (m == 0) dst = before;
      else dst = model->residual_part(layer, Site::Attention, attention.head_output(heads, static_cast<int>(m - 1)), post_scale);
    };
    s.layer_input = residual_only(s, before);
    return s;
  }

  /// {state before the MLP, each selected neuron's output, the other neurons} after the MLP;
  /// the down projection's bias goes to the bias component, so "other neurons" is the output
  /// of the neurons not selected (the MLP's output minus the selected neurons and that bias).
  Start<Scalar> neurons(MatrixType& x, const Initialisation<Scalar>& init, const Hook<Scalar>& hook,
                        const LayerInput<Scalar>& input) const {
    const std::vector<int> selected = selected_neurons(init.neurons);
    const MatrixType before = x;
    const typename Mlp<Scalar>::Forward real = model_.mlp_block(init.layer, x, nullptr, hook, mlp_input(input));
    const Mlp<Scalar> mlp = model_.mlp(init.layer);
    Start<Scalar> s = empty(x, 2 * init.layer + 2);
    route_bias(s.bias, mlp.output_bias(), true);
    // Through Gemma 2's post-norm (frozen, linear) each part is scaled as the whole output was.
    const Model<Scalar>* model = &model_;
    const int layer = init.layer;
    const VectorType post_scale = real.post_scale;
    const auto enter = [model, layer, post_scale](MatrixType part) {
      return model->residual_part(layer, Site::Mlp, std::move(part), post_scale);
    };
    // The other neurons' output from their own values, not the block's output minus the
    // selected ones': with every neuron selected that difference is rounding (non-zero once
    // the output came from another GEMM), and the MLP split gives any non-zero component a share.
    const MatrixType others = enter(mlp.neurons_output(real.act, unselected_neurons(selected)));
    s.bias = enter(s.bias);
    s.labels.push_back("residual");
    for (int k : selected) s.labels.push_back("neuron " + std::to_string(k));
    s.labels.push_back("other neurons");
    s.first.assign(s.labels.size(), 0);
    const Eigen::Index K = static_cast<Eigen::Index>(selected.size());
    const MatrixType act = real.act;
    s.fill = [before, act, others, selected, mlp, K, enter](Eigen::Index m, Eigen::Ref<RowMatrix<Scalar>> dst) {
      if (m == 0) dst = before;
      else if (m == K + 1) dst = others;
      else dst = enter(mlp.neuron_output(act, selected[static_cast<std::size_t>(m - 1)]));
    };
    return s;
  }

  /// What a block's real forward added to the residual stream: its output, through the frozen
  /// post-norm if the model has one (the same numbers the block added).
  template <typename Forward>
  MatrixType residual_output(int layer, Site site, const Forward& real) const {
    return model_.residual_part(layer, site, real.out, real.post_scale);
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

  /// The neurons not in `selected` (checked by selected_neurons), in order.
  std::vector<int> unselected_neurons(const std::vector<int>& selected) const {
    std::vector<char> in(static_cast<std::size_t>(model_.config().hidden_dim), 0);
    for (int k : selected) in[static_cast<std::size_t>(k)] = 1;
    std::vector<int> rest;
    for (int k = 0; k < model_.config().hidden_dim; ++k)
      if (!in[static_cast<std::size_t>(k)]) rest.push_back(k);
    return rest;
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

}  // namespace detail
}  // namespace depass
