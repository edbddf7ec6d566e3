// depass::output text, CSV, terminal and HTML writers on hand-made documents.

#include <catch2/catch.hpp>
#include <depass/output/Output.hpp>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

using namespace depass::output;
using nlohmann::json;

namespace {

json tokens_doc() {
  return {{"schema", "depass.tokens/1"},
          {"model", "m.bin"},
          {"tokens", {{{"id", 1}, {"text", "<s>"}}, {{"id", 7}, {"text", " a,\"b\""}}, {{"id", 9}, {"text", "\n"}}}},
          {"position", 2},
          {"target", {{"id", 5}, {"text", " x</script>"}, {"logit", 3.5}, {"prob", 0.25}}},
          {"scores", {0.5, -1.0, 4.0}},
          {"bias_score", 0.0},
          {"residual_max_abs", 1e-15},
          {"alternatives", {{{"target", {{"id", 6}, {"text", "y"}, {"logit", 1.0}, {"prob", 0.1}}}, {"scores", {0.25, 0.25, 0.5}}, {"bias_score", 0.0}}}}};
}

}  // namespace

TEST_CASE("text helpers: UTF-8 repair, printable, exact numbers, colours", "[output]") {
  CHECK(valid_utf8("plain") == "plain");
  CHECK(valid_utf8("caf\xC3\xA9") == "caf\xC3\xA9");
  CHECK(valid_utf8("\xC3") == "\xEF\xBF\xBD");                       // truncated 2-byte sequence
  CHECK(valid_utf8("a\xFF" "b") == "a\xEF\xBF\xBD" "b");             // invalid byte
  CHECK(valid_utf8("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  CHECK(valid_utf8("\xF0\x9F\x98\x80") == "\xF0\x9F\x98\x80");
  CHECK(printable("a\nb\t\x01") == "a\\nb\\t\\x01");
  CHECK(exact_number(0.1) == "0.1");
  CHECK(std::stod(exact_number(1.0 / 3.0)) == 1.0 / 3.0);
  CHECK(exact_number(std::nan("")) == "nan");
  CHECK(signed_fixed(0.44829, 3) == "+0.448");
  const Rgb pos = diverging_colour(1, 1), neg = diverging_colour(-1, 1), zero = diverging_colour(0, 1);
  CHECK(hex(pos) == "#b2182b");
  CHECK(hex(neg) == "#2166ac");
  CHECK(hex(zero) == "#f7f7f7");
  CHECK(diverging_colour(5, 1) == pos);  // saturates
  CHECK(diverging_colour(1, 0) == zero);
  CHECK(diverging_colour(0.1, 1) != zero);  // small values stay visible (square-root scale)
  CHECK(text_colour_on(pos) == Rgb{255, 255, 255});
  CHECK(text_colour_on(zero) == Rgb{0, 0, 0});
}

TEST_CASE("csv: quoting and one row per component", "[output]") {
  CHECK(csv_field("plain") == "plain");
  CHECK(csv_field("a,b") == "\"a,b\"");
  CHECK(csv_field("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK(csv_field(" lead") == "\" lead\"");
  CHECK(csv_field("x\ny") == "\"x\ny\"");
  const std::string csv = to_csv_text(tokens_doc());
  CHECK(csv ==
        "component,position,token_id,token_text,score,reachable\n"
        "token 0,0,1,<s>,0.5,1\n"
        "token 1,1,7,\" a,\"\"b\"\"\",-1,1\n"
        "token 2,2,9,\"\n\",4,1\n"
        "bias,,,,0,\n");
  json heads = {{"schema", "depass.heads/1"}, {"n_heads", 2}, {"layers", {{{"layer", 0}, {"heads", {1.5, -2.0}}, {"residual_score", 3.0}, {"bias_score", 0.0}}}}};
  CHECK(to_csv_text(heads) == "layer,component,head,score\n0,residual,,3\n0,head,0,1.5\n0,head,1,-2\n0,bias,,0\n");
  CHECK_THROWS_AS(to_csv_text(json{{"schema", "depass.unknown/1"}}), std::invalid_argument);
  CHECK_THROWS_AS(to_csv_text(json{{"no", "schema"}}), std::invalid_argument);
}

TEST_CASE("terminal: colour mode, heatmap, tables", "[output]") {
  CHECK(detect_color_mode(false, nullptr, "truecolor", "xterm") == ColorMode::None);
  CHECK(detect_color_mode(true, "1", "truecolor", "xterm") == ColorMode::None);
  CHECK(detect_color_mode(true, "", "truecolor", "xterm") == ColorMode::TrueColor);  // empty NO_COLOR is ignored
  CHECK(detect_color_mode(true, nullptr, nullptr, "xterm-256color") == ColorMode::Ansi256);
  CHECK(detect_color_mode(true, nullptr, nullptr, "dumb") == ColorMode::None);
  CHECK(xterm256(Rgb{255, 0, 0}) == 196);
  CHECK(xterm256(Rgb{0, 0, 0}) == 16);
  CHECK(xterm256(Rgb{128, 128, 128}) == 244);

  const std::vector<std::string> toks = {"<s>", " big", " dog"};
  const std::vector<double> scores = {0.1, -2.0, 4.0};
  const std::string plain = token_heatmap(toks, scores, ColorMode::None);
  CHECK(plain == "['<s>' +0.100] [' big' -2.000] [' dog' +4.000] \n");
  const std::string colour = token_heatmap(toks, scores, ColorMode::TrueColor);
  CHECK(colour.find("\x1b[48;2;178;24;43m") != std::string::npos);  // the top score: full red
  CHECK(colour.find("\x1b[0m") != std::string::npos);
  CHECK(token_heatmap(toks, scores, ColorMode::Ansi256).find("\x1b[48;5;") != std::string::npos);
  // Wrapping.
  const std::string wrapped = token_heatmap(std::vector<std::string>(30, "word"), std::vector<double>(30, 1.0), ColorMode::None, 40);
  for (std::size_t start = 0, end; (end = wrapped.find('\n', start)) != std::string::npos; start = end + 1)
    CHECK(end - start <= 40);

  TerminalOptions options;
  const std::string text = render_terminal(tokens_doc(), options);
  CHECK(text.find("target 5 ' x</script>' at position 2: logit 3.5000, prob 0.25") != std::string::npos);
  CHECK(text.find('\x1b') == std::string::npos);
  CHECK(text.find("bias score") != std::string::npos);
  options.color = ColorMode::Ansi256;
  CHECK(render_terminal(tokens_doc(), options).find('\x1b') != std::string::npos);
}

TEST_CASE("terminal: depass tokenize shows token boundaries in colour, the table alone without", "[output]") {
  const nlohmann::json doc = {{"schema", "depass.tokenize/1"},
                              {"bos", true},
                              {"tokens", {{{"id", 1}, {"text", "<s>"}}, {{"id", 403}, {"text", "Once"}}, {{"id", 9}, {"text", " upon"}}}}};
  TerminalOptions options;
  const std::string plain = render_terminal(doc, options);
  CHECK(plain.find('\x1b') == std::string::npos);
  CHECK(plain.find("3 tokens (BOS included)") != std::string::npos);
  options.color = ColorMode::TrueColor;
  const std::string colour = render_terminal(doc, options);
  // The pieces in order on alternating backgrounds, then the same table.
  const std::string first = "\x1b[48;2;204;229;255m", second = "\x1b[48;2;255;224;178m";
  const std::size_t a = colour.find(first), b = colour.find(second), c = colour.find(first, a + 1);
  REQUIRE(a != std::string::npos);
  REQUIRE(b != std::string::npos);
  REQUIRE(c != std::string::npos);
  CHECK((a < b && b < c));
  CHECK(colour.find("<s>") > a);
  CHECK(colour.find("Once") > b);
  CHECK(colour.substr(colour.find("\n\n") + 2) == plain);
}

TEST_CASE("terminal: progress bar text, and disabled bars print nothing", "[output]") {
  CHECK(ProgressBar::format("tokens", 5, 20, 1.25, 10) == "tokens [##........]  25% 5/20 layers 1.2s");
  CHECK(ProgressBar::format("x", 30, 20, 0, 4) == "x [####] 100% 20/20 layers 0.0s");
  std::ostringstream quiet, loud;
  {
    ProgressBar bar(quiet, "run", 10, false);
    for (int i = 0; i < 10; ++i) bar.advance();
    CHECK(bar.done() == 10);
  }
  CHECK(quiet.str().empty());
  {
    ProgressBar bar(loud, "run", 3, true);
    bar.advance();
    bar.advance(2);
  }
  CHECK(loud.str().find("run [") != std::string::npos);
  CHECK(loud.str().find("\r\x1b[2K") != std::string::npos);  // cleared at the end
}

TEST_CASE("html: self-contained page, escaped text, one coloured span per token, one view per target", "[output]") {
  const std::string page = render_html(tokens_doc());
  CHECK(page.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(page.find("<style>") != std::string::npos);
  CHECK(page.find("src=") == std::string::npos);
  CHECK(page.find("href=") == std::string::npos);
  CHECK(page.find("@import") == std::string::npos);
  CHECK(page.find("url(") == std::string::npos);
  // The target text contains "</script>": escaped in HTML and in the embedded JSON.
  CHECK(page.find(" x</script>") == std::string::npos);
  CHECK(page.find("x&lt;/script&gt;") != std::string::npos);
  CHECK(page.find("x<\\/script>") != std::string::npos);
  CHECK(page.find("a,&quot;b&quot;") != std::string::npos);
  std::size_t spans = 0;
  for (std::size_t p = page.find("<span class=\"tok\""); p != std::string::npos; p = page.find("<span class=\"tok\"", p + 1)) ++spans;
  CHECK(spans == 6);  // 3 tokens x (target + 1 alternative)
  CHECK(page.find("data-score=\"4\" style=\"background:#b2182b;color:#ffffff\"") != std::string::npos);
  CHECK(page.find("data-score=\"-1\" style=\"background:") != std::string::npos);
  CHECK(page.find("<select id=\"view-select\">") != std::string::npos);
  CHECK(page.find("data-view=\"1\" hidden") != std::string::npos);
  CHECK(html_escape("<a href='x'>&") == "&lt;a href=&#39;x&#39;&gt;&amp;");

  json heads = {{"schema", "depass.heads/1"},
                {"tokens", {{{"id", 1}, {"text", "a"}}}},
                {"position", 0},
                {"target", {{"id", 2}, {"text", "b"}, {"logit", 1.0}, {"prob", 0.5}}},
                {"n_heads", 2},
                {"layers", {{{"layer", 0}, {"heads", {0.5, -0.5}}, {"residual_score", 1.0}, {"bias_score", 0.0}}}}};
  const std::string hp = render_html(heads);
  CHECK(hp.find("<table class=\"heatmap\">") != std::string::npos);
  CHECK(hp.find("<td class=\"cell\" data-score=\"0.5\"") != std::string::npos);
  CHECK(hp.find("<select") == std::string::npos);  // a single view: no selector
}

TEST_CASE("text: visible width ignores ANSI escapes and UTF-8 continuation bytes, significant digits", "[output]") {
  CHECK(display_width("abc") == 3);
  CHECK(display_width("caf\xC3\xA9") == 4);
  CHECK(display_width("\x1b[48;5;124m\x1b[38;5;231m+4.9645\x1b[0m") == 7);
  CHECK(display_width(colourise("+1.0", Rgb{178, 24, 43}, ColorMode::TrueColor)) == 4);
  CHECK(significant(0.678602) == "0.679");
  CHECK(significant(0.0312345) == "0.0312");
  CHECK(significant(5.9123e-05) == "5.91e-05");
  CHECK(significant(1.0) == "1");
  // A table with coloured cells: every line has the same visible width.
  const std::vector<std::vector<std::string>> rows = {
      {"1", colourise("+4.9645", Rgb{178, 24, 43}, ColorMode::Ansi256)}, {"10", colourise("-0.5", Rgb{33, 102, 172}, ColorMode::Ansi256)}};
  const std::string t = table({"rank", "score"}, rows, {true, true});
  std::vector<std::size_t> widths;
  for (std::size_t start = 0, end; (end = t.find('\n', start)) != std::string::npos; start = end + 1)
    widths.push_back(display_width(t.substr(start, end - start)));
  REQUIRE(widths.size() == 3);
  CHECK(widths[0] == widths[1]);
  CHECK(widths[1] == widths[2]);
  CHECK(ProgressBar::format("batch", 3, 4, 0.5, 4, "items") == "batch [###.]  75% 3/4 items 0.5s");
}

TEST_CASE("writers: unreachable positions, contrast, chunk residual in text, CSV, HTML and NPY", "[output]") {
  json doc = tokens_doc();
  doc["position"] = 1;
  doc["reachable_positions"] = 2;
  doc["scores"] = {0.5, -1.0, 0.0};
  doc["contrast"] = {{"id", 8}, {"text", "z"}, {"logit", 1.5}, {"prob", 0.0000123}};
  doc["logit_difference"] = 2.0;
  doc["chunk_residual_score"] = 0.75;
  doc["chunks"] = 2;
  const std::string text = render_terminal(doc);
  CHECK(text.find("target 5 ' x</script>' vs contrast 8 'z' at position 1: logit difference 2.0000 (3.5000 - 1.5000), "
                  "prob 0.25 vs 1.23e-05") != std::string::npos);
  CHECK(text.find("unreachable (after position 1, causal mask): '\\n'") != std::string::npos);
  CHECK(text.find("chunk residual +0.750000 (2 chunks)") != std::string::npos);
  CHECK(text.find("['\\n'") == std::string::npos);  // not in the heatmap
  const std::string csv = to_csv_text(doc);
  CHECK(csv.find("token 2,2,9,\"\n\",,0\n") != std::string::npos);
  CHECK(csv.find("chunk residual,,,,0.75,\n") != std::string::npos);
  const std::string page = render_html(doc);
  CHECK(page.find("<span class=\"tok unreachable\" data-pos=\"2\"") != std::string::npos);
  CHECK(page.find("logit difference <b>2.0000</b>") != std::string::npos);
  CHECK(page.find("chunk residual 0.7500") != std::string::npos);
  const NpyArray a = scores_array(doc);
  CHECK(a.shape == std::vector<std::size_t>{4});
  CHECK(a.data == std::vector<double>{0.5, -1.0, 0.0, 0.75});

  json modules = {{"schema", "depass.modules/1"},
                  {"modules",
                   {{{"layer", 0}, {"site", "attention"}, {"score", 1.0}, {"chunk_residual_score", 0.1}},
                    {{"layer", 0}, {"site", "mlp"}, {"score", 2.0}, {"chunk_residual_score", 0.2}}}}};
  const NpyArray m = scores_array(modules);
  CHECK(m.shape == std::vector<std::size_t>{1, 4});
  CHECK(m.data == std::vector<double>{1.0, 2.0, 0.1, 0.2});
  json heads = {{"schema", "depass.heads/1"},
                {"n_heads", 2},
                {"layers", {{{"layer", 0}, {"heads", {1.5, -2.0}}, {"residual_score", 3.0}, {"bias_score", 0.0}, {"chunk_residual_score", 0.5}}}}};
  CHECK(scores_array(heads).shape == std::vector<std::size_t>{1, 3});
  CHECK(to_csv_text(heads).find("0,chunk residual,,0.5\n") != std::string::npos);
  json generate = {{"schema", "depass.generate/1"},
                   {"steps", {{{"scores", {1.0}}, {"chunk_residual_score", 0.5}}, {{"scores", {1.0, 2.0}}, {"chunk_residual_score", 0.25}}}}};
  const NpyArray g = scores_array(generate);
  CHECK(g.shape == std::vector<std::size_t>{2, 3});
  CHECK(g.data[2] == 0.5);
  CHECK(std::isnan(g.data[1]));
  CHECK(g.data[5] == 0.25);
}

TEST_CASE("writers: a layer trace as a text table and an inline SVG line chart", "[output]") {
  json doc = tokens_doc();
  doc["trace"] = {{"position", 2},
                  {"boundaries", {0, 1, 2}},
                  {"boundary_names", {"before attention 0", "before mlp 0", "output"}},
                  {"components", {"token 0", "token 1", "token 2", "bias"}},
                  {"scores", {{0.0, 0.0, 1.0, 0.0}, {0.25, -0.5, 2.0, 0.0}, {0.5, -1.0, 4.0, 0.0}}},
                  {"lens", {1.0, 1.75, 3.5}}};
  TerminalOptions options;
  const std::string text = render_terminal(doc, options);
  CHECK(text.find("layer trace") != std::string::npos);
  CHECK(text.find("before mlp 0") != std::string::npos);
  CHECK(text.find("2 '\\n'") != std::string::npos);  // the strongest component, by its token
  const std::string page = render_html(doc);
  CHECK(page.find("<svg class=\"trace\"") != std::string::npos);
  CHECK(page.find("xmlns") == std::string::npos);
  std::size_t lines = 0;
  for (std::size_t p = page.find("<polyline class=\"series\""); p != std::string::npos; p = page.find("<polyline class=\"series\"", p + 1))
    ++lines;
  CHECK(lines == 6);  // 4 components (all shown), the rest (none), the lens
  CHECK(page.find("data-name=\"total (logit lens)\" fill=\"none\" stroke=\"#222222\" stroke-width=\"2\" stroke-dasharray") !=
        std::string::npos);
  CHECK(page.find("<title>2 &#39;\\n&#39; at output: 4</title>") != std::string::npos);
}
