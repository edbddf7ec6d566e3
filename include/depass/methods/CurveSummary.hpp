#pragma once
// The mean curve of per-sample curves, accumulated one sample at a time (so that a run can
// stream its samples out and, resumed, feed the saved ones back in), and its normalised
// area (methods/FaithfulnessMetrics.hpp): the token curves over percents, the masking
// curves over k.

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "FaithfulnessMetrics.hpp"

namespace depass {

class CurveSummary {
 public:
  /// xs: where the curve is sampled (percents, k values), strictly increasing, non-empty.
  explicit CurveSummary(std::vector<double> xs) : xs_(std::move(xs)), sums_(xs_.size(), 0.0) {
    if (xs_.empty()) throw std::invalid_argument("xs is empty: a curve needs at least one point");
    for (std::size_t i = 0; i + 1 < xs_.size(); ++i)
      if (!(xs_[i + 1] > xs_[i])) throw std::invalid_argument("xs must be strictly increasing (entry " + std::to_string(i + 1) + ")");
  }
  /// Over integer points (percents, k grids).
  static CurveSummary over(const std::vector<int>& xs) { return CurveSummary(std::vector<double>(xs.begin(), xs.end())); }

  /// One sample's values, one per x, all finite.
  void add(const std::vector<double>& ys) {
    if (ys.size() != xs_.size())
      throw std::invalid_argument("sample curve has " + std::to_string(ys.size()) + " values, expected " +
                                  std::to_string(xs_.size()) + " (one per x)");
    for (std::size_t i = 0; i < ys.size(); ++i)
      if (!std::isfinite(ys[i])) throw std::invalid_argument("sample curve value " + std::to_string(i) + " is not finite");
    for (std::size_t i = 0; i < ys.size(); ++i) sums_[i] += ys[i];
    ++samples_;
  }

  const std::vector<double>& xs() const { return xs_; }
  long samples() const { return samples_; }
  /// The mean over samples at every x (NaN before the first sample).
  std::vector<double> mean() const {
    std::vector<double> m(xs_.size(), std::numeric_limits<double>::quiet_NaN());
    if (samples_ > 0)
      for (std::size_t i = 0; i < m.size(); ++i) m[i] = sums_[i] / static_cast<double>(samples_);
    return m;
  }
  /// The mean curve's trapezoid area divided by the x range (NaN before the first sample).
  double area() const {
    if (samples_ == 0) return std::numeric_limits<double>::quiet_NaN();
    return faithfulness::normalised_area(xs_, mean());
  }

 private:
  std::vector<double> xs_;
  std::vector<double> sums_;
  long samples_ = 0;
};

}  // namespace depass
