#pragma once
// The MLP split: how a neuron's output a[i,k] is shared among the components that drive
// its gate at position i (docs/method.md, "MLP block"). This file states each rule once,
// in plain scalar code; it is the specification. The engine's vectorised kernel
// (engine/SplitKernel.hpp) computes the same shares and is tested against split_neuron.

#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace depass {

/// How an MLP neuron's output is shared among the components that drive its gate.
enum class MlpSplit {
  Softmax,      ///< softmax over components of gate contribution / temperature (default)
  Argmax,       ///< whole neuron to the component with the largest gate contribution
  Proportional  ///< signed share g_m / g; softmax where the g_m nearly cancel (see below)
};

/// Proportional split: where |sum g_m| <= this * sum |g_m| the signed shares would exceed
/// 1/this in magnitude and rounding would break losslessness, so softmax is used there.
constexpr double kProportionalCancelRatio = 1e-3;

inline const char* to_string(MlpSplit split) {
  switch (split) {
    case MlpSplit::Softmax: return "softmax";
    case MlpSplit::Argmax: return "argmax";
    case MlpSplit::Proportional: return "proportional";
  }
  return "?";
}

inline MlpSplit parse_mlp_split(const std::string& name) {
  if (name == "softmax") return MlpSplit::Softmax;
  if (name == "argmax") return MlpSplit::Argmax;
  if (name == "proportional") return MlpSplit::Proportional;
  throw std::invalid_argument("mlp split '" + name + "' is unknown (allowed: softmax, argmax, proportional)");
}

/// A split rule and its parameter.
struct SplitRule {
  MlpSplit split = MlpSplit::Softmax;
  double temperature = 0.1;  // softmax (and the proportional rule's fallback), > 0
};

/// Shares neuron output `a` among `count` members with gate contributions g[0..count),
/// writing member i's share to share[i] (the shares sum to a). A member is eligible where
/// its contribution is not exactly zero: zero means the component is absent there (a later
/// token under the causal mask) or was excluded (the attention sink past position 0).
/// Returns false, with every share zero, when no member is eligible: the caller gives such
/// a neuron to the bias component.
template <typename Scalar>
bool split_neuron(const SplitRule& rule, const Scalar* g, Eigen::Index count, Scalar a, Scalar* share) {
  Scalar peak = -std::numeric_limits<Scalar>::infinity(), total = 0, magnitude = 0;
  Eigen::Index best = -1;
  for (Eigen::Index i = 0; i < count; ++i) {
    share[i] = 0;
    if (g[i] == Scalar(0)) continue;
    total += g[i];
    magnitude += std::abs(g[i]);
    if (g[i] > peak) {  // strictly: on ties the lowest member wins
      peak = g[i];
      best = i;
    }
  }
  if (best < 0) return false;
  if (rule.split == MlpSplit::Argmax) {
    share[best] = a;
    return true;
  }
  if (rule.split == MlpSplit::Proportional &&
      std::abs(total) > static_cast<Scalar>(kProportionalCancelRatio) * magnitude) {
    for (Eigen::Index i = 0; i < count; ++i)
      if (g[i] != Scalar(0)) share[i] = g[i] / total * a;
    return true;
  }
  const Scalar inv_t = Scalar(1) / static_cast<Scalar>(rule.temperature);
  Scalar norm = 0;
  for (Eigen::Index i = 0; i < count; ++i)
    if (g[i] != Scalar(0)) norm += share[i] = std::exp((g[i] - peak) * inv_t);
  for (Eigen::Index i = 0; i < count; ++i) share[i] = share[i] / norm * a;
  return true;
}

/// The attention sink (BOS, with DecomposeOptions::bos_sink) drives neurons only at its
/// own position: its gate contributions at later positions are excluded from the split,
/// i.e. set to zero (absent). rows: the sink's contributions at positions [from, ...).
template <typename Rows>
void exclude_sink(Rows&& rows, Eigen::Index from) {
  const Eigen::Index keep = from == 0 ? 1 : 0;
  if (rows.rows() > keep) rows.bottomRows(rows.rows() - keep).setZero();
}

}  // namespace depass
