#pragma once
// Component-level baseline attribution methods for attention heads (every layer) and MLP
// neurons (one layer), docs/methods.md:
//   atp       sum over positions of grad x activation: the first-order estimate of the
//             effect of zero-ablating the unit (mean ablation: activation minus its mean
//             over positions), from one Model::record + Model::backward;
//   norm      the norm of the unit's output at the objective's position (as it enters the
//             residual stream: through Gemma 2's post-norm, frozen);
//   ablation  f(x) - f(x with the unit's values zeroed at every position), exact: one
//             rerun per unit, batched (every sequence of a batch ablates another unit);
//   depass    the unit's share of the logit (or logit difference) by the Decomposer,
//             starting from the heads of each layer / every neuron of the layer.
// Heads are the mixed values z before Wo (head h = columns h*d..h*d+d-1), neurons the
// values a before W2.

#include <Eigen/Core>
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "../Decomposer.hpp"
#include "../Model.hpp"
#include "../detail/Batching.hpp"
#include "Attribution.hpp"

namespace depass {

struct ComponentOptions {
  bool mean_ablation = false;  // atp: estimate mean ablation (activation - its mean over positions)
  Eigen::Index batch = 0;      // ablation: units rerun per record, >= 1; 0: detail::plan_records
  DecomposeOptions depass;     // depass: split rule, temperature (its initialisation is set here)
};

template <typename Scalar>
class ComponentAttributor {
 public:
  using MatrixType = Matrix<Scalar>;
  using VectorType = Vector<Scalar>;
  using RowVector = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;

  /// The model must outlive the attributor.
  explicit ComponentAttributor(const Model<Scalar>& model) : model_(model) {}

  /// Every head of every layer: L*H scores, head h of layer l at l*H + h.
  Attribution<Scalar> heads(Method method, const std::vector<int>& ids, const Objective& objective,
                            const ComponentOptions& options = {}) const {
    check(method, Level::Heads, ids, objective, options);
    if (method == Method::DePass) return depass(Level::Heads, -1, ids, objective, options);
    const int L = model_.config().n_layers, H = model_.config().n_heads;
    const Eigen::Index d = model_.config().head_dim;
    Attribution<Scalar> a = start(method, Level::Heads, objective);
    a.scores.resize(L * H);
    const Tape<Scalar> tape = model_.record(model_.embed(ids));
    const Scalar clean = model_.objective_values(tape, objective)(0);
    a.value = static_cast<double>(clean);
    Gradients<Scalar> g;
    if (method == Method::Atp) {
      GradientRequest request;
      for (int l = 0; l < L; ++l) request.head_layers.push_back(l);
      g = model_.backward(tape, objective, request);
    }
    for (int l = 0; l < L; ++l) {
      const MatrixType& z = tape.layers[static_cast<std::size_t>(l)].attention.heads;
      VectorType layer_scores;
      if (method == Method::Atp) layer_scores = atp(z, g.heads.at(l), d, options.mean_ablation);
      else if (method == Method::OutputNorm)
        layer_scores = head_norms(z.row(objective.position), l,
                                  write_scale(l, Site::Attention, tape.layers[static_cast<std::size_t>(l)].attention.post_scale,
                                              objective.position));
      else layer_scores = ablation_effects(ids, objective, clean, l, Site::Attention, H, d, options.batch);
      a.scores.segment(l * H, H) = layer_scores;
      for (int h = 0; h < H; ++h) a.labels.push_back("L" + std::to_string(l) + ".H" + std::to_string(h));
    }
    return a;
  }

  /// Every neuron of `layer`: I scores.
  Attribution<Scalar> neurons(Method method, int layer, const std::vector<int>& ids, const Objective& objective,
                              const ComponentOptions& options = {}) const {
    check(method, Level::Neurons, ids, objective, options);
    model_.check_layer(layer);
    if (method == Method::DePass) return depass(Level::Neurons, layer, ids, objective, options);
    const Eigen::Index I = model_.config().hidden_dim;
    Attribution<Scalar> a = start(method, Level::Neurons, objective);
    a.layer = layer;
    const Tape<Scalar> tape = model_.record(model_.embed(ids));
    const Scalar clean = model_.objective_values(tape, objective)(0);
    a.value = static_cast<double>(clean);
    const MatrixType& act = tape.layers[static_cast<std::size_t>(layer)].mlp.act;
    if (method == Method::Atp) {
      GradientRequest request;
      request.neuron_layers = {layer};
      a.scores = atp(act, model_.backward(tape, objective, request).neurons.at(layer), 1, options.mean_ablation);
    } else if (method == Method::OutputNorm) {
      a.scores = neuron_norms(act.row(objective.position).transpose(), layer,
                              write_scale(layer, Site::Mlp, tape.layers[static_cast<std::size_t>(layer)].mlp.post_scale,
                                          objective.position));
    } else {
      a.scores = ablation_effects(ids, objective, clean, layer, Site::Mlp, I, 1, options.batch);
    }
    for (Eigen::Index k = 0; k < I; ++k) a.labels.push_back("L" + std::to_string(layer) + ".N" + std::to_string(k));
    return a;
  }

 private:
  void check(Method method, Level level, const std::vector<int>& ids, const Objective& objective,
             const ComponentOptions& options) const {
    check_applies(method, level);
    model_.check_tokens(ids);
    objective.validate(static_cast<Eigen::Index>(ids.size()), model_.config().vocab_size);
    detail::check_batch(options.batch);
    if (method == Method::DePass && objective.kind == ObjectiveKind::LogProb)
      throw std::invalid_argument("objective 'logprob' is not decomposed by method 'depass' (allowed: logit, contrast)");
  }

  /// DePass from the heads of every layer (level Heads) or every neuron of `layer`: the
  /// components' shares of the objective; the other components (the state before the
  /// block, the bias) are left out.
  Attribution<Scalar> depass(Level level, int layer, const std::vector<int>& ids, const Objective& objective,
                             const ComponentOptions& options) const {
    Attribution<Scalar> a = start(Method::DePass, level, objective);
    a.layer = layer;
    const int first_layer = level == Level::Heads ? 0 : layer;
    const int last_layer = level == Level::Heads ? model_.config().n_layers - 1 : layer;
    std::vector<Scalar> scores;
    for (int l = first_layer; l <= last_layer; ++l) {
      std::vector<int> all(static_cast<std::size_t>(model_.config().hidden_dim));
      for (std::size_t k = 0; k < all.size(); ++k) all[k] = static_cast<int>(k);
      const Initialisation<Scalar> init =
          level == Level::Heads ? Initialisation<Scalar>::heads(l) : Initialisation<Scalar>::neuron_outputs(l, all);
      const Decomposition<Scalar> d = Decomposer<Scalar>(model_).run(ids, init, options.depass);
      VectorType shares = d.component_logits(objective.position, objective.target);
      if (objective.kind == ObjectiveKind::Contrast) shares -= d.component_logits(objective.position, objective.foil);
      const Eigen::Index units = level == Level::Heads ? model_.config().n_heads : model_.config().hidden_dim;
      for (Eigen::Index u = 0; u < units; ++u) {  // component 0 is the state before the block
        scores.push_back(shares(1 + u));
        a.labels.push_back("L" + std::to_string(l) + (level == Level::Heads ? ".H" : ".N") + std::to_string(u));
      }
    }
    a.scores = Eigen::Map<const VectorType>(scores.data(), static_cast<Eigen::Index>(scores.size()));
    return a;
  }

  static Attribution<Scalar> start(Method method, Level level, const Objective& objective) {
    Attribution<Scalar> a;
    a.method = method;
    a.level = level;
    a.objective = objective;
    return a;
  }

  /// Unit u (columns [u*width, (u+1)*width)): sum over positions and its columns of grad x
  /// activation (activation minus its mean over positions for mean ablation).
  static VectorType atp(const MatrixType& activation, const MatrixType& grad, Eigen::Index width, bool mean_ablation) {
    MatrixType delta = activation;
    if (mean_ablation) delta.rowwise() -= activation.colwise().mean();
    const VectorType per_column = grad.cwiseProduct(delta).colwise().sum().transpose();
    const Eigen::Index units = activation.cols() / width;
    VectorType scores(units);
    for (Eigen::Index u = 0; u < units; ++u) scores(u) = per_column.segment(u * width, width).sum();
    return scores;
  }

  /// How a block's write at `position` enters the residual stream, per dimension (D): ones,
  /// or (Gemma 2) the post-norm's frozen scale times its gain, so that the norms below are
  /// of what each unit adds to the residual stream.
  VectorType write_scale(int l, Site site, const VectorType& post_scale, Eigen::Index position) const {
    const MatrixType ones = MatrixType::Ones(1, model_.config().dim);
    if (post_scale.size() == 0) return ones.transpose();
    return model_.residual_part(l, site, ones, post_scale.segment(position, 1)).transpose();
  }

  /// || (z_h[p] Wo[:, h]^T) .* scale || for every head of layer l.
  VectorType head_norms(const Eigen::Ref<const RowVector>& z_row, int l, const VectorType& scale) const {
    const RowMatrix<Scalar>& wo = model_.weights().layers[static_cast<std::size_t>(l)].wo;
    const Eigen::Index d = model_.config().head_dim;
    VectorType norms(model_.config().n_heads);
    for (Eigen::Index h = 0; h < norms.size(); ++h)
      norms(h) = (wo.middleCols(h * d, d) * z_row.segment(h * d, d).transpose()).cwiseProduct(scale).norm();
    return norms;
  }

  /// |a[p, k]| || W2[:, k] .* scale || for every neuron of layer l.
  VectorType neuron_norms(const VectorType& act_row, int l, const VectorType& scale) const {
    const RowMatrix<Scalar>& w2 = model_.weights().layers[static_cast<std::size_t>(l)].w2;
    const MatrixType scaled = scale.asDiagonal() * w2;
    return (act_row.cwiseAbs().array() * scaled.colwise().norm().transpose().array()).matrix();
  }

  /// f(x) - f(unit u zeroed) for the `units` units of `site` in layer l, `batch` per record.
  VectorType ablation_effects(const std::vector<int>& ids, const Objective& objective, Scalar clean, int l, Site site,
                              Eigen::Index units, Eigen::Index width, Eigen::Index batch) const {
    const MatrixType x0 = model_.embed(ids);
    const Eigen::Index N = x0.rows();
    VectorType effects(units);
    detail::for_each_record(units, detail::plan_records(batch, N), [&](Eigen::Index, Eigen::Index first, Eigen::Index count) {
      Ablation ablation{l, site, {}, {}};
      for (Eigen::Index k = 0; k < count; ++k) ablation.columns.push_back({(first + k) * width, width});
      // Only the objective is read: the last MLP runs at its position alone (RecordScope).
      const VectorType f = model_.objective_values(
          model_.record(x0.replicate(count, 1), N, ablation, RecordScope::at(objective.position)), objective);
      effects.segment(first, count) = VectorType::Constant(count, clean) - f;
    });
    return effects;
  }

  const Model<Scalar>& model_;
};

}  // namespace depass
