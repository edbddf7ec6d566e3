#pragma once
// The rules of the token-level faithfulness metrics (issue #15), exactly as the reference
// tools/faithfulness/metrics.py states them (docs/faithfulness-data.md):
//   candidates  positions 1..N-1 of the ids (position 0, BOS, is never selected);
//   ranking     candidates by score, highest first, equal scores: lower position first;
//               a NaN score is an error;
//   k(p)        ceil(p * M / 100) for an integer percent p in 1..100 and M candidates;
//   disrupt     the top-k candidates deleted (or replaced by a chosen id, positions kept);
//   recover     only BOS and the top-k kept (or the others replaced);
//   keep_last   the paper's protocol (../shared/docs/depass-method.md, section 7), an
//               option: the last position is no candidate either, and recover keeps it;
//   score       min(100, |p_clean - p_new| / p_clean * 100) per sample;
//   curve, AUC  the mean score per percent; trapezoids over p, divided by the p range
//               (for p = 10..100: over p/100 in [0.1, 1], divided by 0.9);
//   evidence    top-1 evidence accuracy: the share of samples with evidence whose
//               first-ranked candidate is an evidence position (EvidenceAccuracy.hpp).

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace depass {
namespace faithfulness {

/// The percents of the curves: 10, 20, ..., 100.
inline std::vector<int> default_percents() {
  std::vector<int> p;
  for (int v = 10; v <= 100; v += 10) p.push_back(v);
  return p;
}

/// Throws std::invalid_argument unless p is a percent in [1, 100].
inline void check_percent(int p) {
  if (p < 1 || p > 100) throw std::invalid_argument("percent " + std::to_string(p) + " is out of range [1, 100]");
}

/// Throws std::invalid_argument unless percents is non-empty, strictly increasing, in [1, 100].
inline void check_percents(const std::vector<int>& percents) {
  if (percents.empty()) throw std::invalid_argument("percents is empty: a curve needs at least one percent");
  for (std::size_t i = 0; i < percents.size(); ++i) {
    check_percent(percents[i]);
    if (i > 0 && percents[i] <= percents[i - 1])
      throw std::invalid_argument("percents must be strictly increasing (entry " + std::to_string(i) + ")");
  }
}

/// Throws std::invalid_argument unless replacement is -1 (delete) or an id in [0, vocab).
inline void check_replacement(int replacement, int vocab) {
  if (replacement < -1 || replacement >= vocab)
    throw std::invalid_argument("replacement id " + std::to_string(replacement) + " is out of range [0, " +
                                std::to_string(vocab) + ") (-1: delete)");
}

/// Tokens selected at p percent of M candidates: ceil(p * M / 100), in integers.
inline long k_for(int p, long candidates) {
  check_percent(p);
  if (candidates < 0) throw std::invalid_argument("candidates = " + std::to_string(candidates) + " must be >= 0");
  return (p * candidates + 99) / 100;
}

/// Per-sample score: min(100, |p_clean - p_new| / p_clean * 100); p_clean must be > 0 and
/// both finite probabilities.
inline double sample_score(double p_clean, double p_new) {
  if (!(p_clean > 0) || !std::isfinite(p_clean))
    throw std::invalid_argument("p_clean = " + std::to_string(p_clean) + " must be a finite number > 0");
  if (!std::isfinite(p_new)) throw std::invalid_argument("p_new = " + std::to_string(p_new) + " must be finite");
  return std::min(100.0, std::abs(p_clean - p_new) / p_clean * 100.0);
}

/// softmax(logits)[target], computed in double (stable: shifted by the peak).
template <typename Derived>
double target_probability(const Eigen::MatrixBase<Derived>& logits, int target) {
  const Eigen::VectorXd row = logits.template cast<double>().reshaped();
  if (target < 0 || target >= row.size())
    throw std::invalid_argument("target " + std::to_string(target) + " is out of range [0, " + std::to_string(row.size()) + ")");
  const double peak = row.maxCoeff();
  return std::exp(row(target) - peak - std::log((row.array() - peak).exp().sum()));
}

/// Candidate positions 1..size-1 (keep_last: 1..size-2) ranked by scores (index =
/// position; the BOS score is ignored), highest first, ties by lower position. A NaN
/// candidate score is refused.
template <typename Derived>
std::vector<long> ranking(const Eigen::MatrixBase<Derived>& scores, bool keep_last = false) {
  std::vector<long> order;
  for (Eigen::Index i = 1; i < scores.size() - (keep_last ? 1 : 0); ++i) {
    if (std::isnan(static_cast<double>(scores(i))))
      throw std::invalid_argument("attribution score at position " + std::to_string(i) + " is NaN");
    order.push_back(static_cast<long>(i));
  }
  std::stable_sort(order.begin(), order.end(), [&](long a, long b) { return scores(a) > scores(b); });
  return order;
}

/// Whether each position of a sequence of `size` ids is among the first k of `ranked`.
inline std::vector<char> selection_mask(const std::vector<long>& ranked, long k, std::size_t size) {
  std::vector<char> selected(size, 0);
  for (long r = 0; r < k && r < static_cast<long>(ranked.size()); ++r) selected[static_cast<std::size_t>(ranked[static_cast<std::size_t>(r)])] = 1;
  return selected;
}

/// The selected positions at p percent, ascending.
inline std::vector<long> selected(const std::vector<long>& ranked, int p) {
  std::vector<long> top(ranked.begin(), ranked.begin() + k_for(p, static_cast<long>(ranked.size())));
  std::sort(top.begin(), top.end());
  return top;
}

/// ids with the positions whose `drop` flag is set deleted (replacement < 0) or replaced by
/// `replacement` (positions kept).
inline std::vector<int> edit_ids(const std::vector<int>& ids, const std::vector<char>& drop, int replacement) {
  std::vector<int> out;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (!drop[i]) out.push_back(ids[i]);
    else if (replacement >= 0) out.push_back(replacement);
  }
  return out;
}

/// disrupt-top p%: the top-k candidates of `ranked` deleted (replacement < 0) or replaced.
inline std::vector<int> disrupt_ids(const std::vector<int>& ids, const std::vector<long>& ranked, int p,
                                    int replacement = -1) {
  return edit_ids(ids, selection_mask(ranked, k_for(p, static_cast<long>(ranked.size())), ids.size()), replacement);
}

/// recover-top p%: only BOS (keep_last: and the last position) and the top-k candidates
/// kept; the others deleted or replaced.
inline std::vector<int> recover_ids(const std::vector<int>& ids, const std::vector<long>& ranked, int p,
                                    int replacement = -1, bool keep_last = false) {
  std::vector<char> drop = selection_mask(ranked, k_for(p, static_cast<long>(ranked.size())), ids.size());
  for (std::size_t i = 0; i < drop.size(); ++i) drop[i] = i == 0 || (keep_last && i + 1 == drop.size()) ? 0 : !drop[i];
  return edit_ids(ids, drop, replacement);
}

/// Area under ys over xs by the trapezoid rule, divided by the width xs.back() - xs.front()
/// (a flat curve at y has area y; one point: its y). xs strictly increasing.
inline double normalised_area(const std::vector<double>& xs, const std::vector<double>& ys) {
  if (xs.empty() || xs.size() != ys.size())
    throw std::invalid_argument("curve has " + std::to_string(xs.size()) + " x and " + std::to_string(ys.size()) +
                                " y values: expected the same number, at least one");
  if (xs.size() == 1) return ys[0];
  double area = 0;
  for (std::size_t i = 0; i + 1 < xs.size(); ++i) {
    if (!(xs[i + 1] > xs[i])) throw std::invalid_argument("curve x values must be strictly increasing");
    area += (xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2;
  }
  return area / (xs.back() - xs.front());
}

/// Whether the first-ranked candidate of scores is one of the evidence positions; scores
/// need at least one candidate (size >= 2).
template <typename Derived>
bool top1_hit(const Eigen::MatrixBase<Derived>& scores, const std::vector<long>& evidence, bool keep_last = false) {
  const std::vector<long> ranked = ranking(scores, keep_last);
  if (ranked.empty()) throw std::invalid_argument("scores have " + std::to_string(scores.size()) + " entries: no candidate besides BOS");
  return std::find(evidence.begin(), evidence.end(), ranked.front()) != evidence.end();
}

}  // namespace faithfulness
}  // namespace depass
