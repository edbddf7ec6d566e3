#pragma once
// LogitTrace: every component's logit for a target at every layer boundary of a
// decomposed pass -- the "logit lens" applied to each component.
//
// At boundary b the real state x_b is not yet final-normed. The lens reads it as if the
// network ended there: logit_b = final_norm(x_b) . u, with u the target's unembedding row
// (minus the foil's for a contrast). Freezing the final norm's scale at its value for the
// real state x_b (RMSNorm: 1 / rms(x_b); LayerNorm: 1 / std(x_b), each component centred
// first) makes the norm linear, so the lens splits over the components exactly as the
// decomposition's final readout does:
//     trace(b, m) = s_b * (gain .* c_m,b) . u    (+ final-norm offset . u for the bias component)
//     sum_m trace(b, m) = logit_b,
// and at the output boundary trace(b, m) is the decomposition's final score of m. With a
// final logit soft cap (Gemma 2) each token's share is also scaled by the cap's frozen ratio
// for the real lens logit, as the decomposition's readout does (layers/Unembedding.hpp).
//
//   LogitTrace<double> trace(model, position, target);
//   auto result = Decomposer<double>(model).run(ids, init, options, trace.hook());
//   trace.scores();   // B x M: one row per boundary from the start of the decomposition
//
// The trace reads the hook's residual-stream events (start, attn_resid, layer_out), which
// carry the components. A chunked run makes several passes, each over other components;
// the trace refuses a second pass (std::logic_error) rather than mixing them.

#include <Eigen/Core>
#include <stdexcept>
#include <string>
#include <vector>

#include "Decomposer.hpp"
#include "Model.hpp"

namespace depass {

template <typename Scalar>
class LogitTrace {
 public:
  using MatrixType = Matrix<Scalar>;
  using VectorType = Vector<Scalar>;

  /// Traces logit(target) - logit(foil) (foil = -1: logit(target)) at `position`.
  /// `bias_component` receives the final norm's offset; -1 means the last component of
  /// the tensor, which is where Decomposer keeps its bias component.
  LogitTrace(const Model<Scalar>& model, Eigen::Index position, int target, int foil = -1,
             Eigen::Index bias_component = -1)
      : model_(&model), position_(position), bias_component_(bias_component) {
    const int V = model.config().vocab_size;
    auto check_token = [&](int id, const char* what) {
      if (id < 0 || id >= V)
        throw std::invalid_argument(std::string(what) + " token id " + std::to_string(id) + " is out of range [0, " +
                                    std::to_string(V) + ")");
    };
    check_token(target, "target");
    if (foil != -1) check_token(foil, "foil");
    if (foil == target) throw std::invalid_argument("foil token id " + std::to_string(foil) + " equals the target");
    if (position < 0) throw std::invalid_argument("position " + std::to_string(position) + " must be >= 0");
    if (bias_component < -1) throw std::invalid_argument("bias_component " + std::to_string(bias_component) + " must be >= -1");
    terms_.push_back(make_term(target, Scalar(1)));
    if (foil >= 0) terms_.push_back(make_term(foil, Scalar(-1)));
  }

  /// A hook that records into this trace (which must outlive it).
  Hook<Scalar> hook() {
    return [this](const HookEvent<Scalar>& e) { record(e); };
  }

  /// Records a residual-stream event of a decomposed pass; other events are ignored.
  void record(const HookEvent<Scalar>& e) {
    if (e.components == nullptr || e.boundary < 0) return;
    const std::string name = e.name;
    if (name == "start" && !boundaries_.empty())
      throw std::logic_error("LogitTrace: a second decomposed pass started (a chunked run?); "
                             "trace an unchunked run, or clear() between runs");
    const ComponentTensor<Scalar>& C = *e.components;
    const Eigen::Index M = C.components(), N = C.positions();
    if (position_ >= N)
      throw std::invalid_argument("position " + std::to_string(position_) + " is out of range [0, " + std::to_string(N) + ")");
    if (!boundaries_.empty() && M != scores_.cols())
      throw std::logic_error("LogitTrace: the number of components changed during the pass");
    const Eigen::Index bias = bias_component_ < 0 ? M - 1 : bias_component_;
    if (bias >= M)
      throw std::invalid_argument("bias_component " + std::to_string(bias) + " is out of range [0, " + std::to_string(M) + ")");

    // The real state's final-norm scale at this boundary, frozen for every component.
    const MatrixType state_row = e.value.row(position_);
    VectorType scale;
    const MatrixType normed = model_->final_norm(state_row, &scale);
    const Scalar s = scale(0);
    const bool centred = model_->config().norm == NormKind::LayerNorm;
    const Unembedding<Scalar> out = model_->unembedding();
    VectorType row = VectorType::Zero(M);
    Scalar lens = 0;
    for (const Term& t : terms_) {
      const Scalar z = normed.row(0).dot(t.direction.transpose());
      const Scalar weight = t.sign * out.frozen_ratio(z), gained_sum = t.gained_direction.sum();
      for (Eigen::Index m = 0; m < M; ++m) {
        const auto c = C.stacked().row(m * N + position_);
        Scalar v = c.dot(t.gained_direction.transpose());
        if (centred) v -= c.mean() * gained_sum;
        row(m) += weight * s * v;
      }
      row(bias) += weight * t.offset;
      lens += t.sign * out.cap(z);
    }

    const Eigen::Index B = scores_.rows();
    scores_.conservativeResize(B + 1, M);
    scores_.row(B) = row.transpose();
    lens_.conservativeResize(B + 1);
    lens_(B) = lens;
    boundaries_.push_back(e.boundary);
  }

  /// Forgets what was recorded (to trace another run).
  void clear() {
    boundaries_.clear();
    scores_.resize(0, 0);
    lens_.resize(0);
  }

  /// Boundary index (Boundary::index) of each recorded row, in pass order.
  const std::vector<int>& boundaries() const { return boundaries_; }
  /// B x M: component m's lens logit (difference) at the b-th recorded boundary.
  const MatrixType& scores() const { return scores_; }
  /// B: the lens logit (difference) of the real state at each boundary; row sums of scores().
  const VectorType& lens() const { return lens_; }
  /// "before attention 0", ..., "output" for each recorded row.
  std::vector<std::string> boundary_names() const {
    std::vector<std::string> names;
    for (int b : boundaries_) names.push_back(Boundary::from_index(b, model_->config().n_layers).to_string());
    return names;
  }
  Eigen::Index position() const { return position_; }

 private:
  const Model<Scalar>* model_;
  Eigen::Index position_;
  Eigen::Index bias_component_;
  /// One token's logit, signed: the target (+1) and the foil (-1), if any.
  struct Term {
    VectorType direction;         // u: the token's unembedding row
    VectorType gained_direction;  // gain .* u
    Scalar offset = 0;            // final-norm offset . u
    Scalar sign = 1;
  };
  Term make_term(int token, Scalar sign) const {
    Term t;
    t.direction = model_->weights().unembedding().row(token).transpose();
    t.gained_direction = model_->weights().final_norm.cwiseProduct(t.direction);
    t.offset = model_->weights().final_norm_bias.size() ? model_->weights().final_norm_bias.dot(t.direction) : Scalar(0);
    t.sign = sign;
    return t;
  }
  std::vector<Term> terms_;
  std::vector<int> boundaries_;
  MatrixType scores_;
  VectorType lens_;
};

}  // namespace depass
