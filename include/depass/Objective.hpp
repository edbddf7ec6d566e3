#pragma once
// The scalar a gradient or an attribution method explains: read from the logits at one
// position, the target's logit, its log-probability, or the difference of the target's
// and a foil's logits (docs/methods.md).

#include <Eigen/Core>
#include <cmath>
#include <stdexcept>
#include <string>

#include "Weights.hpp"

namespace depass {

enum class ObjectiveKind {
  Logit,    ///< logits[p, target]
  LogProb,  ///< log_softmax(logits[p])[target]
  Contrast  ///< logits[p, target] - logits[p, foil]
};

inline const char* to_string(ObjectiveKind kind) {
  switch (kind) {
    case ObjectiveKind::Logit: return "logit";
    case ObjectiveKind::LogProb: return "logprob";
    case ObjectiveKind::Contrast: return "contrast";
  }
  return "?";
}

struct Objective {
  ObjectiveKind kind = ObjectiveKind::Logit;
  Eigen::Index position = 0;  // p: the row of the logits read
  int target = 0;
  int foil = -1;  // Contrast only

  static Objective logit(Eigen::Index position, int target) { return {ObjectiveKind::Logit, position, target, -1}; }
  static Objective logprob(Eigen::Index position, int target) { return {ObjectiveKind::LogProb, position, target, -1}; }
  static Objective contrast(Eigen::Index position, int target, int foil) {
    return {ObjectiveKind::Contrast, position, target, foil};
  }

  /// Throws std::invalid_argument unless position is in [0, positions) and the ids in [0, vocab).
  void validate(Eigen::Index positions, int vocab) const {
    if (position < 0 || position >= positions)
      throw std::invalid_argument("objective position " + std::to_string(position) + " is out of range [0, " +
                                  std::to_string(positions) + ")");
    if (target < 0 || target >= vocab)
      throw std::invalid_argument("objective target " + std::to_string(target) + " is out of range [0, " +
                                  std::to_string(vocab) + ")");
    if (kind != ObjectiveKind::Contrast) return;
    if (foil < 0 || foil >= vocab)
      throw std::invalid_argument("objective foil " + std::to_string(foil) + " is out of range [0, " +
                                  std::to_string(vocab) + ")");
    if (foil == target)
      throw std::invalid_argument("objective foil " + std::to_string(foil) +
                                  " equals the target: a contrast needs two different tokens");
  }

  /// f of one row of logits (V).
  template <typename Scalar>
  Scalar value(const Eigen::Ref<const Vector<Scalar>>& logits) const {
    switch (kind) {
      case ObjectiveKind::Logit: return logits(target);
      case ObjectiveKind::LogProb: return logits(target) - log_sum_exp(logits);
      case ObjectiveKind::Contrast: return logits(target) - logits(foil);
    }
    return 0;
  }

  /// df/dlogits for one row (V): e_t; e_t - softmax(logits); e_t - e_foil.
  template <typename Scalar>
  Vector<Scalar> gradient(const Eigen::Ref<const Vector<Scalar>>& logits) const {
    Vector<Scalar> g = Vector<Scalar>::Zero(logits.size());
    if (kind == ObjectiveKind::LogProb) g = -(logits.array() - log_sum_exp(logits)).exp().matrix();
    g(target) += Scalar(1);
    if (kind == ObjectiveKind::Contrast) g(foil) -= Scalar(1);
    return g;
  }

 private:
  template <typename Scalar>
  static Scalar log_sum_exp(const Eigen::Ref<const Vector<Scalar>>& v) {
    const Scalar peak = v.maxCoeff();
    return peak + std::log((v.array() - peak).exp().sum());
  }
};

}  // namespace depass
