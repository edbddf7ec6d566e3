// Attention sinks (layers/AttentionSinks.hpp) on hand-computed cases: which positions the
// frozen attention makes sinks, which components they are in a pass, and how a sink's
// contributions past its own position leave the split or join the bias.

#include <catch2/catch.hpp>
#include <depass/layers/AttentionSinks.hpp>

#include <vector>

using namespace depass;

namespace {

/// N = 12, two heads, causal. Head 0 is uniform; head 1 gives position 1 half of every
/// later query's attention and spreads the other half uniformly (query 1 itself: uniform).
/// Relative to uniform, position 1 receives mean_i (0.75 + 0.25 (i + 1)) = 2.625 over
/// i = 2..11, position 0 (1 + 10 x 0.75) / 11 = 0.773, positions 2 and 3 0.75; positions
/// 4.. have fewer than 8 later queries.
Eigen::MatrixXd two_heads() {
  const Eigen::Index N = 12;
  Eigen::MatrixXd probs = Eigen::MatrixXd::Zero(2 * N, N);
  for (Eigen::Index i = 0; i < N; ++i) {
    const double uniform = 1.0 / static_cast<double>(i + 1);
    probs.row(i).head(i + 1).setConstant(uniform);
    probs.row(N + i).head(i + 1).setConstant(i >= 2 ? 0.5 * uniform : uniform);
    if (i >= 2) probs(N + i, 1) += 0.5;
  }
  return probs;
}

std::vector<Eigen::Index> positions(const std::vector<Sink>& sinks) {
  std::vector<Eigen::Index> out;
  for (const Sink& s : sinks) out.push_back(s.position);
  return out;
}

}  // namespace

TEST_CASE("attention_sink_positions: received attention against the ratio", "[layers]") {
  const Eigen::MatrixXd probs = two_heads();
  CHECK(attention_sink_positions(probs, 2, 2.6) == std::vector<Eigen::Index>{1});
  CHECK(attention_sink_positions(probs, 2, 2.65).empty());
  CHECK(attention_sink_positions(probs, 2, 0.76) == std::vector<Eigen::Index>{0, 1});
  // Below every mean, only the positions with 8 later queries qualify.
  CHECK(attention_sink_positions(probs, 2, 0.1) == std::vector<Eigen::Index>{0, 1, 2, 3});
  CHECK(attention_sink_positions(Eigen::MatrixXd(probs.topRows(12)), 1, 1.0) ==
        std::vector<Eigen::Index>{0, 1, 2, 3});  // uniform: exactly 1 everywhere
}

TEST_CASE("SinkPolicy: BOS and the attention's sinks among the pass's tokens", "[layers]") {
  const Eigen::MatrixXd probs = two_heads();
  SinkPolicy bos_only{true, 0, 0, 12};
  CHECK(positions(bos_only.of_layer(probs, 2)) == std::vector<Eigen::Index>{0});
  CHECK_FALSE(bos_only.from_attention());
  SinkPolicy both{true, 2.6, 0, 12};
  const std::vector<Sink> sinks = both.of_layer(probs, 2);
  REQUIRE(sinks.size() == 2);
  CHECK((sinks[1].component == 1 && sinks[1].position == 1));
  // BOS found by the attention too is listed once.
  CHECK(positions(SinkPolicy{true, 0.1, 0, 12}.of_layer(probs, 2)) == std::vector<Eigen::Index>{0, 1, 2, 3});
  CHECK(positions(SinkPolicy{false, 2.6, 0, 12}.of_layer(probs, 2)) == std::vector<Eigen::Index>{1});
  // A chunk of tokens 1 and 2 (members 0 and 1): BOS is elsewhere, position 1 is member 0.
  const std::vector<Sink> chunk = SinkPolicy{true, 2.6, 1, 2}.of_layer(probs, 2);
  REQUIRE(chunk.size() == 1);
  CHECK((chunk[0].component == 0 && chunk[0].position == 1));
  CHECK(SinkPolicy{true, 2.6, 2, 2}.of_layer(probs, 2).empty());
  CHECK(SinkPolicy{true, 2.6, 0, 0}.of_layer(probs, 2).empty());  // no token components
}

TEST_CASE("exclude_sink keeps the rows up to the sink's own position", "[layers]") {
  Eigen::MatrixXd rows = Eigen::MatrixXd::Ones(4, 3);
  exclude_sink(rows, 0, 0);
  CHECK(rows.row(0).sum() == 3);
  CHECK(rows.bottomRows(3).cwiseAbs().sum() == 0);
  Eigen::MatrixXd later = Eigen::MatrixXd::Ones(2, 3);
  exclude_sink(later, 5, 0);  // rows of positions 5 and 6: none is the sink's own
  CHECK(later.cwiseAbs().sum() == 0);
  Eigen::MatrixXd own = Eigen::MatrixXd::Ones(4, 3);
  exclude_sink(own, 2, 3);  // positions 2..5, the sink at 3: rows of 4 and 5 go
  CHECK(own.topRows(2).sum() == 6);
  CHECK(own.bottomRows(2).cwiseAbs().sum() == 0);
  Eigen::MatrixXd before = Eigen::MatrixXd::Ones(2, 3);
  exclude_sink(before, 2, 7);  // every row before the sink: kept
  CHECK(before.sum() == 6);
}

TEST_CASE("merge_sink_into_bias moves the sink's rows past its position to the bias", "[layers]") {
  Eigen::MatrixXd sink = Eigen::MatrixXd::Constant(4, 3, 2.0), bias = Eigen::MatrixXd::Ones(4, 3);
  merge_sink_into_bias(sink, bias, 0, 0);
  CHECK(sink.row(0).sum() == 6);
  CHECK(sink.bottomRows(3).cwiseAbs().sum() == 0);
  CHECK(bias.row(0).sum() == 3);
  CHECK(bias.bottomRows(3).sum() == 27);
  Eigen::MatrixXd later = Eigen::MatrixXd::Constant(2, 3, 2.0), later_bias = Eigen::MatrixXd::Zero(2, 3);
  merge_sink_into_bias(later, later_bias, 5, 0);
  CHECK(later.cwiseAbs().sum() == 0);
  CHECK(later_bias.sum() == 12);
  Eigen::MatrixXd mid = Eigen::MatrixXd::Constant(4, 3, 2.0), mid_bias = Eigen::MatrixXd::Zero(4, 3);
  merge_sink_into_bias(mid, mid_bias, 2, 3);  // positions 2..5, the sink at 3
  CHECK(mid.topRows(2).sum() == 12);
  CHECK(mid.bottomRows(2).cwiseAbs().sum() == 0);
  CHECK(mid_bias.topRows(2).cwiseAbs().sum() == 0);
  CHECK(mid_bias.bottomRows(2).sum() == 12);
}
