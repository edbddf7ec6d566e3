#pragma once
// Reading tests/golden/gradients_<model>.json (tools/reference/make_gradient_goldens.py):
// the model, the ids, and each case's objective. Shared by the gradient and method tests.

#include <depass/Model.hpp>
#include <depass/Objective.hpp>
#include <depass/io/Load.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <type_traits>
#include <vector>

#include "support/Goldens.hpp"
#include "support/TestSupport.hpp"

namespace depass::test {

/// Relative tolerance for a method's scores against the gradient goldens: 1e-9 in double,
/// 1e-4 in float (the largest float error seen is 6e-5, IG from the zero baseline;
/// occlusion and ablation, which subtract two objective values, 2e-5).
template <typename Scalar>
double method_tolerance() {
  return std::is_same<Scalar, float>::value ? 1e-4 : 1e-9;
}

/// The synthetic families (tests/data/families), every one with gradient goldens.
inline const std::vector<std::string>& gradient_families() { return family_names(); }

inline nlohmann::json read_gradient_golden(const std::string& name) {
  std::ifstream in(golden_path("gradients_" + name + ".json"));
  if (!in) throw std::runtime_error("cannot read golden gradients_" + name + ".json");
  return nlohmann::json::parse(in);
}

/// Full path of the golden's model: tests/data/... for the families, the models directory otherwise.
inline std::string gradient_model_path(const nlohmann::json& golden) {
  const std::string relative = golden["model"];
  return golden["source"] == "data" ? source_dir() + "/tests/data/" + relative : model_path(relative);
}

inline Objective golden_objective(const nlohmann::json& c) {
  const std::string kind = c["objective"];
  const Eigen::Index p = c["position"];
  const int target = c["target"];
  if (kind == "logit") return Objective::logit(p, target);
  if (kind == "logprob") return Objective::logprob(p, target);
  return Objective::contrast(p, target, c["foil"].get<int>());
}

/// max |ours - golden| / max |golden| over a matrix given as a list of rows (or a flat list).
template <typename Derived>
double relative_error(const Eigen::MatrixBase<Derived>& ours, const nlohmann::json& golden) {
  const bool nested = golden.size() > 0 && golden[0].is_array();
  const Eigen::Index rows = nested ? static_cast<Eigen::Index>(golden.size()) : 1;
  const Eigen::Index cols = nested ? static_cast<Eigen::Index>(golden[0].size()) : static_cast<Eigen::Index>(golden.size());
  if (ours.rows() * ours.cols() != rows * cols) return std::numeric_limits<double>::infinity();
  double worst = 0, scale = 0;
  for (Eigen::Index i = 0; i < rows; ++i)
    for (Eigen::Index j = 0; j < cols; ++j) {
      const double g = nested ? golden[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)].get<double>()
                              : golden[static_cast<std::size_t>(j)].get<double>();
      const double o = nested ? static_cast<double>(ours(i, j))
                              : static_cast<double>(ours(ours.rows() == 1 ? 0 : j, ours.rows() == 1 ? j : 0));
      worst = std::max(worst, std::abs(o - g));
      scale = std::max(scale, std::abs(g));
    }
  return scale > 0 ? worst / scale : worst;
}

}  // namespace depass::test
