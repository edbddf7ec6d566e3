// The standalone examples (examples/*.cpp -> build/bin/example_<name>) build and run on
// stories260K, exit 0 and print their expected result line.

#include <catch2/catch.hpp>

#include <string>

#include "CliSupport.hpp"
#include "support/TestSupport.hpp"

namespace {

void run_example(const std::string& name, const std::string& expected, const std::string& model) {
  const std::string program = depass::test::bin_dir() + "/example_" + name;
  if (depass::test::bin_dir().empty() || !depass::test::file_exists(program)) {
    WARN("skipping: " << program << " is not built");
    return;
  }
  const depass::test::RunResult r = depass::test::run_program(program, depass::test::sh(model));
  INFO(program << "\nstdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.code == 0);
  CHECK(r.out.find(expected) != std::string::npos);
}

}  // namespace

TEST_CASE("example token_attribution runs on stories260K", "[cli][examples]") {
  DEPASS_REQUIRE_MODEL(model, "stories260K/stories260K.bin");
  run_example("token_attribution", "lossless: scores + bias == logit", model);
  run_example("token_attribution", "predicted next token: ' to'", model);
}

TEST_CASE("example head_ranking runs on stories260K", "[cli][examples]") {
  DEPASS_REQUIRE_MODEL(model, "stories260K/stories260K.bin");
  run_example("head_ranking", "ranked 40 heads (5 layers x 8)", model);
}

TEST_CASE("example subspace_propagation runs on stories260K", "[cli][examples]") {
  DEPASS_REQUIRE_MODEL(model, "stories260K/stories260K.bin");
  run_example("subspace_propagation", "lossless: the parts add up to the logit", model);
}

TEST_CASE("example custom_initialisation runs on stories260K", "[cli][examples]") {
  DEPASS_REQUIRE_MODEL(model, "stories260K/stories260K.bin");
  run_example("custom_initialisation", "rejected as expected: custom components do not sum", model);
  run_example("custom_initialisation", "custom split accepted (3 components incl. bias)", model);
}
