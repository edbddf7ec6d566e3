#pragma once
// Top-1 evidence accuracy (issue #15, tools/faithfulness/metrics.py): the share of samples
// with evidence positions whose first-ranked candidate (methods/FaithfulnessMetrics.hpp:
// positions after BOS, highest score first, ties: lower position) is one of them; samples
// without evidence are not counted. Accumulated one sample at a time, so that a run can be
// resumed from saved hits.

#include <Eigen/Core>
#include <limits>
#include <vector>

#include "FaithfulnessMetrics.hpp"

namespace depass {

/// Top-1 evidence accuracy, accumulated sample by sample (samples without evidence are
/// not counted).
class EvidenceAccuracy {
 public:
  /// keep_last: the paper's protocol, the last position is no candidate (FaithfulnessMetrics.hpp).
  explicit EvidenceAccuracy(bool keep_last = false) : keep_last_(keep_last) {}

  template <typename Derived>
  void add(const Eigen::MatrixBase<Derived>& scores, const std::vector<long>& evidence) {
    if (evidence.empty()) return;
    add_hit(faithfulness::top1_hit(scores, evidence, keep_last_));
  }
  /// The same for scores as a protocol's per-sample result holds them (TokenCurveSample::scores).
  void add(const std::vector<double>& scores, const std::vector<long>& evidence) {
    add(Eigen::Map<const Eigen::VectorXd>(scores.data(), static_cast<Eigen::Index>(scores.size())), evidence);
  }
  /// A sample with evidence whose hit was decided elsewhere (resuming from saved results).
  void add_hit(bool hit) {
    ++counted_;
    hits_ += hit ? 1 : 0;
  }
  long counted() const { return counted_; }
  long hits() const { return hits_; }
  /// hits / counted; NaN when no sample had evidence.
  double accuracy() const {
    return counted_ ? static_cast<double>(hits_) / static_cast<double>(counted_) : std::numeric_limits<double>::quiet_NaN();
  }

 private:
  bool keep_last_ = false;
  long counted_ = 0, hits_ = 0;
};

}  // namespace depass
