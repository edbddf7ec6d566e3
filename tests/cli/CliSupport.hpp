#pragma once
// Running the depass CLI and the example programs from tests: paths, a process runner
// that captures exit code, stdout and stderr, and shell quoting.

#include <sys/wait.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/TestSupport.hpp"

#ifndef DEPASS_CLI_PATH
#define DEPASS_CLI_PATH ""
#endif
#ifndef DEPASS_BIN_DIR
#define DEPASS_BIN_DIR ""
#endif

namespace depass::test {

/// The model, prompt and string search sentinel most CLI tests use.
inline const char* const kStories = "stories260K/stories260K.bin";
inline const char* const kPrompt = "Once upon a time there was a little girl named Lily. She loved to play with her";
inline constexpr std::size_t npos = std::string::npos;

/// "1,403,407": token ids as --ids takes them.
inline std::string ids_arg(const std::vector<int>& ids) {
  std::string s;
  for (int id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

/// |a - b| <= rel * max(1, |b|).
inline bool close(double a, double b, double rel = 1e-12) {
  return std::abs(a - b) <= rel * std::max(1.0, std::abs(b));
}

/// In-process Eigen products single-threaded too (see run_program).
inline const bool kSingleThreaded = (Eigen::setNbThreads(1), true);

inline std::string cli_path() { return DEPASS_CLI_PATH; }
inline std::string bin_dir() { return DEPASS_BIN_DIR; }

/// 'text' quoted for /bin/sh.
inline std::string sh(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct RunResult {
  int code = -1;
  std::string out, err;
};

/// Runs `program args` with stdin from /dev/null and stdout/stderr captured to files (so
/// neither is a terminal). `env` is prepended as is ("NO_COLOR=1 ...").
inline RunResult run_program(const std::string& program, const std::string& args, const std::string& env = "") {
  static TempDir scratch;
  static int counter = 0;
  const std::string out = scratch.path("out" + std::to_string(counter)), err = scratch.path("err" + std::to_string(counter));
  ++counter;
  // One thread: the programs link OpenMP, whose spinning threads make tiny-model runs ~100x
  // slower when the machine is busy (ctest -j, parallel builds).
  const std::string command = "env OMP_NUM_THREADS=1 " + env + " " + sh(program) + " " + args + " </dev/null >" + sh(out) +
                              " 2>" + sh(err);
  const int status = std::system(command.c_str());
  RunResult r;
  r.code = (status != -1 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
  r.out = file_exists(out) ? read_file(out) : "";
  r.err = file_exists(err) ? read_file(err) : "";
  return r;
}

inline RunResult run_cli(const std::string& args, const std::string& env = "") {
  return run_program(cli_path(), args, env);
}

/// `depass ARGS --format json`, which must succeed; its standard output parsed.
inline nlohmann::json run_json(const std::string& args) {
  const RunResult r = run_cli(args + " --format json");
  INFO("depass " << args << "\nstderr: " << r.err);
  REQUIRE(r.code == 0);
  return nlohmann::json::parse(r.out);
}

/// RFC 4180 records: quoted fields may hold commas, quotes ("") and line breaks.
inline std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      row.push_back(field);
      field.clear();
    } else if (c == '\n') {
      row.push_back(field);
      field.clear();
      rows.push_back(row);
      row.clear();
    } else {
      field += c;
    }
  }
  return rows;
}

}  // namespace depass::test

/// Skips the test case (with a warning) when the CLI was not built into the test's setup.
#define DEPASS_REQUIRE_CLI()                                                              \
  if (::depass::test::cli_path().empty() || !::depass::test::file_exists(::depass::test::cli_path())) { \
    WARN("skipping: the depass CLI is not built (" << ::depass::test::cli_path() << ")");       \
    return;                                                                                 \
  }                                                                                         \
  static_cast<void>(0)
