#pragma once
// The token-level faithfulness protocols of issue #15 (rules: methods/FaithfulnessMetrics.hpp,
// reference tools/faithfulness/metrics.py): for one sample (ids with BOS first, and the
// target the model predicts after them), a method's scores rank the input tokens; then
//   disrupt-top p%  deletes the top p% (or replaces them by a chosen id) and
//   recover-top p%  keeps only BOS and the top p%,
// and the target's probability after the edited ids gives the sample score at each p.
// A run evaluates its samples one by one and hands each result back, so a caller can
// write them as they come and resume; CurveSummary averages them into curves and areas,
// EvidenceAccuracy counts top-1 evidence hits.

#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../Model.hpp"
#include "FaithfulnessMetrics.hpp"
#include "TokenAttributor.hpp"

namespace depass {

/// What both curve protocols (tokens here, subspace in SubspaceFaithfulness.hpp) take.
template <typename Scalar>
struct CurveOptions {
  std::vector<int> percents = faithfulness::default_percents();  // strictly increasing, in [1, 100]
  int replacement = -1;     // -1: delete the edited tokens; else the id put in their place
  IgOptions<Scalar> ig;     // for Method::IntegratedGradients
  DecomposeOptions depass;  // for Method::DePass
};

/// The token curves' options: the common ones and the paper's last-token rule.
template <typename Scalar>
struct TokenFaithfulnessOptions : CurveOptions<Scalar> {
  /// The paper's protocol: the last token (the explained position) is never deleted and
  /// recover keeps it (methods/FaithfulnessMetrics.hpp). Off: issue #15's rules.
  bool keep_last = false;
};

/// One sample under one method.
struct TokenCurveSample {
  Method method = Method::DePass;
  std::vector<double> scores;  // attribution per position of ids (BOS's is not ranked)
  std::vector<long> ranking;   // candidate positions, best first
  double p_clean = std::numeric_limits<double>::quiet_NaN();  // the target's probability after ids
  std::vector<double> disrupt_probability;  // per percent: after disrupt-top p%
  std::vector<double> recover_probability;  // per percent: after recover-top p%
  std::vector<double> disrupt;              // per percent: the sample score (higher is better)
  std::vector<double> recover;              // per percent: the sample score (lower is better)
  std::string error;                        // non-empty: the sample could not be scored, and why

  bool ok() const { return error.empty(); }
};

namespace detail {

/// Probabilities of edited id sequences, each computed once.
using ProbabilityCache = std::map<std::vector<int>, double>;

template <typename Probability>
double cached(const std::vector<int>& ids, ProbabilityCache& cache, const Probability& probability) {
  const ProbabilityCache::const_iterator hit = cache.find(ids);
  if (hit != cache.end()) return hit->second;
  const double p = probability(ids);
  cache.emplace(ids, p);
  return p;
}

/// Ranking and both curves of one sample: `probability` maps edited ids to the probability
/// that the sample score compares with p_clean (the target's, or a probe's concept).
template <typename Scalar, typename Probability>
TokenCurveSample edit_curves(const std::vector<int>& ids, const Eigen::Ref<const Vector<Scalar>>& scores,
                             const std::vector<int>& percents, int replacement, double p_clean, ProbabilityCache& cache,
                             const Probability& probability, bool keep_last = false) {
  if (scores.size() != static_cast<Eigen::Index>(ids.size()))
    throw std::invalid_argument("scores have " + std::to_string(scores.size()) + " entries, expected one per id (" +
                                std::to_string(ids.size()) + ")");
  TokenCurveSample s;
  s.scores.assign(scores.data(), scores.data() + scores.size());
  s.ranking = faithfulness::ranking(scores, keep_last);
  s.p_clean = p_clean;
  if (!(p_clean > 0) || !std::isfinite(p_clean)) {
    s.error = "the probability on the full ids is " + std::to_string(p_clean) + ", not > 0";
    return s;
  }
  for (int p : percents) {
    const double d = cached(faithfulness::disrupt_ids(ids, s.ranking, p, replacement), cache, probability);
    const double r = cached(faithfulness::recover_ids(ids, s.ranking, p, replacement, keep_last), cache, probability);
    s.disrupt_probability.push_back(d);
    s.recover_probability.push_back(r);
    s.disrupt.push_back(faithfulness::sample_score(p_clean, d));
    s.recover.push_back(faithfulness::sample_score(p_clean, r));
  }
  return s;
}

}  // namespace detail

template <typename Scalar>
class TokenFaithfulness {
 public:
  using VectorType = Vector<Scalar>;

  /// The model must outlive this object.
  explicit TokenFaithfulness(const Model<Scalar>& model, TokenFaithfulnessOptions<Scalar> options = {})
      : model_(model), options_(std::move(options)) {
    faithfulness::check_percents(options_.percents);
    faithfulness::check_replacement(options_.replacement, model_.config().vocab_size);
  }

  const TokenFaithfulnessOptions<Scalar>& options() const { return options_; }

  /// The target's probability after ids: softmax of the last position's logits, in double.
  double probability(const std::vector<int>& ids, int target) const {
    check_target(target);
    return faithfulness::target_probability(model_.forward(ids, {}, true).row(0), target);
  }

  /// `method`'s score per position for the target's logit at the last position.
  VectorType scores(Method method, const std::vector<int>& ids, int target) const {
    check_sample(ids, target);
    const Objective objective = Objective::logit(static_cast<Eigen::Index>(ids.size()) - 1, target);
    const TokenAttributor<Scalar> attributor(model_);
    if (method == Method::DePass) return attributor.depass(ids, objective, options_.depass).scores;
    return attributor.run(method, ids, objective, options_.ig).scores;
  }

  /// One sample under each method: scores, ranking, both curves. Edited sequences that
  /// several methods (or percents) share run once.
  std::vector<TokenCurveSample> evaluate(const std::vector<int>& ids, int target, const std::vector<Method>& methods) const {
    check_sample(ids, target);
    for (Method m : methods) check_applies(m, Level::Tokens);
    Cache cache;
    const double p_clean = cached_probability(ids, target, cache);
    std::vector<TokenCurveSample> out;
    for (Method m : methods) {
      TokenCurveSample s = curves(ids, target, scores(m, ids, target), p_clean, cache);
      s.method = m;
      out.push_back(std::move(s));
    }
    return out;
  }

  /// The curves for scores from elsewhere (one per position of ids).
  TokenCurveSample curves(const std::vector<int>& ids, int target, const Eigen::Ref<const VectorType>& scores) const {
    check_sample(ids, target);
    Cache cache;
    return curves(ids, target, scores, cached_probability(ids, target, cache), cache);
  }

 private:
  using Cache = detail::ProbabilityCache;

  TokenCurveSample curves(const std::vector<int>& ids, int target, const Eigen::Ref<const VectorType>& scores,
                          double p_clean, Cache& cache) const {
    return detail::edit_curves<Scalar>(ids, scores, options_.percents, options_.replacement, p_clean, cache,
                                       [&](const std::vector<int>& edited) { return probability(edited, target); },
                                       options_.keep_last);
  }

  double cached_probability(const std::vector<int>& ids, int target, Cache& cache) const {
    return detail::cached(ids, cache, [&](const std::vector<int>& edited) { return probability(edited, target); });
  }

  void check_target(int target) const {
    const int V = model_.config().vocab_size;
    if (target < 0 || target >= V)
      throw std::invalid_argument("target " + std::to_string(target) + " is out of range [0, " + std::to_string(V) + ")");
  }

  void check_sample(const std::vector<int>& ids, int target) const {
    model_.check_tokens(ids);
    const std::size_t least = options_.keep_last ? 3 : 2;
    if (ids.size() < least)
      throw std::invalid_argument("ids have " + std::to_string(ids.size()) + " tokens: a sample needs BOS and at least " +
                                  (options_.keep_last ? "two more (keep_last: the last is no candidate)" : "one more token"));
    check_target(target);
  }

  const Model<Scalar>& model_;
  TokenFaithfulnessOptions<Scalar> options_;
};

}  // namespace depass
