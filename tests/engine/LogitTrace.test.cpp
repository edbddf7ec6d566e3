// LogitTrace: every component's logit-lens value at every layer boundary. Checked against
// the logit lens of the real states computed here by hand from the plain forward pass's
// hook states (RMSNorm / LayerNorm written out, not the model's norm), against the
// decomposition's final scores at the output, for token, head and module runs, with and
// without a contrast token, on stories260K, TinyStories-656K and the GPT-2 family model
// (LayerNorm with offsets, learned positions). Bad arguments and chunked runs are refused.

#include <catch2/catch.hpp>
#include <depass/LogitTrace.hpp>
#include <depass/io/Load.hpp>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "support/Goldens.hpp"
#include "support/Models.hpp"
#include "support/TestSupport.hpp"

using namespace depass;

namespace {

using test::kStoriesIds;
using test::kTinyIds;
const std::vector<int> kGpt2Ids = {406, 40, 83, 120, 7, 260, 33, 91};

template <typename Scalar>
double tolerance(double scale) {
  return (std::is_same<Scalar, float>::value ? 2e-4 : 1e-10) * std::max(1.0, scale);
}

/// The real residual states of a plain forward pass by boundary index: 0 after the
/// embedding, 2l+1 after attention l, 2l+2 after layer l.
template <typename Scalar>
std::map<int, Vector<double>> plain_states(const Model<Scalar>& model, const std::vector<int>& ids, Eigen::Index position) {
  std::map<int, Vector<double>> states;
  model.forward(ids, [&](const HookEvent<Scalar>& e) {
    const std::string name = e.name;
    int b = -1;
    if (name == "embed") b = 0;
    if (name == "attn_resid") b = 2 * e.layer + 1;
    if (name == "layer_out") b = 2 * e.layer + 2;
    if (b >= 0) states[b] = e.value.row(position).transpose().template cast<double>();
  });
  return states;
}

/// final_norm(x) . u by hand, in double: RMSNorm x / sqrt(mean x^2 + eps) * g; LayerNorm
/// (x - mean) / sqrt(var + eps) * g + b.
template <typename Scalar>
double lens_by_hand(const Model<Scalar>& model, const Vector<double>& x, int target, int foil) {
  const Weights<Scalar>& w = model.weights();
  Vector<double> u = w.unembedding().row(target).transpose().template cast<double>();
  if (foil >= 0) u -= w.unembedding().row(foil).transpose().template cast<double>();
  const bool layer_norm = model.config().norm == NormKind::LayerNorm;
  const Vector<double> centred = layer_norm ? Vector<double>(x.array() - x.mean()) : x;
  const double r = 1.0 / std::sqrt(centred.squaredNorm() / static_cast<double>(x.size()) + model.config().norm_eps);
  Vector<double> y = (centred * r).cwiseProduct(w.final_norm.template cast<double>());
  if (w.final_norm_bias.size()) y += w.final_norm_bias.template cast<double>();
  return y.dot(u);
}

/// Runs `init` with a trace and checks it row by row.
template <typename Scalar>
void check_trace(const Model<Scalar>& model, const std::vector<int>& ids, const Initialisation<Scalar>& init, int first_boundary,
                 Eigen::Index position, int foil) {
  const Decomposer<Scalar> decomposer(model);
  const Decomposition<Scalar> plain = decomposer.run(ids, init);
  Eigen::Index top = 0;
  plain.logits(position).maxCoeff(&top);
  const int target = static_cast<int>(top);
  if (foil == target) foil = (target + 1) % model.config().vocab_size;
  LogitTrace<Scalar> trace(model, position, target, foil);
  const Decomposition<Scalar> d = decomposer.run(ids, init, {}, trace.hook());
  const int L = model.config().n_layers;
  const Eigen::Index B = 2 * L + 1 - first_boundary, M = d.component_count();
  REQUIRE(trace.scores().rows() == B);
  REQUIRE(trace.scores().cols() == M);
  REQUIRE(trace.lens().size() == B);
  const std::map<int, Vector<double>> states = plain_states(model, ids, position);
  for (Eigen::Index b = 0; b < B; ++b) {
    const int boundary = first_boundary + static_cast<int>(b);
    INFO("boundary " << boundary << " (" << trace.boundary_names()[static_cast<std::size_t>(b)] << ")");
    CHECK(trace.boundaries()[static_cast<std::size_t>(b)] == boundary);
    const double expected = lens_by_hand(model, states.at(boundary), target, foil);
    const double sum = static_cast<double>(trace.scores().row(b).sum());
    CHECK(std::abs(sum - expected) <= tolerance<Scalar>(std::abs(expected)));
    CHECK(std::abs(static_cast<double>(trace.lens()(b)) - expected) <= tolerance<Scalar>(std::abs(expected)));
  }
  // The output row is the decomposition's final readout.
  Vector<Scalar> final_scores = d.component_logits(position, target);
  if (foil >= 0) final_scores -= d.component_logits(position, foil);
  const double scale = static_cast<double>(final_scores.cwiseAbs().maxCoeff());
  for (Eigen::Index m = 0; m < M; ++m) {
    INFO("component " << d.labels()[static_cast<std::size_t>(m)]);
    CHECK(std::abs(static_cast<double>(trace.scores()(B - 1, m) - final_scores(m))) <= tolerance<Scalar>(scale));
  }
  CHECK(trace.boundary_names().back() == "output");
  // The trace reads the pass, not the result: keeping rows at the position only changes nothing.
  LogitTrace<Scalar> kept(model, position, target, foil);
  DecomposeOptions keep;
  keep.keep_positions = {static_cast<long>(position)};
  decomposer.run(ids, init, keep, kept.hook());
  CHECK(kept.scores() == trace.scores());
}

}  // namespace

TEMPLATE_TEST_CASE("LogitTrace: token-level traces sum to the real logit lens at every boundary (stories260K, TinyStories)",
                   "[engine][trace]", DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(stories, "stories260K/stories260K.bin");
  DEPASS_REQUIRE_MODEL(tiny, "tinystories-656k/model.safetensors");
  const Model<TestType>& s = test::cached_model<TestType>(stories);
  check_trace(s, kStoriesIds, Initialisation<TestType>::tokens(), 0, 11, -1);
  check_trace(s, kStoriesIds, Initialisation<TestType>::tokens(), 0, 6, 298);  // contrast
  const Model<TestType>& t = test::cached_model<TestType>(test::model_dir() + "/tinystories-656k");
  check_trace(t, kTinyIds, Initialisation<TestType>::tokens(), 0, 8, -1);
  check_trace(t, kTinyIds, Initialisation<TestType>::tokens(), 0, 8, 313);
}

TEMPLATE_TEST_CASE("LogitTrace: head and module runs start at their layer's boundary", "[engine][trace]", DEPASS_TEST_SCALARS) {
  DEPASS_REQUIRE_MODEL(stories, "stories260K/stories260K.bin");
  const Model<TestType>& s = test::cached_model<TestType>(stories);
  check_trace(s, kStoriesIds, Initialisation<TestType>::heads(2), 5, 11, -1);
  check_trace(s, kStoriesIds, Initialisation<TestType>::module_output(3, Site::Mlp), 8, 9, 267);
}

TEMPLATE_TEST_CASE("LogitTrace: LayerNorm with offsets and learned positions (GPT-2 family)", "[engine][trace]", DEPASS_TEST_SCALARS) {
  const Model<TestType> model(io::load_checkpoint<TestType>(test::source_dir() + "/tests/data/families/gpt2"));
  REQUIRE(model.config().norm == NormKind::LayerNorm);
  REQUIRE(model.weights().final_norm_bias.size() > 0);
  check_trace(model, kGpt2Ids, Initialisation<TestType>::tokens(), 0, 7, -1);
  check_trace(model, kGpt2Ids, Initialisation<TestType>::tokens(), 0, 5, 40);
  check_trace(model, kGpt2Ids, Initialisation<TestType>::heads(1), 3, 7, 40);
}

TEST_CASE("LogitTrace: bad arguments and chunked runs are refused", "[engine][trace]") {
  DEPASS_REQUIRE_MODEL(stories, "stories260K/stories260K.bin");
  const Model<double>& model = test::cached_model<double>(stories);
  CHECK_THROWS_WITH(LogitTrace<double>(model, 0, 512), Catch::Contains("target token id 512 is out of range [0, 512)"));
  CHECK_THROWS_WITH(LogitTrace<double>(model, 0, 3, 600), Catch::Contains("foil token id 600"));
  CHECK_THROWS_WITH(LogitTrace<double>(model, 0, 3, 3), Catch::Contains("equals the target"));
  CHECK_THROWS_WITH(LogitTrace<double>(model, -1, 3), Catch::Contains("position -1"));
  LogitTrace<double> far(model, 12, 3);
  CHECK_THROWS_WITH(Decomposer<double>(model).run(kStoriesIds, Initialisation<double>::tokens(), {}, far.hook()),
                    Catch::Contains("position 12 is out of range [0, 12)"));
  LogitTrace<double> chunked(model, 11, 3);
  DecomposeOptions options;
  options.chunk_size = 5;
  CHECK_THROWS_WITH(Decomposer<double>(model).run(kStoriesIds, Initialisation<double>::tokens(), options, chunked.hook()),
                    Catch::Contains("a second decomposed pass started"));
  // clear() makes a trace reusable for another run.
  LogitTrace<double> reused(model, 11, 3);
  Decomposer<double>(model).run(kStoriesIds, Initialisation<double>::tokens(), {}, reused.hook());
  const Matrix<double> first = reused.scores();
  reused.clear();
  CHECK(reused.scores().rows() == 0);
  Decomposer<double>(model).run(kStoriesIds, Initialisation<double>::tokens(), {}, reused.hook());
  CHECK(reused.scores() == first);
}
