// depass::output text, CSV, terminal and HTML writers on hand-made documents.

#include <catch2/catch.hpp>
#include <depass/output/Output.hpp>

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
        "component,position,token_id,token_text,score\n"
        "token 0,0,1,<s>,0.5\n"
        "token 1,1,7,\" a,\"\"b\"\"\",-1\n"
        "token 2,2,9,\"\n\",4\n"
        "bias,,,,0\n");
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
  CHECK(text.find("target 5 ' x</script>' at position 2: logit 3.5000, prob 0.2500") != std::string::npos);
  CHECK(text.find('\x1b') == std::string::npos);
  CHECK(text.find("bias score") != std::string::npos);
  options.color = ColorMode::Ansi256;
  CHECK(render_terminal(tokens_doc(), options).find('\x1b') != std::string::npos);
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
