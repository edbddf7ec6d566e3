// CLI hygiene (issue #11): --ids without a tokenizer, unknown options with the nearest
// known one, two outputs to one file refused, exit statuses by class, --quiet, positions
// after the explained one marked unreachable, probabilities with significant digits, BOS
// shown as <s>, coloured tables aligned by visible width.

#include <catch2/catch.hpp>
#include <depass/output/Text.hpp>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "CliSupport.hpp"
#include "support/TestSupport.hpp"

using namespace depass;
using nlohmann::json;

namespace {

using test::kStories;
const char* kIds = "1,403,407,261,378,432,383,286,261,376,298,315";
using test::npos;

/// `text` without ANSI escape sequences.
std::string strip_ansi(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\x1b' && i + 1 < text.size() && text[i + 1] == '[') {
      i += 2;
      while (i < text.size() && !(text[i] >= 0x40 && text[i] <= 0x7e)) ++i;
      continue;
    }
    out += text[i];
  }
  return out;
}

}  // namespace

TEST_CASE("depass --ids works without a tokenizer, pieces are shown as <id>", "[cli][hygiene]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  test::TempDir dir;
  const std::string lone = dir.path("stories260K.bin");  // no tok512.bin next to it
  std::filesystem::copy_file(stories, lone);
  const std::string m = "--model " + test::sh(lone);
  test::RunResult r = test::run_cli("tokens " + m + " --ids 1,403,407 --format json");
  INFO(r.err);
  REQUIRE(r.code == 0);
  const json doc = json::parse(r.out);
  CHECK(doc["tokens"][1]["text"] == "<403>");
  CHECK(doc["target"]["text"] == "<" + std::to_string(doc["target"]["id"].get<int>()) + ">");
  r = test::run_cli("heads " + m + " --ids 1,403,407 --layer 1");
  REQUIRE(r.code == 0);
  r = test::run_cli("tokens " + m + " --ids 1,403,407");
  CHECK(r.out.find("'<407>'") != npos);
  r = test::run_cli("tokens " + m + " --prompt 'Once upon'");
  CHECK(r.code == 2);
  CHECK(r.err.find("a text prompt needs a tokenizer, and none was found next to") != npos);
  r = test::run_cli("tokens " + m + " --ids 1,403 --target ' a'");
  CHECK(r.code == 2);
  CHECK(r.err.find("is text, which needs a tokenizer") != npos);
  // The same ids with the tokenizer give the same numbers.
  const test::RunResult with = test::run_cli("tokens --model " + test::sh(stories) + " --ids 1,403,407 --format json");
  CHECK(json::parse(with.out)["scores"] == doc["scores"]);
}

TEST_CASE("depass: unknown options and commands name the nearest known one", "[cli][hygiene]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const std::string m = "--model " + test::sh(stories) + " --ids 1,403";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"tokens " + m + " --tempreature 0.5", "unknown option --tempreature (did you mean --temperature?)"},
      {"heads " + m + " --layers 2", "unknown option --layers (did you mean --layer?)"},
      {"tokens " + m + " --contrats 5", "unknown option --contrats (did you mean --contrast?)"},
      {"generate --model " + test::sh(stories) + " --prompt Hi --explain --max_new 3", "unknown option --max_new (did you mean --max-new?)"},
      {"toknes " + m, "unknown command 'toknes' (did you mean 'tokens'?)"},
  };
  for (const auto& [args, message] : cases) {
    const test::RunResult r = test::run_cli(args);
    INFO(args << "\n" << r.err);
    CHECK(r.code == 2);
    CHECK(r.err.find(message) != npos);
  }
  const test::RunResult far = test::run_cli("tokens " + m + " --frobnicate-everything 1");
  CHECK(far.err.find("unknown option --frobnicate-everything\n") != npos);  // nothing close: no suggestion
}

TEST_CASE("depass: two outputs to the same file are refused before any work", "[cli][hygiene]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  test::TempDir dir;
  const std::string m = "--model " + test::sh(stories) + " --ids " + kIds;
  const std::string a = dir.path("a.json"), sub = dir.path("sub");
  std::filesystem::create_directory(sub);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"tokens " + m + " --output " + test::sh(a) + " --json " + test::sh(a), "--output and --json both write"},
      {"tokens " + m + " --output " + test::sh(sub + "/../a.json") + " --json " + test::sh(a), "--output and --json both write"},
      {"tokens " + m + " --components " + test::sh(dir.path("c.npy")) + " --trace-npy " + test::sh(dir.path("c.npy")),
       "--components and --trace-npy both write"},
      {"decode " + m + " --logits " + test::sh(dir.path("l.npy")) + " --output " + test::sh(dir.path("l.npy")),
       "--output and --logits both write"},
  };
  for (const auto& [args, message] : cases) {
    const test::RunResult r = test::run_cli(args);
    INFO(args << "\n" << r.err);
    CHECK(r.code == 2);
    CHECK(r.err.find(message) != npos);
  }
  CHECK(!test::file_exists(a));
}

TEST_CASE("depass exit status: 0 success, 2 command-line mistake, 1 failure", "[cli][hygiene]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  test::TempDir dir;
  const std::string m = "--model " + test::sh(stories) + " --ids " + kIds;
  const std::string garbage = dir.write("garbage.bin", std::string(40, '\x7f'));
  const std::string bad_batch = dir.write("b.jsonl", "{\"ids\": [1, 403]}\n{\"ids\": []}\n");
  const std::vector<std::pair<std::string, int>> cases = {
      {"tokens " + m, 0},
      {"--help", 0},
      {"tokens --help", 0},
      {"", 2},                                       // no command
      {"tokens " + m + " --position 99", 2},          // out of range
      {"tokens " + m + " --quiet", 2},                // nothing would be written
      {"tokens " + m + " --color sometimes", 2},      // bad value
      {"tokens --model /no/such/file.bin --ids 1", 1},  // missing file
      {"tokens --model " + test::sh(garbage) + " --ids 1", 1},  // malformed checkpoint
      {"tokens " + m + " --output " + test::sh(dir.path("no/such/dir/x.json")), 1},  // cannot write
      {"tokens --model " + test::sh(stories) + " --batch " + test::sh(bad_batch), 1},  // a failed batch line
  };
  for (const auto& [args, code] : cases) {
    const test::RunResult r = test::run_cli(args);
    INFO("depass " << args << "\n" << r.err);
    CHECK(r.code == code);
    if (code != 0) CHECK(!r.err.empty());
  }
}

TEST_CASE("depass --quiet: no text view and no notes when the result goes to files", "[cli][hygiene]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  test::TempDir dir;
  const std::string m = "tokens --model " + test::sh(stories) + " --ids " + kIds;
  test::RunResult loud = test::run_cli(m + " --output " + test::sh(dir.path("a.html")) + " --json " + test::sh(dir.path("a.json")));
  REQUIRE(loud.code == 0);
  CHECK(loud.out.find("rank") != npos);
  CHECK(loud.err.find("wrote") != npos);
  test::RunResult quiet =
      test::run_cli(m + " --output " + test::sh(dir.path("b.html")) + " --json " + test::sh(dir.path("b.json")) + " --quiet");
  REQUIRE(quiet.code == 0);
  CHECK(quiet.out.empty());
  CHECK(quiet.err.empty());
  CHECK(test::read_file(dir.path("b.json")) == test::read_file(dir.path("a.json")));
  CHECK(test::read_file(dir.path("b.html")).find("<!DOCTYPE html>") == 0);
}

TEST_CASE("depass tokens: positions after the explained one are marked unreachable in text, CSV and HTML", "[cli][hygiene]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  test::TempDir dir;
  const std::string m = "tokens --model " + test::sh(stories) + " --ids " + kIds + " --position 8 --alternatives 0";
  const json doc = json::parse(test::run_cli(m + " --format json").out);
  CHECK(doc["reachable_positions"] == 9);
  for (std::size_t i = 9; i < 12; ++i) CHECK(doc["scores"][i].get<double>() == 0);  // JSON keeps the zeros
  const test::RunResult text = test::run_cli(m);
  CHECK(text.out.find("unreachable (after position 8, causal mask): ' little' ' g' 'ir'") != npos);
  CHECK(text.out.find("[' little'") == npos);  // not in the heatmap
  const auto rows = test::parse_csv(test::run_cli(m + " --format csv").out);
  REQUIRE(rows.size() == 14);
  CHECK(rows[9] == std::vector<std::string>{"token 8", "8", "261", " a", output::exact_number(doc["scores"][8].get<double>()), "1"});
  CHECK(rows[10] == std::vector<std::string>{"token 9", "9", "376", " little", "", "0"});
  test::run_cli(m + " --output " + test::sh(dir.path("r.html")));
  const std::string html = test::read_file(dir.path("r.html"));
  std::size_t unreachable = 0;
  for (std::size_t p = html.find("<span class=\"tok unreachable\""); p != npos; p = html.find("<span class=\"tok unreachable\"", p + 1))
    ++unreachable;
  CHECK(unreachable == 3);
  CHECK(html.find("unreachable: after the explained position (causal mask)") != npos);
}

TEST_CASE("depass text view: probabilities with significant digits, BOS as <s>, coloured tables aligned", "[cli][hygiene]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const std::string m = "--model " + test::sh(stories) + " --prompt 'Once upon a time there was a little girl named Lily. "
                        "She loved to play with her'";
  const test::RunResult top = test::run_cli("tokens " + m);
  CHECK(top.out.find("target 267 ' to' at position 21: logit 15.4065, prob 0.679\n") != npos);
  CHECK(top.out.find("['<s>' ") != npos);
  CHECK(top.out.find("<s>\\n") == npos);
  const test::RunResult unlikely = test::run_cli("tokens " + m + " --target ' with'");
  CHECK(unlikely.out.find("prob 5.91e-05") != npos);
  // Colour escapes take no room: every line of the neurons table has the same visible width.
  const test::RunResult coloured = test::run_cli("neurons " + m + " --layer 4 --top 12 --color always", "COLORTERM=");
  REQUIRE(coloured.code == 0);
  CHECK(coloured.out.find("\x1b[48;5;") != npos);
  std::vector<std::size_t> widths;
  std::size_t start = coloured.out.find("  rank neuron");
  REQUIRE(start != npos);
  for (int line = 0; line < 13; ++line) {
    const std::size_t end = coloured.out.find('\n', start);
    widths.push_back(output::display_width(strip_ansi(coloured.out.substr(start, end - start))));
    start = end + 1;
  }
  for (std::size_t w : widths) CHECK(w == widths[0]);
}

TEST_CASE("depass --batch on a terminal: a progress bar over the items, none when stderr is a file", "[cli][hygiene]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  if (std::system("command -v script >/dev/null 2>&1") != 0) {
    WARN("skipping: util-linux `script` (a pseudo-terminal runner) is not installed");
    return;
  }
  test::TempDir dir;
  const std::string batch = dir.write("b.jsonl", "{\"ids\": [1, 403, 407]}\n{\"ids\": [1, 403]}\n{\"ids\": [1, 403, 407, 261]}\n");
  const std::string run = test::sh(test::cli_path()) + " tokens --model " + test::sh(stories) + " --batch " + test::sh(batch) +
                          " --output " + test::sh(dir.path("out.jsonl"));
  // script(1) gives the command a pseudo-terminal for stdout and stderr.
  const test::RunResult tty = test::run_program("script", "-qec " + test::sh("env OMP_NUM_THREADS=1 " + run) + " /dev/null");
  REQUIRE(tty.code == 0);
  CHECK(tty.out.find("tokens [") != npos);
  CHECK(tty.out.find("3/3 items") != npos);
  const test::RunResult file = test::run_cli("tokens --model " + test::sh(stories) + " --batch " + test::sh(batch) + " --output " +
                                             test::sh(dir.path("out2.jsonl")));
  REQUIRE(file.code == 0);
  CHECK(file.err.find("items") == npos);
  CHECK(test::read_file(dir.path("out.jsonl")) == test::read_file(dir.path("out2.jsonl")));
}

TEST_CASE("Every option a command's --help lists is one the command accepts", "[cli][hygiene]") {
  DEPASS_REQUIRE_CLI();
  for (const char* command : {"tokens", "modules", "heads", "neurons", "subspace", "decode", "generate", "tokenize",
                              "evaluate", "info"}) {
    const test::RunResult help = test::run_cli(std::string(command) + " --help");
    REQUIRE(help.code == 0);
    // The option list: lines "  --name ..." (usage lines and prose may name other commands' options).
    std::vector<std::string> options;
    std::size_t start = 0;
    while (start < help.out.size()) {
      const std::size_t end = std::min(help.out.find('\n', start), help.out.size());
      const std::string line = help.out.substr(start, end - start);
      if (line.rfind("  --", 0) == 0) options.push_back(line.substr(2, line.find(' ', 2) - 2));
      start = end + 1;
    }
    CHECK(options.size() >= 3);
    for (const std::string& option : options) {
      // A value after every option: a flag then meets a stray argument, never "unknown option".
      const test::RunResult r = test::run_cli(std::string(command) + " " + option + " x");
      INFO(command << " " << option << "\n" << r.err);
      CHECK(r.err.find("unknown option " + option) == npos);
    }
  }
}
