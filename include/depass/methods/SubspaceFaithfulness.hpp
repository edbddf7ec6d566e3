#pragma once
// The subspace protocol of issue #15: a linear probe (methods/LinearProbe.hpp) reads a
// concept (e.g. "the model will say she") from the hidden state at a boundary, at the last
// position; its weight vector w is the concept's direction. A method ranks the input tokens
// by how much they feed that direction:
//   depass       the projection w . c_i of token i's DePass component at the boundary
//                (the components plus the bias's sum to the state: sum_i w . c_i + the
//                rest = logit - b exactly);
//   grad-norm    || d logit / d x0[i] ||;
//   input-x-grad x0[i] . d logit / d x0[i];
//   ig           integrated gradients of the probe logit (zero baseline unless given);
//   occlusion    logit(x0) - logit(x0 with token i's embedding zeroed).
// Signed scores are oriented towards the class the probe gives the full ids (multiplied by
// -1 when that is class 0), so the top tokens are the ones that support its decision. Then
// the token curves (methods/TokenFaithfulness.hpp) run on the probe instead of the target:
// the probability of that class after deleting (or replacing) the top p%, and after
// keeping only them; the sample score is how far it moved.

#include <Eigen/Core>
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "../Decomposer.hpp"
#include "../Model.hpp"
#include "../detail/Quadrature.hpp"
#include "FaithfulnessMetrics.hpp"
#include "LinearProbe.hpp"
#include "TokenAttributor.hpp"
#include "TokenFaithfulness.hpp"

namespace depass {

template <typename Scalar>
struct SubspaceOptions : CurveOptions<Scalar> {};  // IG's baseline must cover every position;
                                                   // DePass's `end` and `keep_positions` are set here

template <typename Scalar>
class SubspaceFaithfulness {
 public:
  using MatrixType = Matrix<Scalar>;
  using VectorType = Vector<Scalar>;

  /// The probe reads the state at `boundary` (before an attention or MLP block; not the
  /// output), last position. The model must outlive this object.
  SubspaceFaithfulness(const Model<Scalar>& model, Boundary boundary, LinearProbe<Scalar> probe,
                       SubspaceOptions<Scalar> options = {})
      : model_(model), boundary_(boundary), probe_(std::move(probe)), options_(std::move(options)) {
    index_ = boundary_index(model_, boundary_);
    if (probe_.weights.size() != model_.config().dim)
      throw std::invalid_argument("probe has " + std::to_string(probe_.weights.size()) + " weights, the model's dim is " +
                                  std::to_string(model_.config().dim));
    faithfulness::check_percents(options_.percents);
    faithfulness::check_replacement(options_.replacement, model_.config().vocab_size);
  }

  /// The state at `boundary`, last position, of each id sequence: the probe's training rows.
  static MatrixType features(const Model<Scalar>& model, const std::vector<std::vector<int>>& sequences, Boundary boundary) {
    const int b = boundary_index(model, boundary);
    MatrixType rows(static_cast<Eigen::Index>(sequences.size()), model.config().dim);
    for (std::size_t i = 0; i < sequences.size(); ++i) {
      const Tape<Scalar> tape = model.record(model.embed(sequences[i]));
      rows.row(static_cast<Eigen::Index>(i)) = tape.residual(b).bottomRows(1);
    }
    return rows;
  }

  const LinearProbe<Scalar>& probe() const { return probe_; }

  /// The probe's logit w . h + b on ids.
  Scalar logit(const std::vector<int>& ids) const {
    return probe_.logit(model_.record(model_.embed(ids)).residual(index_).bottomRows(1));
  }

  /// `method`'s score per position for the probe's logit, oriented towards the class the
  /// probe gives ids (grad-norm is unsigned and left as it is).
  VectorType scores(Method method, const std::vector<int>& ids) const {
    model_.check_tokens(ids);
    const Scalar orientation = logit(ids) >= 0 ? Scalar(1) : Scalar(-1);
    switch (method) {
      case Method::DePass: return orientation * depass_projections(ids).head(static_cast<Eigen::Index>(ids.size()));
      case Method::GradNorm: return gradient(model_.embed(ids)).rowwise().norm();
      case Method::InputXGrad: {
        const MatrixType x0 = model_.embed(ids);
        return orientation * x0.cwiseProduct(gradient(x0)).rowwise().sum();
      }
      case Method::IntegratedGradients: return orientation * integrated_gradients(ids);
      case Method::Occlusion: return orientation * occlusion(ids);
      default: break;
    }
    throw std::invalid_argument("method '" + std::string(to_string(method)) +
                                "' is not available for the subspace protocol (allowed: depass, grad-norm, "
                                "input-x-grad, ig, occlusion)");
  }

  /// w . c_m for every DePass component at the boundary (token components first, then
  /// the rest: learned positions, the bias); they sum to logit - b.
  VectorType depass_projections(const std::vector<int>& ids) const {
    DecomposeOptions o = options_.depass;
    o.end = Boundary::from_index(index_, model_.config().n_layers);
    o.keep_positions = {-1};
    const Decomposition<Scalar> d = Decomposer<Scalar>(model_).run(ids, Initialisation<Scalar>::tokens(), o);
    VectorType out(d.component_count());
    for (Eigen::Index m = 0; m < out.size(); ++m) out(m) = d.row(m, d.positions() - 1).dot(probe_.weights.transpose());
    return out;
  }

  /// One sample under each method; the curves follow the probability of the class the probe
  /// gives the full ids.
  std::vector<TokenCurveSample> evaluate(const std::vector<int>& ids, const std::vector<Method>& methods) const {
    check_sample(ids);
    detail::ProbabilityCache cache;
    const int side = logit(ids) >= 0 ? 1 : 0;
    const auto class_p = [&](const std::vector<int>& edited) { return class_probability(edited, side); };
    const double p_clean = detail::cached(ids, cache, class_p);
    std::vector<TokenCurveSample> out;
    for (Method m : methods) {
      TokenCurveSample s = detail::edit_curves<Scalar>(ids, scores(m, ids), options_.percents, options_.replacement,
                                                       p_clean, cache, class_p);
      s.method = m;
      out.push_back(std::move(s));
    }
    return out;
  }

  /// The probe's probability of class `side` (0 or 1) on ids.
  double class_probability(const std::vector<int>& ids, int side) const {
    const double p1 = 1.0 / (1.0 + std::exp(-static_cast<double>(logit(ids))));
    return side == 1 ? p1 : 1.0 - p1;
  }

  /// d logit / d x0 (N x D) for embeddings x0 of S sequences of `sequence_length` stacked
  /// (0: one sequence), each read at its last position.
  MatrixType gradient(const MatrixType& x0, Eigen::Index sequence_length = 0) const {
    const Eigen::Index N = sequence_length > 0 ? sequence_length : x0.rows();
    const Tape<Scalar> tape = model_.record(x0, N);
    MatrixType dx = MatrixType::Zero(x0.rows(), x0.cols());
    for (Eigen::Index s = 0; s < x0.rows() / N; ++s) dx.row(s * N + N - 1) = probe_.weights.transpose();
    MatrixType d_output;  // parallel residual: the gradient wrt the layer's output, which its attention reads
    for (int block = index_ - 1; block >= 0; --block) {  // block 2l: attention of layer l; 2l+1: its MLP
      const int l = block / 2;
      const LayerTape<Scalar>& t = tape.layers[static_cast<std::size_t>(l)];
      if (block % 2) {
        if (model_.config().parallel_residual) d_output = dx;
        model_.mlp_block_backward(l, t, dx);
      } else {
        model_.attention_block_backward(l, t, dx, N, d_output.size() ? &d_output : nullptr);
        d_output.resize(0, 0);
      }
    }
    return dx;
  }

 private:
  static int boundary_index(const Model<Scalar>& model, const Boundary& boundary) {
    const int L = model.config().n_layers;
    if (boundary.is_output)
      throw std::invalid_argument("boundary 'output' is not probed here (allowed: before attention or mlp of layers 0.." +
                                  std::to_string(L - 1) + ")");
    model.check_layer(boundary.layer);
    return boundary.index(L);
  }

  VectorType integrated_gradients(const std::vector<int>& ids) const {
    const IgOptions<Scalar>& o = options_.ig;
    detail::check_batch(o.batch);
    const detail::QuadratureNodes q = detail::quadrature(o.rule, o.steps);
    const MatrixType x0 = model_.embed(ids);
    const Eigen::Index n = x0.rows();
    if (o.baseline.size() != 0 && (o.baseline.rows() != n || o.baseline.cols() != x0.cols()))
      throw std::invalid_argument("IG baseline is " + std::to_string(o.baseline.rows()) + " x " +
                                  std::to_string(o.baseline.cols()) + ", expected " + std::to_string(n) + " x " +
                                  std::to_string(x0.cols()) + " (positions x dim)");
    const MatrixType baseline = o.baseline.size() ? o.baseline : MatrixType::Zero(n, x0.cols());
    const MatrixType delta = x0 - baseline;
    const MatrixType total =
        detail::path_gradient_sum(baseline, delta, q, o.batch, [&](const MatrixType& path) { return gradient(path, n); });
    return delta.cwiseProduct(total).rowwise().sum();
  }

  VectorType occlusion(const std::vector<int>& ids) const {
    const MatrixType x0 = model_.embed(ids);
    const Eigen::Index n = x0.rows();
    const Embedding<Scalar> embedding = model_.embedding();
    const Scalar clean = logit(ids);
    VectorType scores(n);
    for (Eigen::Index i = 0; i < n; ++i) {
      MatrixType occluded = x0;
      if (embedding.learned_positions()) occluded.row(i) = embedding.positions(n).row(i);
      else occluded.row(i).setZero();
      scores(i) = clean - probe_.logit(model_.record(occluded).residual(index_).bottomRows(1));
    }
    return scores;
  }

  void check_sample(const std::vector<int>& ids) const {
    model_.check_tokens(ids);
    if (ids.size() < 2)
      throw std::invalid_argument("ids have " + std::to_string(ids.size()) +
                                  " token: a sample needs BOS and at least one more token");
  }

  const Model<Scalar>& model_;
  Boundary boundary_;
  LinearProbe<Scalar> probe_;
  SubspaceOptions<Scalar> options_;
  int index_ = 0;
};

}  // namespace depass
