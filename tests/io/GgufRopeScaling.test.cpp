// RoPE scaling in GGUF files: linear from the llama.rope.scaling.* keys, Llama 3 from the
// rope_freqs.weight table that llama.cpp's converter writes. The random llama3 family
// checkpoint is written as GGUF with each scaling and its logits compared with the float64
// reference of tools/reference/make_rope_goldens.py (tests/golden/gguf_rope_scaling.json),
// which rotates with exactly the stored divisors.

#include <cmath>
#include <depass/Model.hpp>
#include <depass/io/Gguf.hpp>
#include <depass/io/HuggingFace.hpp>
#include <fstream>
#include <nlohmann/json.hpp>

#include "GgufFromCheckpoint.hpp"
#include "IoTestHelpers.hpp"
#include "TestSupport.hpp"

using namespace depass;
using namespace depass::test;
namespace g = depass::test::gguf;

namespace {

const json& rope_golden() {
  static const json j = [] {
    std::ifstream in(golden_path("gguf_rope_scaling.json"));
    REQUIRE(in.good());
    return json::parse(in);
  }();
  return j;
}

const Checkpoint<float>& llama3_checkpoint() {
  static const Checkpoint<float> ck =
      io::load_huggingface<float>(source_dir() + "/tests/data/" + rope_golden()["model"].get<std::string>());
  return ck;
}

/// The llama3 checkpoint as GGUF with the given base and, if given, a rope_freqs table.
g::File with_rope(double theta, const std::vector<float>& rope_freqs) {
  g::File f = g::as_gguf(llama3_checkpoint());
  *f.find_kv("llama.rope.freq_base") = g::f32("llama.rope.freq_base", static_cast<float>(theta));
  if (!rope_freqs.empty())
    f.tensor({"rope_freqs.weight", {rope_freqs.size()}, g::T_F32, g::f32_data(rope_freqs), -1});
  return f;
}

double max_error(const Model<double>& model, const json& expected) {
  const std::vector<int> ids = rope_golden()["ids"];
  const Matrix<double> logits = model.forward(ids);
  double worst = 0;
  const std::vector<int> positions = rope_golden()["positions"];
  for (std::size_t p = 0; p < positions.size(); ++p)
    for (std::size_t t = 0; t < expected[p].size(); ++t)
      worst = std::max(worst, std::abs(logits(positions[p], static_cast<Eigen::Index>(t)) -
                                       expected[p][t].get<double>()));
  return worst;
}

}  // namespace

TEST_CASE("gguf: rope_freqs.weight becomes llama3 scaling matching the reference logits",
          "[io][gguf][rope]") {
  for (const json& c : rope_golden()["cases"]) {
    if (!c.contains("rope_freqs")) continue;
    INFO(c["name"].get<std::string>());
    TempDir dir;
    const std::string path = dir.write("m.gguf", with_rope(c["rope_theta"], c["rope_freqs"]).build());
    const Checkpoint<double> ck = io::load_gguf<double>(path);
    const RopeScaling& rs = ck.config.rope_scaling;
    CHECK(rs.type == RopeScaling::Type::Llama3);
    CHECK(rs.factor == static_cast<double>(c["rope_freqs"].back().get<float>()));
    // Every stored divisor is reproduced (to the float32 rounding of the table).
    const std::vector<float> divisors = c["rope_freqs"];
    for (std::size_t j = 0; j < divisors.size(); ++j) {
      const double base = std::pow(ck.config.rope_theta, -2.0 * static_cast<double>(j) / ck.config.head_dim);
      CHECK(std::abs(detail::llama3_divisor(rs, base) - divisors[j]) <= 1e-6 * divisors[j]);
    }
    // One blended pair is reproduced exactly; a least-squares band (three pairs) to about
    // 1e-7 relative, which at these 64 positions moves the logits by < 1e-6.
    const double error = max_error(Model<double>(Checkpoint<double>(ck)), c["logits"]);
    INFO("max |logit - reference| = " << error);
    CHECK(error < (c["name"] == "llama3" ? 1e-9 : 1e-5));
    // Without the table the logits are measurably different (the test can fail).
    const Checkpoint<double> plain =
        io::load_gguf<double>(dir.write("plain.gguf", with_rope(c["rope_theta"], {}).build()));
    CHECK(max_error(Model<double>(Checkpoint<double>(plain)), c["logits"]) > 1e-3);
  }
}

TEST_CASE("gguf: linear RoPE scaling from llama.rope.scaling.* and llama.rope.scale_linear",
          "[io][gguf][rope]") {
  const json& c = rope_golden()["cases"][2];
  REQUIRE(c["name"] == "linear");
  TempDir dir;
  g::File f = with_rope(c["rope_theta"], {});
  f.kv(g::string("llama.rope.scaling.type", "linear")).kv(g::f32("llama.rope.scaling.factor", 4.0f));
  const Checkpoint<double> ck = io::load_gguf<double>(dir.write("a.gguf", f.build()));
  CHECK(ck.config.rope_scaling.type == RopeScaling::Type::Linear);
  CHECK(ck.config.rope_scaling.factor == 4.0);
  CHECK(max_error(Model<double>(Checkpoint<double>(ck)), c["logits"]) < 1e-9);
  // The older key alone means the same.
  g::File old = with_rope(c["rope_theta"], {});
  old.kv(g::f32("llama.rope.scale_linear", 4.0f));
  const Checkpoint<double> ck_old = io::load_gguf<double>(dir.write("b.gguf", old.build()));
  CHECK(ck_old.config.rope_scaling.type == RopeScaling::Type::Linear);
  CHECK(max_error(Model<double>(Checkpoint<double>(ck_old)), c["logits"]) < 1e-9);
  // Without scaling the logits are measurably different (the test can fail).
  const Checkpoint<double> plain = io::load_gguf<double>(dir.write("c.gguf", with_rope(c["rope_theta"], {}).build()));
  CHECK(plain.config.rope_scaling.type == RopeScaling::Type::None);
  CHECK(max_error(Model<double>(Checkpoint<double>(plain)), c["logits"]) > 1e-3);
}

TEST_CASE("gguf: RoPE scaling that depass cannot represent is refused", "[io][gguf][rope][hostile]") {
  const json& c = rope_golden()["cases"][1];
  const std::vector<float> good = c["rope_freqs"];
  auto error = [&](const g::File& f) {
    TempDir dir;
    const std::string path = dir.write("m.gguf", f.build());
    const std::string message = format_error([&] { io::load_gguf<float>(path); });
    CHECK_THAT(message, Contains(path + ": "));
    return message;
  };
  std::vector<float> bad = good;
  bad[2] = 3.9f;  // the band no longer blends linearly
  CHECK_THAT(error(with_rope(c["rope_theta"], bad)),
             Contains("tensor 'rope_freqs.weight' is not of the llama3 form: pair"));
  bad = good;
  bad[5] = 1.0f;  // kept after slowed
  CHECK_THAT(error(with_rope(c["rope_theta"], bad)),
             Contains("is not of the llama3 form: its divisors must rise from 1 to a constant factor"));
  bad = good;
  bad[0] = std::nanf("");
  CHECK_THAT(error(with_rope(c["rope_theta"], bad)),
             Contains("tensor 'rope_freqs.weight' holds nan at [0]; llama3 frequency divisors are "
                      "finite and at least 1"));
  bad = good;
  bad[1] = 0.5f;
  CHECK_THAT(error(with_rope(c["rope_theta"], bad)), Contains("holds 0.500000 at [1]"));
  CHECK_THAT(error(with_rope(c["rope_theta"], {1, 2, 3})),
             Contains("tensor 'rope_freqs.weight' has shape [3], expected [8]"));
  g::File both = with_rope(c["rope_theta"], good);
  both.kv(g::string("llama.rope.scaling.type", "linear")).kv(g::f32("llama.rope.scaling.factor", 2.0f));
  CHECK_THAT(error(both), Contains("tensor 'rope_freqs.weight' (llama3 RoPE scaling) together with "
                                   "linear scaling is not supported"));
  g::File yarn = with_rope(c["rope_theta"], {});
  yarn.kv(g::string("llama.rope.scaling.type", "yarn"));
  CHECK_THAT(error(yarn), Contains("unsupported llama.rope.scaling.type 'yarn' (supported: none, linear"));
  g::File shrink = with_rope(c["rope_theta"], {});
  shrink.kv(g::string("llama.rope.scaling.type", "linear")).kv(g::f32("llama.rope.scaling.factor", 0.5f));
  CHECK_THAT(error(shrink), Contains("Config: rope_scaling.factor = 0.500000 is out of range [1, 1e6)"));
  g::File missing = with_rope(c["rope_theta"], {});
  missing.kv(g::string("llama.rope.scaling.type", "linear"));
  CHECK_THAT(error(missing), Contains("missing required metadata key 'llama.rope.scaling.factor'"));
  g::File disagree = with_rope(c["rope_theta"], {});
  disagree.kv(g::string("llama.rope.scaling.type", "linear"))
      .kv(g::f32("llama.rope.scaling.factor", 2.0f))
      .kv(g::f32("llama.rope.scale_linear", 4.0f));
  CHECK_THAT(error(disagree), Contains("llama.rope.scale_linear (4.000000) disagrees with "
                                       "llama.rope.scaling.factor (2.000000)"));
}
