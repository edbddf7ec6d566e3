#pragma once
// Weights must be finite. A checkpoint holding a NaN or an infinity loads "fine" and then
// turns every logit into NaN far from the cause, so loaders refuse it, naming the tensor
// and the element. (A float64 value beyond the float range becomes inf when loaded as
// float and is refused the same way.) One vectorised pass per tensor: cheap next to reading
// it from disk. (Eigen 3.4's allFinite() compares element by element, not in packets: it
// took 29% of loading a 110 MB checkpoint.)

#include <Eigen/Core>
#include <cmath>
#include <string>

#include "../../Error.hpp"

namespace depass {
namespace detail {

/// FormatError "<file>: <tensor> holds a non-finite value (nan) at [r, c]" unless every
/// element of m is finite. `tensor` names it as the file does, e.g. "tensor 'lm_head.weight'".
template <typename Derived>
void require_finite(const Eigen::DenseBase<Derived>& m, const std::string& file,
                    const std::string& tensor) {
  // x * 0 is 0 for finite x and NaN for inf and NaN, so the sum is 0 exactly when every
  // element is finite; a packet multiply-add, unlike allFinite().
  using Scalar = typename Derived::Scalar;
  if ((m.derived().array() * Scalar(0)).sum() == Scalar(0)) return;
  for (Eigen::Index r = 0; r < m.rows(); ++r)
    for (Eigen::Index c = 0; c < m.cols(); ++c) {
      const auto v = m(r, c);
      if (std::isfinite(v)) continue;
      const std::string value = std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
      const std::string at = m.cols() == 1 ? "[" + std::to_string(r) + "]"
                                           : "[" + std::to_string(r) + ", " + std::to_string(c) + "]";
      throw FormatError(file + ": " + tensor + " holds a non-finite value (" + value + ") at " +
                        at + "; weights must be finite");
    }
}

}  // namespace detail
}  // namespace depass
