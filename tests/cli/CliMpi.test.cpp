// depass under mpirun (docs/distributed.md): a single run sharded over 2 or 3 ranks gives
// the numbers one process gives (1e-12 relative, double), written once; --batch and
// evaluate share out their items and write exactly what one process writes; a rank that
// fails ends the job with its error instead of hanging; a build without MPI says so.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <string>

#include "cli/CliSupport.hpp"
#include "support/TestSupport.hpp"

using namespace depass::test;
using nlohmann::json;

namespace {

// Open MPI refuses root and more ranks than cores unless told (ignored by other MPIs).
const char* const kMpiEnv =
    "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1";

#ifdef DEPASS_TEST_MPIEXEC
RunResult run_mpi(int ranks, const std::string& args) {
  return run_program(DEPASS_TEST_MPIEXEC, "-np " + std::to_string(ranks) + " " + sh(cli_path()) + " " + args, kMpiEnv);
}
#endif

/// Numbers equal within rel (relative to max(1, |a|)), everything else exactly; the keys
/// that time the run are skipped.
void check_same_numbers(const json& a, const json& b, const std::string& where, double rel) {
  INFO(where);
  if (a.is_number() && b.is_number()) {
    const double x = a.get<double>(), y = b.get<double>();
    CHECK(std::abs(x - y) <= rel * std::max(1.0, std::abs(x)));
    return;
  }
  REQUIRE(a.type() == b.type());
  if (a.is_object()) {
    REQUIRE(a.size() == b.size());
    for (auto it = a.begin(); it != a.end(); ++it)
      if (it.key() != "seconds" && it.key() != "elapsed_seconds") check_same_numbers(it.value(), b.at(it.key()), where + "." + it.key(), rel);
  } else if (a.is_array()) {
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) check_same_numbers(a[i], b[i], where + "[" + std::to_string(i) + "]", rel);
  } else {
    CHECK(a == b);
  }
}

}  // namespace

#ifdef DEPASS_TEST_MPIEXEC

TEST_CASE("mpirun -np 2/3 depass tokens, heads, neurons: sharded runs give one process's numbers, written once",
          "[cli][mpi]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const std::string common = " --model " + sh(stories) + " --prompt " + sh(kPrompt) + " --precision double --format json";
  for (const std::string command : {"tokens", "tokens --mlp-split argmax", "tokens --mlp-split path --no-bos-sink",
                                    "heads --layer 1", "neurons --layer 2 --mlp-split proportional"})
    for (const int ranks : {2, 3}) {
      INFO(command << " on " << ranks << " ranks");
      const RunResult one = run_cli(command + common);
      const RunResult many = run_mpi(ranks, command + common);
      INFO(many.err);
      REQUIRE(one.code == 0);
      REQUIRE(many.code == 0);
      // One JSON document: rank 0 alone wrote to standard output.
      check_same_numbers(json::parse(one.out), json::parse(many.out), command, 1e-12);
    }
}

TEST_CASE("mpirun depass --batch and evaluate: the ranks take the items in turn, rank 0 writes one process's output",
          "[cli][mpi]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  TempDir dir;
  const std::string batch = dir.write("b.jsonl",
                                      "{\"prompt\": \"Once upon a time there was a\", \"target\": \" little\"}\n"
                                      "{\"ids\": [1, 403, 407, 261, 378], \"position\": 3, \"contrast\": 298}\n"
                                      "not json\n"
                                      "{\"ids\": [1, 9999]}\n"
                                      "{\"ids\": [1, 403, 407], \"target\": 267}\n");
  const std::string tokens = "tokens --model " + sh(stories) + " --batch " + sh(batch) + " --alternatives 0";
  const RunResult one = run_cli(tokens);
  for (const int ranks : {2, 3}) {
    const RunResult many = run_mpi(ranks, tokens);
    INFO(ranks << " ranks\n" << many.err);
    CHECK(one.code == 1);  // two bad lines
    CHECK(many.code == 1);
    CHECK(many.out == one.out);  // the same lines, in input order, computed alike
  }
  const std::string data = source_dir() + "/data/faithfulness/stories260K.jsonl";
  const std::string evaluate = "evaluate --model " + sh(stories) + " --data " + sh(data) +
                               " --no-progress --protocol disrupt --methods depass,occlusion --limit 5 --out ";
  REQUIRE(run_cli(evaluate + sh(dir.path("serial"))).code == 0);
  const RunResult many = run_mpi(2, evaluate + sh(dir.path("mpi")));
  INFO(many.err);
  REQUIRE(many.code == 0);
  CHECK(read_file(dir.path("mpi/samples.jsonl")) == read_file(dir.path("serial/samples.jsonl")));
  check_same_numbers(json::parse(read_file(dir.path("serial/results.json"))), json::parse(read_file(dir.path("mpi/results.json"))),
                     "results.json", 0);
}

TEST_CASE("mpirun depass: a failing rank ends the job with its error; chunking and traces are refused", "[cli][mpi]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const std::string args = "tokens --prompt " + sh(kPrompt) + " --format json --model ";
  // Rank 1 alone cannot read its model (a node without the file): rank 0 would wait for it
  // in the first reduction forever; the job must end instead (ctest's timeout would fail it).
  const RunResult r = run_program(DEPASS_TEST_MPIEXEC,
                                  "-np 1 " + sh(cli_path()) + " " + args + sh(stories) + " : -np 1 " + sh(cli_path()) + " " +
                                      args + sh("/nonexistent/model.bin"),
                                  kMpiEnv);
  INFO(r.err);
  CHECK(r.code != 0);
  CHECK(r.err.find("(rank 1 of 2) depass tokens: error:") != std::string::npos);
  CHECK(r.err.find("/nonexistent/model.bin") != std::string::npos);
  const RunResult chunked = run_mpi(2, args + sh(stories) + " --chunk-size 4");
  INFO(chunked.err);
  CHECK(chunked.code == 2);
  CHECK(chunked.err.find("--chunk-size and --memory-budget do not apply under mpirun (2 ranks)") != std::string::npos);
  const RunResult traced = run_mpi(2, args + sh(stories) + " --trace");
  INFO(traced.err);
  CHECK(traced.code == 2);
  CHECK(traced.err.find("--trace reads every component at every layer in one process") != std::string::npos);
}

#else

TEST_CASE("A depass built without MPI refuses to run as one of several mpirun ranks", "[cli][mpi]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const RunResult r = run_cli("tokens --model " + sh(stories) + " --prompt " + sh(kPrompt), "OMPI_COMM_WORLD_SIZE=2");
  INFO(r.err);
  CHECK(r.code == 1);
  CHECK(r.err.find("this depass was built without MPI") != std::string::npos);
}

#endif
