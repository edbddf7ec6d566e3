#pragma once
// The result of an attribution method (methods/TokenAttributor.hpp,
// methods/ComponentAttributor.hpp): one score per position (tokens), per head of every
// layer, or per neuron of a layer, with the method, the level and the objective recorded.

#include <Eigen/Core>
#include <limits>
#include <string>
#include <vector>

#include "../Objective.hpp"
#include "../Weights.hpp"
#include "Method.hpp"

namespace depass {

template <typename Scalar>
struct Attribution {
  Method method = Method::DePass;
  Level level = Level::Tokens;
  Objective objective;
  Vector<Scalar> scores;            // tokens: N; heads: L*H, layer-major (l*H + h); neurons: I
  std::vector<std::string> labels;  // one per score: "pos 3", "L1.H2", "L1.N40"
  int layer = -1;                   // neurons: their layer
  double value = std::numeric_limits<double>::quiet_NaN();  // f(x) where the method computed it
  // Integrated gradients: f(baseline) and the completeness gap sum(scores) - (f(x) - f(baseline)).
  double baseline_value = std::numeric_limits<double>::quiet_NaN();
  double completeness_gap = std::numeric_limits<double>::quiet_NaN();
  // DePass: the scores of components that are no input position (learned positions, the
  // bias component); with `scores` they sum to the objective.
  std::vector<std::string> extra_labels;
  std::vector<double> extra_scores;

  /// Score of head h of layer l (heads level).
  Scalar head(int l, int h, int heads) const { return scores(static_cast<Eigen::Index>(l) * heads + h); }
};

}  // namespace depass
