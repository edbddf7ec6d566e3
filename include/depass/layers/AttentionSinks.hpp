#pragma once
// Attention sinks (docs/method.md, "Attention sink"): token components that drive MLP
// neurons only at their own position. BOS by identity (DecomposeOptions::bos_sink), and,
// with DecomposeOptions::sink_ratio, every position a layer's real attention treats as a
// sink, decided again before each MLP from the probabilities its attention froze.

#include <Eigen/Core>
#include <algorithm>
#include <utility>
#include <vector>

namespace depass {

/// A component that takes part in an MLP split only at its own position.
struct Sink {
  Eigen::Index component = 0;  // index in the component tensor
  Eigen::Index position = 0;   // the token's own position
};

/// A position needs this many later queries before its received attention says anything:
/// near the end of the prompt one query's copy head would otherwise make evidence a sink.
constexpr Eigen::Index kSinkMinQueries = 8;

/// The positions j that receive, on average over the H heads and over their later queries
/// i (at least kSinkMinQueries of them), at least `ratio` times uniform attention:
/// mean_i (i + 1) mean_h A_h[i, j] >= ratio. probs: (H*N) x N, head h in rows [h*N, (h+1)*N).
template <typename Probs>
std::vector<Eigen::Index> attention_sink_positions(const Probs& probs, Eigen::Index heads, double ratio) {
  const Eigen::Index N = probs.cols();
  std::vector<Eigen::Index> sinks;
  for (Eigen::Index j = 0; j + kSinkMinQueries < N; ++j) {
    double received = 0;
    for (Eigen::Index i = j + 1; i < N; ++i) {
      double a = 0;
      for (Eigen::Index h = 0; h < heads; ++h) a += static_cast<double>(probs(h * N + i, j));
      received += static_cast<double>(i + 1) * a / static_cast<double>(heads);
    }
    if (received / static_cast<double>(N - 1 - j) >= ratio) sinks.push_back(j);
  }
  return sinks;
}

/// Which components of a pass can be sinks: components [0, tokens) are the input tokens at
/// positions first_token + c (a token-level run or one chunk of it); other runs have none.
struct SinkPolicy {
  bool bos = false;               // the token at position 0 is a sink in every layer
  double ratio = 0;               // > 0: also the positions attention_sink_positions finds
  Eigen::Index first_token = 0;   // position of component 0
  Eigen::Index tokens = 0;        // token components in the pass

  bool from_attention() const { return ratio > 0 && tokens > 0; }

  /// The sinks every layer has (BOS, when it is in the pass).
  std::vector<Sink> fixed() const {
    if (bos && tokens > 0 && first_token == 0) return {Sink{0, 0}};
    return {};
  }

  /// The sinks of the MLP after an attention with these probabilities.
  template <typename Probs>
  std::vector<Sink> of_layer(const Probs& probs, Eigen::Index heads) const {
    std::vector<Sink> sinks = fixed();
    if (!from_attention()) return sinks;
    for (const Eigen::Index j : attention_sink_positions(probs, heads, ratio)) {
      const bool here = j >= first_token && j < first_token + tokens;
      if (here && !(j == 0 && !sinks.empty())) sinks.push_back(Sink{j - first_token, j});
    }
    return sinks;
  }
};

/// A sink's rows past its own position: rows hold positions [from, from + rows()), and
/// the rows to move start at `own + 1`. Returns {first row, count}.
inline std::pair<Eigen::Index, Eigen::Index> rows_past(Eigen::Index rows, Eigen::Index from, Eigen::Index own) {
  const Eigen::Index skip = std::min(rows, std::max<Eigen::Index>(0, own + 1 - from));
  return {skip, rows - skip};
}

/// The softmax, argmax and proportional rules' sink handling: the sink's gate contributions
/// past its own position leave the split (set to zero: absent).
template <typename Rows>
void exclude_sink(Rows&& rows, Eigen::Index from, Eigen::Index own) {
  const auto past = rows_past(rows.rows(), from, own);
  rows.middleRows(past.first, past.second).setZero();
}

/// The path rule's form: the sink's contributions past its own position join the bias
/// component's (bias_rows: the same positions as rows), so the shares they earn go to the
/// bias and the split stays exact. Why: there the sink's content is what attention to it
/// adds everywhere, a near-constant offset, not evidence.
template <typename Rows, typename BiasRows>
void merge_sink_into_bias(Rows&& rows, BiasRows&& bias_rows, Eigen::Index from, Eigen::Index own) {
  const auto past = rows_past(rows.rows(), from, own);
  bias_rows.middleRows(past.first, past.second) += rows.middleRows(past.first, past.second);
  rows.middleRows(past.first, past.second).setZero();
}

}  // namespace depass
