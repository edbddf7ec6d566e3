// The CLI features of issue #11, with numbers: targets by text (the token rule on three
// tokenizer families, in-process and end to end), --contrast (the difference of two runs,
// and the library's difference on every command), depass tokenize, --prompt-file, JSON-lines
// batches (order, bad lines, stdin), one-pass generate --explain (equal to the per-step
// path), layer traces (sum to the real logit lens, output row = final scores, NPY, HTML
// chart) and the chunk residual in every output format.

#include <catch2/catch.hpp>
#include <depass/LogitTrace.hpp>
#include <depass/depass.hpp>
#include <depass/output/Npy.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "../../examples/depass/Inputs.hpp"  // the token rule, tested in-process below
#include "CliSupport.hpp"
#include "support/Goldens.hpp"
#include "support/Models.hpp"
#include "support/TestSupport.hpp"

using namespace depass;
using nlohmann::json;

namespace {

using test::kStories;
using test::kPrompt;
using test::kStoriesIds;
using test::kTinyIds;
using test::npos;

using test::ids_arg;

std::string tiny_dir() { return test::model_dir() + "/tinystories-656k"; }
std::string gpt2_dir() { return test::source_dir() + "/tests/data/families/gpt2"; }

using test::run_json;

/// Runs `depass ARGS < stdin_file` (a shell does the redirection).
test::RunResult run_with_stdin(const std::string& args, const std::string& stdin_file) {
  return test::run_program("/bin/sh", "-c " + test::sh(test::sh(test::cli_path()) + " " + args + " < " + test::sh(stdin_file)));
}

using test::close;

std::vector<double> numbers(const json& list) {
  std::vector<double> v;
  for (const json& x : list) v.push_back(x.get<double>());
  return v;
}

/// The real logit lens at `position`, boundary by boundary, from a plain forward pass's
/// hook states, normed by hand (RMSNorm written out; the test models have no offsets).
std::map<int, double> lens_by_hand(const Model<double>& model, const std::vector<int>& ids, long position, int target, int foil) {
  std::map<int, double> lens;
  Vector<double> u = model.weights().unembedding().row(target).transpose();
  if (foil >= 0) u -= model.weights().unembedding().row(foil).transpose();
  model.forward(ids, [&](const HookEvent<double>& e) {
    const std::string name = e.name;
    const int b = name == "embed" ? 0 : name == "attn_resid" ? 2 * e.layer + 1 : name == "layer_out" ? 2 * e.layer + 2 : -1;
    if (b < 0) return;
    const Vector<double> x = e.value.row(position).transpose();
    const double r = 1.0 / std::sqrt(x.squaredNorm() / static_cast<double>(x.size()) + model.config().norm_eps);
    lens[b] = (x * r).cwiseProduct(model.weights().final_norm).dot(u);
  });
  return lens;
}

std::string refusal(const Tokenizer& t, const std::string& spec) {
  try {
    cli::resolve_token(spec, "--target", t.vocab_size(), &t, false);
  } catch (const cli::UsageError& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST_CASE("Targets by text: exact pieces, the dummy-prefix space, several tokens, unknown text (three tokenizer families)",
          "[cli][targets]") {
  DEPASS_REQUIRE_MODEL(tok512, "stories260K/tok512.bin");
  DEPASS_REQUIRE_MODEL(tiny_json, "tinystories-656k/tokenizer.json");
  const Tokenizer stories = Tokenizer::from_llama2c(tok512, 512);
  const Tokenizer tiny = Tokenizer::from_huggingface(tiny_dir());
  const Tokenizer gpt2 = Tokenizer::from_huggingface(gpt2_dir());
  auto token = [](const Tokenizer& t, const std::string& spec, bool first = false) {
    return cli::resolve_token(spec, "--target", t.vocab_size(), &t, first);
  };
  auto pieces = [](const Tokenizer& t, const std::vector<int>& ids) {
    std::string s;
    for (int id : ids) s += t.piece(id);
    return s;
  };
  // Integers are ids; id: and text: force either reading.
  CHECK(token(stories, "267") == 267);
  CHECK(token(stories, "id:267") == 267);
  CHECK(refusal(stories, "512").find("--target 512 is not a token id of this model (allowed 0..511)") != npos);
  CHECK(refusal(stories, "id:x").find("'id:' must be followed by a token id") != npos);
  CHECK(refusal(stories, "").find("the token text is empty") != npos);
  CHECK(refusal(stories, "text:").find("the token text is empty") != npos);

  // stories260K (llama2.c SentencePiece, dummy prefix). An exact piece wins; among equal
  // pieces the one the tokenizer produces: "5" is byte token 56 and merged piece 480.
  REQUIRE(stories.piece(267) == " to");
  CHECK(token(stories, " to") == 267);
  REQUIRE(stories.piece(56) == "5");
  REQUIRE(stories.piece(480) == "5");
  REQUIRE(stories.encode("5", false) == std::vector<int>({410, 480}));  // the dummy-prefix space, then "5"
  CHECK(token(stories, "text:5") == 480);
  // " Lily" is one piece; "Lily" without the space is not " Lily" but two pieces.
  REQUIRE(stories.piece(317) == " Lily");
  CHECK(token(stories, " Lily") == 317);
  REQUIRE(stories.encode("Lily", false) == std::vector<int>({317}));  // the dummy space fused: not usable
  CHECK(refusal(stories, "Lily").find("'Lily' is 2 tokens: 438 'L', 310 'ily'") != npos);
  CHECK(pieces(stories, {438, 310}) == "Lily");
  // Several tokens: refused with ids and pieces, or the first with --target-position first.
  CHECK(refusal(stories, " girl").find("' girl' is 3 tokens: 298 ' g', 315 'ir', 421 'l'; give one token") != npos);
  CHECK(refusal(stories, " girl").find("--target-position first") != npos);
  CHECK(pieces(stories, {298, 315, 421}) == " girl");
  CHECK(token(stories, " girl", true) == 298);
  CHECK(token(stories, "girl", true) == 428);
  CHECK(stories.piece(428) == "g");

  // TinyStories-656K (tokenizer.json; the normalizer prepends U+2581, spaces end words).
  REQUIRE(tiny.piece(1132) == "girl");
  CHECK(token(tiny, "girl") == 1132);
  CHECK(refusal(tiny, " girl").find("' girl' is 2 tokens: 80 ' ', 1132 'girl'") != npos);
  CHECK(token(tiny, " girl", true) == 80);
  CHECK(refusal(tiny, "\xE2\x98\x83").find("is not in the vocabulary and cannot be spelled with it (it encodes to 80 ' ', 0 '<unk>')") !=
        npos);

  // Byte-level BPE (GPT-2 family): no dummy prefix.
  REQUIRE(gpt2.piece(401) == " girl");
  CHECK(token(gpt2, " girl") == 401);
  CHECK(token(gpt2, "Lily") == 274);
  CHECK(token(gpt2, " Lily") == 279);
  CHECK(refusal(gpt2, "ing").find("'ing' is 2 tokens: 313 'in', 70 'g'") != npos);
  CHECK(pieces(gpt2, {313, 70}) == "ing");
  CHECK(token(gpt2, "ing", true) == 313);
}

TEST_CASE("depass tokens --target TEXT equals --target ID, several tokens refused unless --target-position first",
          "[cli][targets]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  DEPASS_REQUIRE_MODEL(tiny_json, "tinystories-656k/tokenizer.json");
  const std::string m = "tokens --model " + test::sh(stories) + " --prompt " + test::sh(kPrompt) + " --alternatives 0";
  const json by_text = run_json(m + " --target ' with'");
  const json by_id = run_json(m + " --target 335");
  CHECK(by_text["target"]["id"] == 335);
  CHECK(by_text["target"]["text"] == " with");
  CHECK(by_text["scores"] == by_id["scores"]);
  test::RunResult r = test::run_cli(m + " --target ' girl'");
  CHECK(r.code == 2);
  CHECK(r.err.find("--target ' girl' is 3 tokens: 298 ' g', 315 'ir', 421 'l'") != npos);
  CHECK(run_json(m + " --target ' girl' --target-position first")["target"]["id"] == 298);
  r = test::run_cli(m + " --target ' girl' --target-position last");
  CHECK(r.code == 2);
  CHECK(r.err.find("--target-position must be 'only'") != npos);
  // Hugging Face SentencePiece and byte-level BPE checkpoints.
  CHECK(run_json("tokens --model " + test::sh(tiny_dir()) + " --prompt 'Once upon a time, there was a little' --target girl")
            ["target"]["id"] == 1132);
  r = test::run_cli("tokens --model " + test::sh(tiny_dir()) + " --prompt 'Once upon a time' --target '\xE2\x98\x83'");
  CHECK(r.code == 2);
  CHECK(r.err.find("is not in the vocabulary") != npos);
  const json gpt2 = run_json("tokens --model " + test::sh(gpt2_dir()) + " --ids 406,40,83,120,7 --target ' girl'");
  CHECK(gpt2["target"]["id"] == 401);
  CHECK(gpt2["target"]["text"] == " girl");
}

TEST_CASE("depass --contrast: scores of logit(target) - logit(foil) equal the difference of two runs", "[cli][contrast]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const std::string m = "tokens --model " + test::sh(stories) + " --prompt " + test::sh(kPrompt) + " --alternatives 0";
  const json both = run_json(m + " --target ' to' --contrast ' with'");
  const json to = run_json(m + " --target 267"), with = run_json(m + " --target 335");
  CHECK(both["target"]["id"] == 267);
  CHECK(both["contrast"]["id"] == 335);
  CHECK(both["contrast"]["text"] == " with");
  CHECK(both["contrast"]["logit"] == with["target"]["logit"]);
  CHECK(close(both["logit_difference"].get<double>(), to["target"]["logit"].get<double>() - with["target"]["logit"].get<double>()));
  REQUIRE(both["scores"].size() == to["scores"].size());
  double total = both["bias_score"].get<double>();
  for (std::size_t i = 0; i < both["scores"].size(); ++i) {
    CHECK(close(both["scores"][i].get<double>(), to["scores"][i].get<double>() - with["scores"][i].get<double>(), 1e-10));
    total += both["scores"][i].get<double>();
  }
  CHECK(std::abs(total - both["logit_difference"].get<double>()) < 1e-9);
  CHECK(both["bias_score"].get<double>() == to["bias_score"].get<double>() - with["bias_score"].get<double>());
  // The foil must differ from the target, explicit or default (the top prediction, ' to').
  test::RunResult r = test::run_cli(m + " --target 267 --contrast ' to'");
  CHECK(r.code == 2);
  CHECK(r.err.find("the contrast token 267 is the target itself") != npos);
  r = test::run_cli(m + " --contrast 267");
  CHECK(r.code == 2);
  CHECK(r.err.find("is the model's top prediction, which is the default target") != npos);
}

TEST_CASE("depass --contrast on modules, heads, neurons, subspace and decode equals the library's difference", "[cli][contrast]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const Model<double>& model = test::cached_model<double>(stories);
  const Decomposer<double> decomposer(model);
  const long last = static_cast<long>(kStoriesIds.size()) - 1;
  const int t = 298, f = 376;  // ' g', ' little'
  auto diff = [&](const Initialisation<double>& init) {
    const Decomposition<double> d = decomposer.run(kStoriesIds, init);
    return Vector<double>(d.component_logits(last, t) - d.component_logits(last, f));
  };
  const std::string m = "--model " + test::sh(stories) + " --ids " + ids_arg(kStoriesIds) + " --target 298 --contrast ' little'";
  const json heads = run_json("heads " + m + " --layer 3");
  const Vector<double> h = diff(Initialisation<double>::heads(3));
  CHECK(heads["contrast"]["id"] == f);
  for (int k = 0; k < 8; ++k) CHECK(close(heads["layers"][0]["heads"][static_cast<std::size_t>(k)].get<double>(), h(1 + k), 1e-10));
  CHECK(close(heads["layers"][0]["residual_score"].get<double>(), h(0), 1e-10));
  const json modules = run_json("modules " + m);
  for (const json& entry : modules["modules"]) {
    const Vector<double> s = diff(Initialisation<double>::module_output(entry["layer"].get<int>(),
                                                                         entry["site"] == "mlp" ? Site::Mlp : Site::Attention));
    CHECK(close(entry["score"].get<double>(), s(1), 1e-10));
    CHECK(std::abs(entry["score"].get<double>() + entry["residual_score"].get<double>() + entry["bias_score"].get<double>() -
                   modules["logit_difference"].get<double>()) < 1e-9);
  }
  const json neurons = run_json("neurons " + m + " --layer 2");
  const Vector<double> n = diff(Initialisation<double>::neuron_outputs(2));
  for (std::size_t k = 0; k < neurons["scores"].size(); ++k)
    CHECK(close(neurons["scores"][k].get<double>(), n(static_cast<Eigen::Index>(k) + 1), 1e-10));
  const json decode = run_json("decode " + m + " --init heads --layer 1");
  const Vector<double> dh = diff(Initialisation<double>::heads(1));
  for (std::size_t k = 0; k < decode["components"].size(); ++k)
    CHECK(close(decode["components"][k]["score"].get<double>(), dh(static_cast<Eigen::Index>(k)), 1e-10));
  test::TempDir dir;
  Eigen::MatrixXd basis = Eigen::MatrixXd::Zero(64, 2);
  basis(3, 0) = basis(40, 1) = 1;
  output::save_npy(dir.path("b.npy"), output::NpyArray::from_matrix(basis));
  const json sub = run_json("subspace " + m + " --layer 1 --basis " + test::sh(dir.path("b.npy")));
  const Vector<double> ds = diff(Initialisation<double>::subspaces(Boundary::before_attention(1), {basis}));
  for (std::size_t k = 0; k < sub["components"].size(); ++k)
    CHECK(close(sub["components"][k]["score"].get<double>(), ds(static_cast<Eigen::Index>(k)), 1e-10));
}

TEST_CASE("depass generate --explain --contrast: every step explains logit(token) - logit(foil)", "[cli][contrast]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const Model<double>& model = test::cached_model<double>(stories);
  const json doc = run_json("generate --model " + test::sh(stories) + " --prompt 'Once upon a time' --max-new 6 --explain --contrast ' a'");
  std::vector<int> sequence;
  for (const json& t : doc["tokens"]) sequence.push_back(t["id"].get<int>());
  sequence.pop_back();
  const Decomposition<double> d = Decomposer<double>(model).run(sequence, Initialisation<double>::tokens());
  REQUIRE(doc["steps"].size() == 6);
  bool saw_foil = false;
  for (const json& step : doc["steps"]) {
    const long p = step["position"].get<long>();
    const int token = step["token"]["id"].get<int>();
    CHECK(step["contrast"]["id"] == 261);
    if (token == 261) {  // ", there was a ...": the step that chose the foil explains nothing
      saw_foil = true;
      CHECK(step["token_is_contrast"] == true);
      for (const json& s : step["scores"]) CHECK(s.get<double>() == 0);
      continue;
    }
    const Vector<double> expected = d.component_logits(p, token) - d.component_logits(p, 261);
    double total = step["bias_score"].get<double>();
    for (long m = 0; m <= p; ++m) {
      CHECK(close(step["scores"][static_cast<std::size_t>(m)].get<double>(), expected(m), 1e-10));
      total += step["scores"][static_cast<std::size_t>(m)].get<double>();
    }
    CHECK(std::abs(total - step["logit_difference"].get<double>()) < 1e-9);
  }
  CHECK(saw_foil);
}

TEST_CASE("depass tokenize: ids and pieces with and without BOS, from --prompt, --prompt-file and stdin", "[cli][tokenize]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  DEPASS_REQUIRE_MODEL(tok512, "stories260K/tok512.bin");
  DEPASS_REQUIRE_MODEL(tiny_json, "tinystories-656k/tokenizer.json");
  const Tokenizer tokenizer = Tokenizer::from_llama2c(tok512, 512);
  const std::string text = "Once upon a time, Lily";
  const json with = run_json("tokenize --model " + test::sh(stories) + " --prompt " + test::sh(text));
  CHECK(with["schema"] == "depass.tokenize/1");
  CHECK(with["bos"] == true);
  const std::vector<int> ids = tokenizer.encode(text, true);
  REQUIRE(with["tokens"].size() == ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    CHECK(with["tokens"][i]["id"] == ids[i]);
    CHECK(with["tokens"][i]["text"] == (i == 0 ? std::string("<s>") : tokenizer.piece(ids[i])));
  }
  const json without = run_json("tokenize --tokenizer " + test::sh(tok512) + " --prompt " + test::sh(text) + " --no-bos");
  CHECK(without["bos"] == false);
  REQUIRE(without["tokens"].size() == ids.size() - 1);
  CHECK(without["tokens"][0]["id"] == ids[1]);
  // The text table: position, id, piece.
  test::RunResult r = test::run_cli("tokenize --model " + test::sh(stories) + " --prompt " + test::sh(text));
  REQUIRE(r.code == 0);
  CHECK(r.out.find("    0   1 '<s>'") != npos);
  CHECK(r.out.find("    1 403 ' Once'") != npos);
  CHECK(r.out.find(std::to_string(ids.size()) + " tokens (BOS included)") != npos);
  // The same text from a file (one trailing newline dropped) and from stdin.
  test::TempDir dir;
  const std::string file = dir.write("prompt.txt", text + "\n");
  CHECK(run_json("tokenize --model " + test::sh(stories) + " --prompt-file " + test::sh(file))["tokens"] == with["tokens"]);
  r = run_with_stdin("tokenize --model " + test::sh(stories) + " --prompt-file - --format json", file);
  REQUIRE(r.code == 0);
  CHECK(json::parse(r.out)["tokens"] == with["tokens"]);
  // Hugging Face tokenizer; --ids shows pieces; NPY holds the ids as int64.
  const json tiny = run_json("tokenize --model " + test::sh(tiny_dir()) + " --prompt ' girl' --no-bos");
  CHECK(tiny["tokens"] == json::parse(R"([{"id":80,"text":" "},{"id":80,"text":" "},{"id":1132,"text":"girl"}])"));
  const json pieces = run_json("tokenize --model " + test::sh(stories) + " --ids 403,317");
  CHECK(pieces["tokens"][1]["text"] == " Lily");
  CHECK(pieces["text"] == tokenizer.decode({403, 317}));
  r = test::run_cli("tokenize --model " + test::sh(stories) + " --prompt " + test::sh(text) + " --output " + test::sh(dir.path("ids.npy")) +
                    " --quiet");
  REQUIRE(r.code == 0);
  CHECK(r.out.empty());
  const output::NpyArray a = output::load_npy(dir.path("ids.npy"));
  CHECK(a.type == output::NpyType::Int64);
  REQUIRE(a.shape == std::vector<std::size_t>{ids.size()});
  for (std::size_t i = 0; i < ids.size(); ++i) CHECK(a.data[i] == ids[i]);
}

TEST_CASE("depass tokens --prompt-file (file or stdin) equals --prompt", "[cli][inputs]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  test::TempDir dir;
  const std::string file = dir.write("p.txt", std::string(kPrompt) + "\r\n");
  const std::string m = "tokens --model " + test::sh(stories) + " --alternatives 1";
  const json direct = run_json(m + " --prompt " + test::sh(kPrompt));
  const json from_file = run_json(m + " --prompt-file " + test::sh(file));
  CHECK(from_file["tokens"] == direct["tokens"]);
  CHECK(from_file["scores"] == direct["scores"]);
  const test::RunResult r = run_with_stdin(m + " --prompt-file - --format json", file);
  REQUIRE(r.code == 0);
  CHECK(json::parse(r.out)["scores"] == direct["scores"]);
  const test::RunResult missing = test::run_cli(m + " --prompt-file " + test::sh(dir.path("nope.txt")));
  CHECK(missing.code == 1);
  CHECK(missing.err.find("cannot open --prompt-file") != npos);
}

TEST_CASE("depass tokens --batch: JSON lines in input order, bad lines reported in place, exit status 1", "[cli][batch]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const Model<double>& model = test::cached_model<double>(stories);
  test::TempDir dir;
  const std::string batch = dir.write("b.jsonl",
                                      "{\"prompt\": \"Once upon a time there was a\", \"target\": \" little\"}\n"  // 1
                                      "{\"ids\": [1, 403, 407, 261, 378], \"position\": 3, \"contrast\": 298}\n"  // 2
                                      "\n"                                                                      // 3 (blank)
                                      "{\"prompt\": \"x\", \"taget\": 5}\n"                                     // 4
                                      "not json\n"                                                              // 5
                                      "{\"prompt\": \"a\", \"ids\": [1]}\n"                                     // 6
                                      "{\"ids\": [1, 9999]}\n"                                                  // 7
                                      "{\"prompt\": \"Hi\", \"target\": \"xyzzy\"}\n"                           // 8
                                      "{\"prompt\": \"Hi\", \"position\": 55}\n"                                // 9
                                      "{\"prompt\": \"\"}\n"                                                    // 10
                                      "{\"ids\": [1, 403, 407], \"target\": 267}\n");                           // 11
  const test::RunResult r = test::run_cli("tokens --model " + test::sh(stories) + " --batch " + test::sh(batch) + " --alternatives 0");
  INFO(r.err);
  CHECK(r.code == 1);
  std::vector<json> lines;
  std::istringstream out(r.out);
  for (std::string line; std::getline(out, line);) lines.push_back(json::parse(line));
  REQUIRE(lines.size() == 10);  // one per non-blank input line, in order
  const std::vector<long> numbers_expected = {1, 2, 4, 5, 6, 7, 8, 9, 10, 11};
  for (std::size_t i = 0; i < lines.size(); ++i) CHECK(lines[i]["line"] == numbers_expected[i]);
  const std::vector<std::pair<long, std::string>> errors = {
      {4, "unknown field \"taget\" (did you mean \"target\"?)"},
      {5, "invalid JSON"},
      {6, "give exactly one of \"prompt\" and \"ids\""},
      {7, "field ids: token id 9999 at position 1 is unknown"},
      {8, "field target 'xyzzy' is 5 tokens"},
      {9, "field position 55 is out of range"},
      {10, "field prompt is empty"}};
  for (const auto& [line, message] : errors) {
    const json& e = lines[static_cast<std::size_t>(std::find(numbers_expected.begin(), numbers_expected.end(), line) - numbers_expected.begin())];
    INFO("line " << line << ": " << e.dump());
    CHECK(e["schema"] == "depass.error/1");
    CHECK(e["error"].get<std::string>().find(message) != npos);
    CHECK(r.err.find("depass tokens: line " + std::to_string(line) + ": " + message) != npos);
  }
  CHECK(r.err.find("7 of 10 batch lines failed") != npos);
  // The good lines equal the library (and line 1 a single run).
  CHECK(lines[0]["target"]["id"] == 376);
  const json single = run_json("tokens --model " + test::sh(stories) + " --prompt 'Once upon a time there was a' --target 376 --alternatives 0");
  CHECK(lines[0]["scores"] == single["scores"]);
  const std::vector<int> ids2 = {1, 403, 407, 261, 378};
  const Decomposition<double> d = Decomposer<double>(model).run(ids2, Initialisation<double>::tokens());
  const int top = lines[1]["target"]["id"].get<int>();
  Eigen::Index best = 0;
  d.logits(3).maxCoeff(&best);
  CHECK(top == best);
  CHECK(lines[1]["contrast"]["id"] == 298);
  CHECK(lines[1]["position"] == 3);
  const Vector<double> expected = d.component_logits(3, top) - d.component_logits(3, 298);
  for (std::size_t m = 0; m < ids2.size(); ++m) CHECK(close(lines[1]["scores"][m].get<double>(), expected(static_cast<Eigen::Index>(m)), 1e-10));
  CHECK(lines[9]["target"]["id"] == 267);
}

TEST_CASE("depass heads/neurons/modules --batch: stdin, --output, command-line defaults", "[cli][batch]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  test::TempDir dir;
  const std::string input = dir.write("in.jsonl", "{\"ids\": [1, 403, 407, 261, 378]}\n{\"ids\": [1, 403, 407], \"position\": 1}\n");
  const std::string m = "--model " + test::sh(stories);
  const test::RunResult r = run_with_stdin("heads " + m + " --layer 2 --batch - --target 261 --output " + test::sh(dir.path("o.jsonl")), input);
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(r.out.empty());
  CHECK(r.err.find("wrote") != npos);
  std::istringstream out(test::read_file(dir.path("o.jsonl")));
  std::vector<json> lines;
  for (std::string line; std::getline(out, line);) lines.push_back(json::parse(line));
  REQUIRE(lines.size() == 2);
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(lines[i]["line"] == i + 1);
    CHECK(lines[i]["schema"] == "depass.heads/1");
    CHECK(lines[i]["target"]["id"] == 261);  // the command line's --target as the default
  }
  CHECK(lines[1]["position"] == 1);
  const json single = run_json("heads " + m + " --layer 2 --ids 1,403,407,261,378 --target 261");
  CHECK(lines[0]["layers"] == single["layers"]);
  // neurons and modules take batches too.
  const std::string one = dir.write("one.jsonl", "{\"ids\": [1, 403, 407, 261], \"target\": \" time\"}\n");
  test::RunResult n = test::run_cli("neurons " + m + " --layer 1 --batch " + test::sh(one));
  REQUIRE(n.code == 0);
  CHECK(json::parse(n.out)["scores"] == run_json("neurons " + m + " --layer 1 --ids 1,403,407,261 --target 378")["scores"]);
  n = test::run_cli("modules " + m + " --batch " + test::sh(one));
  REQUIRE(n.code == 0);
  CHECK(json::parse(n.out)["modules"] == run_json("modules " + m + " --ids 1,403,407,261 --target 378")["modules"]);
  // Options that need a single input are refused with --batch.
  n = test::run_cli("tokens " + m + " --batch " + test::sh(one) + " --prompt hi");
  CHECK(n.code == 2);
  CHECK(n.err.find("--prompt does not apply with --batch") != npos);
  n = test::run_cli("tokens " + m + " --batch " + test::sh(one) + " --format csv");
  CHECK(n.code == 2);
  n = test::run_cli("tokens " + m + " --batch " + test::sh(dir.path("missing.jsonl")));
  CHECK(n.code == 1);
  CHECK(n.err.find("cannot open --batch") != npos);
}

TEST_CASE("depass generate --explain: one pass over the sequence equals the per-step runs (both models)", "[cli][generate]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  DEPASS_REQUIRE_MODEL(tiny_json, "tinystories-656k/tokenizer.json");
  const std::vector<std::string> runs = {
      "--model " + test::sh(stories) + " --prompt 'Once upon a time' --max-new 7",
      "--model " + test::sh(stories) + " --prompt 'Once upon a time' --max-new 7 --mlp-split proportional",
      "--model " + test::sh(tiny_dir()) + " --prompt 'Once upon a time,' --max-new 5",
      "--model " + test::sh(tiny_dir()) + " --prompt 'Once upon a time,' --max-new 5 --temperature 0.5 --no-bos-sink"};
  for (const std::string& run : runs) {
    INFO(run);
    const json one = run_json("generate --explain " + run);
    const json per_step = run_json("generate --explain --per-step " + run);
    CHECK(one["explained_in"] == "one pass");
    CHECK(per_step["explained_in"] == "one pass per step");
    CHECK(one["tokens"] == per_step["tokens"]);
    REQUIRE(one["steps"].size() == per_step["steps"].size());
    REQUIRE(!one["steps"].empty());
    for (std::size_t t = 0; t < one["steps"].size(); ++t) {
      const json &a = one["steps"][t], &b = per_step["steps"][t];
      INFO("step " << t);
      CHECK(a["position"] == b["position"]);
      CHECK(a["token"]["id"] == b["token"]["id"]);
      CHECK(close(a["token"]["logit"].get<double>(), b["token"]["logit"].get<double>(), 1e-11));
      CHECK(close(a["bias_score"].get<double>(), b["bias_score"].get<double>(), 1e-11));
      REQUIRE(a["scores"].size() == b["scores"].size());
      const std::vector<double> x = numbers(a["scores"]), y = numbers(b["scores"]);
      double scale = 0;
      for (double v : y) scale = std::max(scale, std::abs(v));
      for (std::size_t m = 0; m < x.size(); ++m) CHECK(std::abs(x[m] - y[m]) <= 1e-11 * std::max(1.0, scale));
    }
  }
}

TEST_CASE("depass tokens --trace: components sum to the real logit lens at every boundary, the output row is the scores",
          "[cli][trace]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const Model<double>& model = test::cached_model<double>(stories);
  test::TempDir dir;
  const long position = 9;
  for (const std::string contrast : {"", " --contrast 376"}) {
    INFO("contrast: " << contrast);
    const json doc = run_json("tokens --model " + test::sh(stories) + " --ids " + ids_arg(kStoriesIds) + " --position 9 --trace" +
                              contrast + " --trace-npy " + test::sh(dir.path("trace.npy")));
    const int target = doc["target"]["id"].get<int>(), foil = contrast.empty() ? -1 : 376;
    const json& trace = doc["trace"];
    CHECK(trace["position"] == position);
    REQUIRE(trace["boundaries"].size() == 11);  // before attention 0 ... output of 5 layers
    CHECK(trace["boundary_names"][0] == "before attention 0");
    CHECK(trace["boundary_names"][10] == "output");
    REQUIRE(trace["components"].size() == kStoriesIds.size() + 1);
    CHECK(trace["components"].back() == "bias");
    const std::map<int, double> lens = lens_by_hand(model, kStoriesIds, position, target, foil);
    for (std::size_t b = 0; b < 11; ++b) {
      INFO("boundary " << b);
      double sum = 0;
      for (const json& v : trace["scores"][b]) sum += v.get<double>();
      CHECK(close(sum, lens.at(static_cast<int>(b)), 1e-10));
      CHECK(close(trace["lens"][b].get<double>(), lens.at(static_cast<int>(b)), 1e-10));
    }
    // Output row == final scores; tokens after the position contribute nothing anywhere.
    for (std::size_t m = 0; m < kStoriesIds.size(); ++m) CHECK(close(trace["scores"][10][m].get<double>(), doc["scores"][m].get<double>(), 1e-10));
    for (std::size_t b = 0; b < 11; ++b) CHECK(trace["scores"][b][11].get<double>() == 0);
    const output::NpyArray npy = output::load_npy(dir.path("trace.npy"));
    REQUIRE(npy.shape == std::vector<std::size_t>{11, kStoriesIds.size() + 1});
    CHECK(npy.data[3 * 13 + 4] == trace["scores"][3][4].get<double>());
    CHECK(doc["trace_file"]["shape"] == json::array({11, 13}));
  }
  // The HTML report draws it: an inline SVG line chart.
  const test::RunResult r = test::run_cli("tokens --model " + test::sh(stories) + " --ids " + ids_arg(kStoriesIds) + " --trace --output " +
                                          test::sh(dir.path("t.html")));
  REQUIRE(r.code == 0);
  const std::string html = test::read_file(dir.path("t.html"));
  CHECK(html.find("<svg class=\"trace\"") != npos);
  CHECK(html.find("data-name=\"total (logit lens)\"") != npos);
  // Six strongest components, the rest summed, the real state's lens: 8 lines.
  std::size_t lines = 0;
  for (std::size_t p = html.find("<polyline class=\"series\""); p != npos; p = html.find("<polyline class=\"series\"", p + 1)) ++lines;
  CHECK(lines == 8);
  CHECK(r.out.find("layer trace (logit lens of each component at each boundary)") != npos);
}

TEST_CASE("depass heads/modules --trace start at their layer, --trace refuses chunking", "[cli][trace]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  const std::string m = "--model " + test::sh(stories) + " --ids " + ids_arg(kStoriesIds);
  const json heads = run_json("heads " + m + " --layer 3 --trace");
  const json& trace = heads["layers"][0]["trace"];
  CHECK(trace["boundaries"] == json::array({7, 8, 9, 10}));
  CHECK(trace["components"][1] == "head 0");
  for (int h = 0; h < 8; ++h)
    CHECK(close(trace["scores"][3][static_cast<std::size_t>(h + 1)].get<double>(),
                heads["layers"][0]["heads"][static_cast<std::size_t>(h)].get<double>(), 1e-10));
  const json modules = run_json("modules " + m + " --trace");
  for (const json& entry : modules["modules"]) {
    const json& t = entry["trace"];
    CHECK(t["boundaries"][0] == 2 * entry["layer"].get<int>() + (entry["site"] == "mlp" ? 2 : 1));
    CHECK(close(t["scores"].back()[1].get<double>(), entry["score"].get<double>(), 1e-10));
    CHECK(close(t["lens"].back().get<double>(), modules["target"]["logit"].get<double>(), 1e-10));
  }
  test::RunResult r = test::run_cli("tokens " + m + " --trace --chunk-size 4");
  CHECK(r.code == 2);
  CHECK(r.err.find("--trace follows one pass over all components") != npos);
  r = test::run_cli("heads " + m + " --trace-npy x.npy");
  CHECK(r.code == 2);
  CHECK(r.err.find("--trace-npy needs a single decomposition") != npos);
}

TEST_CASE("Chunked runs: the chunk residual appears in text, CSV, NPY, HTML and JSON", "[cli][chunks]") {
  DEPASS_REQUIRE_CLI();
  DEPASS_REQUIRE_MODEL(stories, kStories);
  test::TempDir dir;
  const std::string base = "tokens --model " + test::sh(stories) + " --ids " + ids_arg(kStoriesIds) + " --chunk-size 4";
  const json doc = run_json(base);
  REQUIRE(doc.contains("chunk_residual_score"));
  const double chunk = doc["chunk_residual_score"].get<double>();
  CHECK(doc["chunks"] == 3);  // 12 tokens in chunks of 4
  double total = doc["bias_score"].get<double>() + chunk;
  for (const json& s : doc["scores"]) total += s.get<double>();
  CHECK(std::abs(total - doc["target"]["logit"].get<double>()) < 1e-9);
  test::RunResult r = test::run_cli(base);
  CHECK(r.out.find("chunk residual " + output::signed_fixed(chunk, 6) + " (3 chunks)") != npos);
  r = test::run_cli(base + " --format csv");
  const auto rows = test::parse_csv(r.out);
  CHECK(rows.back()[0] == "chunk residual");
  CHECK(std::stod(rows.back()[4]) == chunk);
  r = test::run_cli(base + " --output " + test::sh(dir.path("s.npy")));
  const output::NpyArray npy = output::load_npy(dir.path("s.npy"));
  REQUIRE(npy.shape == std::vector<std::size_t>{kStoriesIds.size() + 1});
  CHECK(npy.data.back() == chunk);
  r = test::run_cli(base + " --output " + test::sh(dir.path("s.html")));
  CHECK(test::read_file(dir.path("s.html")).find("chunk residual " + output::fixed(chunk, 4)) != npos);
  // heads: one more column; modules: two more.
  const std::string heads = "heads --model " + test::sh(stories) + " --ids " + ids_arg(kStoriesIds) + " --layer 2 --chunk-size 3";
  const json hj = run_json(heads);
  r = test::run_cli(heads + " --output " + test::sh(dir.path("h.npy")));
  const output::NpyArray h = output::load_npy(dir.path("h.npy"));
  REQUIRE(h.shape == std::vector<std::size_t>{1, 9});
  CHECK(h.data[8] == hj["layers"][0]["chunk_residual_score"].get<double>());
  // --memory-budget: the engine's own account (Decomposer::working_bytes; the CLI keeps
  // component rows at the explained position only) of a chunk of 4 of the 12 tokens.
  const Model<double>& model = test::cached_model<double>(stories);
  const std::size_t four = Decomposer<double>(model).working_bytes(12, 4, 14, 1);
  REQUIRE(four < Decomposer<double>(model).working_bytes(12, 5, 14, 1));
  const json tight = run_json("tokens --model " + test::sh(stories) + " --ids " + ids_arg(kStoriesIds) + " --memory-budget " +
                              std::to_string(four));
  CHECK(tight["memory_budget_bytes"] == four);
  CHECK(tight["chunks"] == 3);
  CHECK(tight.contains("chunk_residual_score"));
  const json roomy = run_json("tokens --model " + test::sh(stories) + " --ids " + ids_arg(kStoriesIds) + " --memory-budget 200M");
  CHECK(roomy["memory_budget_bytes"] == 209715200);
  CHECK(roomy["chunks"] == 1);
  CHECK(!roomy.contains("chunk_residual_score"));
  CHECK(roomy["scores"] == run_json("tokens --model " + test::sh(stories) + " --ids " + ids_arg(kStoriesIds))["scores"]);
  for (const auto& [options, message] : std::vector<std::pair<std::string, std::string>>{
           {"--chunk-size 0", "--chunk-size must be >= 1"},
           {"--memory-budget 12X", "--memory-budget expects a size in bytes"},
           {"--memory-budget 0", "--memory-budget expects a size in bytes"},
           {"--memory-budget 1K", "--memory-budget: 1024 is too small for this run: one component per chunk needs"},
           {"--chunk-size 3 --memory-budget 1M", "give --chunk-size or --memory-budget, not both"},
           {"--chunk-size 3 --components c.npy", "--components writes the whole component tensor"}}) {
    r = test::run_cli("tokens --model " + test::sh(stories) + " --ids 1,2,3 " + options);
    INFO(options << "\n" << r.err);
    CHECK(r.code == 2);
    CHECK(r.err.find(message) != npos);
  }
}
