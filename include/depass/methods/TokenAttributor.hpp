#pragma once
// Token-level baseline attribution methods (docs/methods.md): one score per input position
// for an objective read at position p. Attention weights and rollout read the probabilities
// the real pass computes; gradient methods run Model::record + Model::backward, integrated
// gradients and occlusion as batches of sequences (one set of products per batch). Every
// method runs on the prefix ids[0..p] only: the objective at p cannot see later positions
// (causal mask), so their scores are exactly zero.

#include <Eigen/Core>
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "../Decomposer.hpp"
#include "../Model.hpp"
#include "../detail/Batching.hpp"
#include "../detail/Quadrature.hpp"
#include "Attribution.hpp"

namespace depass {

/// Integrated gradients: the path x' + alpha (x0 - x') from a baseline x' to the embeddings.
template <typename Scalar>
struct IgOptions {
  int steps = 100;                              // quadrature nodes, >= 1
  Quadrature rule = Quadrature::Midpoint;
  Matrix<Scalar> baseline;                      // N x D embeddings (model.embed(other_ids), ...); empty: zeros
  Eigen::Index batch = 0;                       // path points per record (memory vs products), >= 1;
                                                // 0: automatic (detail::plan_records)
};

template <typename Scalar>
class TokenAttributor {
 public:
  using MatrixType = Matrix<Scalar>;
  using VectorType = Vector<Scalar>;

  /// The model must outlive the attributor.
  explicit TokenAttributor(const Model<Scalar>& model) : model_(model) {}

  /// The method by name (methods/Method.hpp); DePass and component methods are refused here.
  Attribution<Scalar> run(Method method, const std::vector<int>& ids, const Objective& objective,
                          const IgOptions<Scalar>& ig = {}) const {
    check_applies(method, Level::Tokens);
    switch (method) {
      case Method::DePass: return depass(ids, objective);
      case Method::AttentionLast: return attention_last(ids, objective);
      case Method::AttentionMean: return attention_mean(ids, objective);
      case Method::Rollout: return rollout(ids, objective);
      case Method::GradNorm: return grad_norm(ids, objective);
      case Method::InputXGrad: return input_x_grad(ids, objective);
      case Method::IntegratedGradients: return integrated_gradients(ids, objective, ig);
      case Method::Occlusion: return occlusion(ids, objective);
      default: break;
    }
    throw std::invalid_argument("method '" + std::string(to_string(method)) + "' does not apply to tokens");
  }

  /// Token-level DePass (Decomposer, `options`): each token's share of the logit, or of the
  /// logit difference for a contrast. A log-probability is not a sum of shares: refused.
  Attribution<Scalar> depass(const std::vector<int>& ids, const Objective& objective,
                             const DecomposeOptions& options = {}) const {
    model_.check_tokens(ids);
    objective.validate(static_cast<Eigen::Index>(ids.size()), model_.config().vocab_size);
    if (objective.kind == ObjectiveKind::LogProb)
      throw std::invalid_argument("objective 'logprob' is not decomposed by method 'depass' (allowed: logit, contrast)");
    const Decomposition<Scalar> d = Decomposer<Scalar>(model_).run(ids, Initialisation<Scalar>::tokens(), options);
    VectorType all = d.component_logits(objective.position, objective.target);
    if (objective.kind == ObjectiveKind::Contrast) all -= d.component_logits(objective.position, objective.foil);
    const Eigen::Index N = static_cast<Eigen::Index>(ids.size());
    Attribution<Scalar> a = result(Method::DePass, ids, objective, all.head(N));
    for (Eigen::Index m = N; m < all.size(); ++m) {
      a.extra_labels.push_back(d.labels()[static_cast<std::size_t>(m)]);
      a.extra_scores.push_back(static_cast<double>(all(m)));
    }
    return a;
  }

  /// mean over heads of the last layer's probabilities, query row p.
  Attribution<Scalar> attention_last(const std::vector<int>& ids, const Objective& objective) const {
    const Tape<Scalar> tape = prefix_tape(ids, objective);
    return result(Method::AttentionLast, ids, objective, head_mean_row(tape, model_.config().n_layers - 1, objective.position));
  }

  /// The same averaged over the layers.
  Attribution<Scalar> attention_mean(const std::vector<int>& ids, const Objective& objective) const {
    const Tape<Scalar> tape = prefix_tape(ids, objective);
    VectorType sum = VectorType::Zero(objective.position + 1);
    for (int l = 0; l < model_.config().n_layers; ++l) sum += head_mean_row(tape, l, objective.position);
    return result(Method::AttentionMean, ids, objective, sum / Scalar(model_.config().n_layers));
  }

  /// Abnar & Zuidema: row p of R = B_{L-1} ... B_0, B_l = 0.5 mean_h A_h + 0.5 I (rows
  /// renormalised). Computed from the left, r <- r B_l, so it costs L N^2, not L N^3.
  Attribution<Scalar> rollout(const std::vector<int>& ids, const Objective& objective) const {
    const Tape<Scalar> tape = prefix_tape(ids, objective);
    const Eigen::Index n = objective.position + 1;
    VectorType r = VectorType::Unit(n, objective.position);
    for (int l = model_.config().n_layers - 1; l >= 0; --l) {
      MatrixType B = Scalar(0.5) * head_mean(tape, l) + Scalar(0.5) * MatrixType::Identity(n, n);
      B.array().colwise() /= B.rowwise().sum().array();
      r = (r.transpose() * B).transpose();
    }
    return result(Method::Rollout, ids, objective, r);
  }

  /// || df/dx0[i] || per position.
  Attribution<Scalar> grad_norm(const std::vector<int>& ids, const Objective& objective) const {
    const Gradients<Scalar> g = gradient(ids, objective);
    Attribution<Scalar> a = result(Method::GradNorm, ids, objective, g.embeddings.rowwise().norm());
    a.value = static_cast<double>(g.values(0));
    return a;
  }

  /// x0[i] . df/dx0[i] per position.
  Attribution<Scalar> input_x_grad(const std::vector<int>& ids, const Objective& objective) const {
    const MatrixType x0 = prefix_embeddings(ids, objective);
    const Gradients<Scalar> g = model_.backward(objective_tape(x0, x0.rows(), objective), objective);
    Attribution<Scalar> a = result(Method::InputXGrad, ids, objective, x0.cwiseProduct(g.embeddings).rowwise().sum());
    a.value = static_cast<double>(g.values(0));
    return a;
  }

  /// score_i = sum_d (x0 - x')[i, d] sum_k w_k df/dx[i, d](x' + alpha_k (x0 - x')), with the
  /// completeness gap sum_i score_i - (f(x0) - f(x')) reported.
  Attribution<Scalar> integrated_gradients(const std::vector<int>& ids, const Objective& objective,
                                           const IgOptions<Scalar>& options = {}) const {
    detail::check_batch(options.batch);
    const detail::QuadratureNodes q = detail::quadrature(options.rule, options.steps);
    const MatrixType x0 = prefix_embeddings(ids, objective);
    const MatrixType baseline = prefix_baseline(options.baseline, x0, ids.size());
    const MatrixType delta = x0 - baseline;
    const Eigen::Index n = x0.rows();
    const MatrixType total = detail::path_gradient_sum(baseline, delta, q, options.batch, [&](const MatrixType& path) {
      return MatrixType(model_.backward(objective_tape(path, n, objective), objective).embeddings);
    });
    Attribution<Scalar> a = result(Method::IntegratedGradients, ids, objective, delta.cwiseProduct(total).rowwise().sum());
    MatrixType ends(2 * n, x0.cols());
    ends << x0, baseline;
    const VectorType f = model_.objective_values(objective_tape(ends, n, objective), objective);
    a.value = static_cast<double>(f(0));
    a.baseline_value = static_cast<double>(f(1));
    a.completeness_gap = static_cast<double>(a.scores.sum()) - (a.value - a.baseline_value);
    return a;
  }

  /// f(x0) - f(x0 with token i's embedding replaced by zeros) for i <= p; a learned position
  /// vector (GPT-2) stays, since it belongs to the position, not to the token.
  /// `batch` occluded sequences per record (0: detail::plan_records' choice).
  Attribution<Scalar> occlusion(const std::vector<int>& ids, const Objective& objective, Eigen::Index batch = 0) const {
    detail::check_batch(batch);
    const MatrixType x0 = prefix_embeddings(ids, objective);
    const Eigen::Index n = x0.rows();
    const Embedding<Scalar> embedding = model_.embedding();
    const Scalar f = model_.objective_values(objective_tape(x0, n, objective), objective)(0);
    VectorType scores(n);
    detail::for_each_record(n, detail::plan_records(batch, n), [&](Eigen::Index, Eigen::Index first, Eigen::Index count) {
      MatrixType occluded = x0.replicate(count, 1);
      for (Eigen::Index k = 0; k < count; ++k) {
        const Eigen::Index i = first + k;
        if (embedding.learned_positions()) occluded.row(k * n + i) = embedding.positions(n).row(i);
        else occluded.row(k * n + i).setZero();
      }
      scores.segment(first, count) =
          VectorType::Constant(count, f) - model_.objective_values(objective_tape(occluded, n, objective), objective);
    });
    Attribution<Scalar> a = result(Method::Occlusion, ids, objective, scores);
    a.value = static_cast<double>(f);
    return a;
  }

 private:
  /// Embeddings of ids[0..p] after checking the ids and the objective.
  MatrixType prefix_embeddings(const std::vector<int>& ids, const Objective& objective) const {
    model_.check_tokens(ids);
    objective.validate(static_cast<Eigen::Index>(ids.size()), model_.config().vocab_size);
    return model_.embed(std::vector<int>(ids.begin(), ids.begin() + objective.position + 1));
  }

  Tape<Scalar> prefix_tape(const std::vector<int>& ids, const Objective& objective) const {
    return model_.record(prefix_embeddings(ids, objective));
  }

  Gradients<Scalar> gradient(const std::vector<int>& ids, const Objective& objective) const {
    const MatrixType x0 = prefix_embeddings(ids, objective);
    return model_.backward(objective_tape(x0, x0.rows(), objective), objective);
  }

  /// A record of x (sequences of n positions) for methods that read only the objective: the
  /// last layer's MLP runs at its position alone (RecordScope), the same values for less work.
  Tape<Scalar> objective_tape(const MatrixType& x, Eigen::Index n, const Objective& objective) const {
    return model_.record(x, n, {}, RecordScope::at(objective.position));
  }

  MatrixType prefix_baseline(const MatrixType& baseline, const MatrixType& x0, std::size_t positions) const {
    if (baseline.size() == 0) return MatrixType::Zero(x0.rows(), x0.cols());
    if (baseline.rows() != static_cast<Eigen::Index>(positions) || baseline.cols() != x0.cols())
      throw std::invalid_argument("IG baseline is " + std::to_string(baseline.rows()) + " x " +
                                  std::to_string(baseline.cols()) + ", expected " + std::to_string(positions) + " x " +
                                  std::to_string(x0.cols()) + " (positions x dim)");
    return baseline.topRows(x0.rows());
  }

  /// mean_h A_h of layer l (n x n) for a one-sequence tape.
  MatrixType head_mean(const Tape<Scalar>& tape, int l) const {
    const MatrixType& probs = tape.layers[static_cast<std::size_t>(l)].attention.probs;
    const Eigen::Index n = probs.cols(), H = model_.config().n_heads;
    MatrixType mean = MatrixType::Zero(n, n);
    for (Eigen::Index h = 0; h < H; ++h) mean += probs.middleRows(h * n, n);
    return mean / Scalar(H);
  }

  VectorType head_mean_row(const Tape<Scalar>& tape, int l, Eigen::Index p) const {
    return head_mean(tape, l).row(p).transpose();
  }

  /// Scores of the prefix, padded with zeros to every position.
  Attribution<Scalar> result(Method method, const std::vector<int>& ids, const Objective& objective,
                             const VectorType& prefix_scores) const {
    Attribution<Scalar> a;
    a.method = method;
    a.level = Level::Tokens;
    a.objective = objective;
    a.scores = VectorType::Zero(static_cast<Eigen::Index>(ids.size()));
    a.scores.head(prefix_scores.size()) = prefix_scores;
    for (std::size_t i = 0; i < ids.size(); ++i) a.labels.push_back("pos " + std::to_string(i));
    return a;
  }

  const Model<Scalar>& model_;
};

}  // namespace depass
