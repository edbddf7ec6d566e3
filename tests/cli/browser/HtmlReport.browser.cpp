// The HTML reports in a real browser (headless Chromium, Debian's `chromium`):
//  - the report kinds (tokens, heads -- the same page code as modules --, neurons,
//    generate --explain, and tokens / heads with a --trace chart and a contrast) load with
//    no console message at all (no errors, no uncaught
//    exceptions, no failed resource loads) and its script runs to the end (data-ready);
//  - the token spans are rendered (computed style, not just inline attributes) with
//    distinct colours: the highest score reddish, a negative score bluish;
//  - generate --explain has one selectable view per generated step;
//  - a screenshot is produced (a valid 1000 x 700 PNG).
// The set-up fixture (setup_chromium.sh) installs chromium when it is missing; if there is
// still no browser, each test exits 77, which CTest reports as skipped.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <regex>
#include <string>
#include <vector>

#include "../CliSupport.hpp"
#include "support/TestSupport.hpp"

namespace {

std::string chromium() {
  const char* env = std::getenv("DEPASS_CHROMIUM");
  return env != nullptr && *env != '\0' ? env : "/usr/bin/chromium";
}

void require_browser() {
  if (!depass::test::file_exists(chromium())) {
    std::cerr << "SKIPPED: headless Chromium not found at " << chromium()
              << " (install Debian's chromium package, or set DEPASS_CHROMIUM); the HTML report was not checked in a browser\n";
    std::exit(77);
  }
}

const char* kPrompt = "Once upon a time there was a little girl named Lily. She loved to play with her";

/// Runs headless Chromium on a local file. `mode` is "--dump-dom" or "--screenshot=PATH".
depass::test::RunResult browse(const depass::test::TempDir& dir, const std::string& file, const std::string& mode) {
  const std::string profile = dir.path("profile");
  const std::string args = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
                           "--disable-background-networking --disable-component-update --disable-sync "
                           "--disable-extensions --user-data-dir=" +
                           depass::test::sh(profile) + " --enable-logging=stderr --v=0 --window-size=1000,700 " + mode +
                           " " + depass::test::sh("file://" + file);
  return depass::test::run_program(chromium(), args, "");
}

/// Console lines Chromium logged for the page (console.*, uncaught exceptions, failed loads).
std::vector<std::string> console_lines(const std::string& log) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < log.size()) {
    std::size_t end = log.find('\n', start);
    if (end == std::string::npos) end = log.size();
    const std::string line = log.substr(start, end - start);
    if (line.find(":CONSOLE") != std::string::npos || line.find("Uncaught") != std::string::npos) lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

std::string make_report(const depass::test::TempDir& dir, const std::string& name, const std::string& args) {
  const std::string file = dir.path(name);
  const depass::test::RunResult r = depass::test::run_cli(args + " --output " + depass::test::sh(file));
  INFO("depass " << args << "\n" << r.err);
  REQUIRE(r.code == 0);
  return file;
}

std::string html_unescape(std::string s) {
  const std::vector<std::pair<std::string, std::string>> entities = {{"&quot;", "\""}, {"&#39;", "'"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&amp;", "&"}};
  for (const auto& [from, to] : entities)
    for (std::size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

struct RgbColour {
  int r = 0, g = 0, b = 0;
};

RgbColour parse_rgb(const std::string& css) {
  std::smatch m;
  const std::regex re("rgba?\\((\\d+), (\\d+), (\\d+)");
  REQUIRE(std::regex_search(css, m, re));
  return {std::stoi(m[1]), std::stoi(m[2]), std::stoi(m[3])};
}

}  // namespace

TEST_CASE("HTML reports load in headless Chromium with no console messages", "[cli][browser]") {
  require_browser();
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(model, "stories260K/stories260K.bin");
  depass::test::TempDir dir;
  const std::string m = "--model " + depass::test::sh(model) + " --prompt " + depass::test::sh(kPrompt);
  const std::vector<std::pair<std::string, std::string>> reports = {
      {"tokens.html", "tokens " + m},
      {"heads.html", "heads " + m},
      {"neurons.html", "neurons " + m},
      {"generate.html", "generate --model " + depass::test::sh(model) + " --prompt 'Once upon a time' --max-new 4 --explain"},
      // A contrast, a layer-trace chart (inline SVG) and unreachable tokens after the position.
      {"trace.html", "tokens " + m + " --target ' to' --contrast ' with' --position -2 --trace"},
      {"heads-trace.html", "heads " + m + " --layer 3 --trace"},
  };
  // One browser start for all reports: a page holding them in iframes records, once
  // everything has loaded, whether each report's own script ran to its end.
  std::string frames;
  for (const auto& [name, args] : reports) frames += "<iframe src=\"" + make_report(dir, name, args) + "\"></iframe>";
  const std::string wrapper = dir.write(
      "all.html", "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>" + frames +
                      "<script>window.addEventListener('load',function(){var out=[];"
                      "document.querySelectorAll('iframe').forEach(function(f){var b=f.contentDocument&&f.contentDocument.body;"
                      "out.push(b?(b.getAttribute('data-ready')+':'+b.getAttribute('data-schema')):'no-access');});"
                      "document.body.setAttribute('data-frames',out.join(' '));});</script></body></html>");
  const depass::test::RunResult r = browse(dir, wrapper, "--allow-file-access-from-files --dump-dom");
  INFO("chromium stderr:\n" << r.err);
  REQUIRE(r.code == 0);
  CHECK(console_lines(r.err).empty());
  CHECK(r.out.find("data-frames=\"1:depass.tokens/1 1:depass.heads/1 1:depass.neurons/1 1:depass.generate/1 "
                   "1:depass.tokens/1 1:depass.heads/1\"") != std::string::npos);
}

TEST_CASE("HTML report: tokens are rendered with distinct colours for high and low scores", "[cli][browser]") {
  require_browser();
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(model, "stories260K/stories260K.bin");
  depass::test::TempDir dir;
  const std::string file =
      make_report(dir, "tokens.html", "tokens --model " + depass::test::sh(model) + " --prompt " + depass::test::sh(kPrompt));
  // A probe appended to a copy of the report records each visible token's computed
  // background colour after layout.
  std::string page = depass::test::read_file(file);
  const std::string probe =
      "<script>(function(){var out=[];document.querySelectorAll('.view:not([hidden]) .tokens .tok').forEach("
      "function(s){out.push([s.getAttribute('data-score'),getComputedStyle(s).backgroundColor,"
      "s.getBoundingClientRect().width]);});document.body.setAttribute('data-probe',JSON.stringify(out));})();</script>";
  page.insert(page.rfind("</body>"), probe);
  const std::string probed = dir.write("probe.html", page);
  const depass::test::RunResult r = browse(dir, probed, "--dump-dom");
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(console_lines(r.err).empty());
  const std::size_t at = r.out.find("data-probe=\"");
  REQUIRE(at != std::string::npos);
  const std::size_t from = at + 12, to = r.out.find('"', from);
  REQUIRE(to != std::string::npos);
  const nlohmann::json spans = nlohmann::json::parse(html_unescape(r.out.substr(from, to - from)));
  REQUIRE(spans.size() == 22);  // one span per token of the prompt (BOS + 21)
  std::size_t hi = 0, lo = 0;
  for (std::size_t i = 0; i < spans.size(); ++i) {
    CHECK(spans[i][2].get<double>() > 0);  // laid out with a visible width
    const double s = std::stod(spans[i][0].get<std::string>());
    if (s > std::stod(spans[hi][0].get<std::string>())) hi = i;
    if (s < std::stod(spans[lo][0].get<std::string>())) lo = i;
  }
  const RgbColour high = parse_rgb(spans[hi][1]), low = parse_rgb(spans[lo][1]);
  INFO("highest score at " << hi << ": " << spans[hi].dump() << ", lowest at " << lo << ": " << spans[lo].dump());
  CHECK(hi == 21);  // ' her' dominates the prediction of ' to'
  CHECK(high.r > 150);
  CHECK(high.r > high.b + 100);  // strongly red
  REQUIRE(std::stod(spans[lo][0].get<std::string>()) < 0);
  CHECK(low.b > low.r);  // negative: blue side
  CHECK((high.r != low.r || high.g != low.g || high.b != low.b));
  // Hover text carries the exact score.
  CHECK(r.out.find("score " + spans[hi][0].get<std::string>()) != std::string::npos);
}

TEST_CASE("HTML report: generate --explain has one selectable view per generated step", "[cli][browser]") {
  require_browser();
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(model, "stories260K/stories260K.bin");
  depass::test::TempDir dir;
  const std::string file = make_report(
      dir, "gen.html", "generate --model " + depass::test::sh(model) + " --prompt 'Once upon a time' --max-new 5 --explain");
  const depass::test::RunResult r = browse(dir, file, "--dump-dom");
  REQUIRE(r.code == 0);
  CHECK(console_lines(r.err).empty());
  const std::regex option("<option value=\"\\d+\"");
  const auto n_options = std::distance(std::sregex_iterator(r.out.begin(), r.out.end(), option), std::sregex_iterator());
  CHECK(n_options == 5);
  const std::regex view("<div class=\"view\" data-view=\"\\d+\"( hidden(=\"\")?)?>");
  std::size_t views = 0, visible = 0;
  for (auto it = std::sregex_iterator(r.out.begin(), r.out.end(), view); it != std::sregex_iterator(); ++it) {
    ++views;
    if (!(*it)[1].matched) ++visible;
  }
  CHECK(views == 5);
  CHECK(visible == 1);
}

TEST_CASE("HTML report: headless Chromium takes a screenshot", "[cli][browser]") {
  require_browser();
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(model, "stories260K/stories260K.bin");
  depass::test::TempDir dir;
  const std::string file =
      make_report(dir, "tokens.html", "tokens --model " + depass::test::sh(model) + " --prompt " + depass::test::sh(kPrompt));
  const std::string png = dir.path("report.png");
  const depass::test::RunResult r = browse(dir, file, "--screenshot=" + depass::test::sh(png));
  INFO(r.err);
  REQUIRE(r.code == 0);
  REQUIRE(depass::test::file_exists(png));
  const std::string bytes = depass::test::read_file(png);
  REQUIRE(bytes.size() > 24);
  CHECK(bytes.compare(0, 8, "\x89PNG\r\n\x1a\n", 8) == 0);
  auto be32 = [&](std::size_t at) {
    return (static_cast<unsigned>(static_cast<unsigned char>(bytes[at])) << 24) |
           (static_cast<unsigned>(static_cast<unsigned char>(bytes[at + 1])) << 16) |
           (static_cast<unsigned>(static_cast<unsigned char>(bytes[at + 2])) << 8) |
           static_cast<unsigned>(static_cast<unsigned char>(bytes[at + 3]));
  };
  CHECK(bytes.compare(12, 4, "IHDR") == 0);
  CHECK(be32(16) == 1000);
  CHECK(be32(20) == 700);
  CHECK(bytes.size() > 20000);  // a blank page compresses to a few kB; the report does not
}
