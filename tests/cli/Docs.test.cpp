// The shell examples of README.md and docs/cli.md run verbatim: every ```sh block of a file
// becomes one bash script (set -e, so the first failing command fails the test), run in
// a scratch directory holding a `models` link to the test models and a `data` link to the
// repository's data/, with `depass` and
// `build/bin/depass` resolved to the built CLI (through a wrapper that logs each call, so
// the test also knows every depass example ran).
//
// Lines not run, and why:
//  - `make ...` (README): builds and tests the project itself, i.e. runs this test;
//  - `python3 ...` (docs/cli.md, writing a random basis dirs.npy with NumPy): the C++ tests
//    need no Python, so the test writes a 64 x 4 dirs.npy itself before the script runs;
//  - `chromium ...` runs only where a `chromium` is installed.

#include <catch2/catch.hpp>
#include <depass/output/Npy.hpp>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "CliSupport.hpp"
#include "support/TestSupport.hpp"

namespace {

/// The ```sh blocks of a Markdown text, each as its lines.
std::vector<std::vector<std::string>> sh_blocks(const std::string& markdown) {
  std::vector<std::vector<std::string>> blocks;
  std::istringstream in(markdown);
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    if (!inside && line == "```sh") {
      inside = true;
      blocks.emplace_back();
    } else if (inside && line.rfind("```", 0) == 0) {
      inside = false;
    } else if (inside) {
      blocks.back().push_back(line);
    }
  }
  return blocks;
}

/// The script of a file's blocks: commands verbatim, except the lines described above.
/// `depass_calls` counts the commands that run depass (to compare with the wrapper's log).
std::string script_of(const std::vector<std::vector<std::string>>& blocks, std::size_t& depass_calls) {
  std::string script = "set -e\ntrap 'echo \"docs example failed: $BASH_COMMAND\" >&2' ERR\n";
  for (const auto& block : blocks) {
    for (std::size_t i = 0; i < block.size(); ++i) {
      std::vector<std::string> command = {block[i]};  // one logical line (backslash continuations)
      while (!command.back().empty() && command.back().back() == '\\' && i + 1 < block.size()) command.push_back(block[++i]);
      const std::string first = command.front().substr(command.front().find_first_not_of(' ') == std::string::npos
                                                           ? 0
                                                           : command.front().find_first_not_of(' '));
      std::string text;
      for (const std::string& l : command) text += l + "\n";
      if (first.rfind("make ", 0) == 0 || first.rfind("python3 ", 0) == 0) {
        for (const std::string& l : command) script += "# not run: " + l + "\n";
        continue;
      }
      if (first.rfind("chromium ", 0) == 0) {
        script += "if command -v chromium >/dev/null 2>&1; then\n" + text + "fi\n";
        continue;
      }
      if (first.rfind("depass ", 0) == 0 || first.rfind("build/bin/depass ", 0) == 0 || text.find("| depass ") != std::string::npos)
        ++depass_calls;
      script += text;
    }
  }
  return script;
}

std::size_t count_lines(const std::string& text) {
  std::size_t n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

}  // namespace

TEST_CASE("README.md and docs/cli.md: every shell example runs verbatim", "[cli][docs]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, "stories260K/stories260K.bin");
  DEPASS_REQUIRE_MODEL(tiny, "tinystories-656k/config.json");
  for (const std::string name : {"README.md", "docs/cli.md"}) {
    INFO(name);
    const std::vector<std::vector<std::string>> blocks = sh_blocks(depass::test::read_file(depass::test::source_dir() + "/" + name));
    REQUIRE(!blocks.empty());
    std::size_t expected_calls = 0;
    const std::string script = script_of(blocks, expected_calls);
    CHECK(expected_calls >= (name == "README.md" ? 2u : 20u));

    depass::test::TempDir dir;
    namespace fs = std::filesystem;
    fs::create_directory_symlink(fs::absolute(depass::test::model_dir()), dir.path("models"));
    fs::create_directory_symlink(depass::test::source_dir() + "/data", dir.path("data"));  // the faithfulness data
    fs::create_directories(dir.path("bin"));
    fs::create_directories(dir.path("build/bin"));
    const std::string log = dir.path("calls.log");
    const std::string wrapper = dir.write("bin/depass", "#!/bin/sh\necho \"$*\" >> " + depass::test::sh(log) + "\nexec " +
                                                            depass::test::sh(depass::test::cli_path()) + " \"$@\"\n");
    fs::permissions(wrapper, fs::perms::owner_all);
    fs::create_symlink(wrapper, dir.path("build/bin/depass"));
    // What the skipped python3 line would write: a random 64 x 4 basis.
    Eigen::MatrixXd basis = Eigen::MatrixXd::Random(64, 4);
    depass::output::save_npy(dir.path("dirs.npy"), depass::output::NpyArray::from_matrix(basis));
    dir.write("examples.sh", script);

    const std::string command = "cd " + depass::test::sh(dir.root()) + " && PATH=" + depass::test::sh(dir.path("bin")) +
                                ":\"$PATH\" bash examples.sh";
    const depass::test::RunResult r = depass::test::run_program("/bin/sh", "-c " + depass::test::sh(command));
    INFO("script:\n" << script << "\nstdout (tail): " << r.out.substr(r.out.size() > 2000 ? r.out.size() - 2000 : 0)
                     << "\nstderr: " << r.err);
    CHECK(r.code == 0);
    CHECK(r.err.find("docs example failed") == std::string::npos);
    const std::string calls = depass::test::file_exists(log) ? depass::test::read_file(log) : "";
    CHECK(count_lines(calls) == expected_calls);
  }
}
