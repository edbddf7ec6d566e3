// depass tokens, depass generate [--explain]: token-level attributions.

#include <algorithm>
#include <numeric>

#include "Commands.hpp"

namespace cli {

const char* kTokensHelp =
    "usage: depass tokens --model PATH [--tokenizer PATH] (--prompt TEXT | --ids 1,2,3)\n"
    "                     [--position -1] [--target ID] [--alternatives 5] [--components FILE.npy]\n"
    "                     [split options] [output options]\n"
    "\n"
    "Token-level DePass: how much each input token contributes to the logit of the target\n"
    "token at one position. The scores plus the bias score sum to the real logit.\n"
    "\n"
    DEPASS_CLI_MODEL_HELP DEPASS_CLI_INPUT_HELP
    "  --alternatives K     also attribute the K most likely tokens at the position (default 5;\n"
    "                       the HTML report has a selector for them)\n"
    "  --components FILE    write the full component tensor (M x N x D, float64) at the output\n"
    "                       boundary (final-normed) as .npy; labels go to the JSON\n"
    DEPASS_CLI_SPLIT_HELP DEPASS_CLI_OUTPUT_HELP
    "\n"
    "examples:\n"
    "  depass tokens --model models/stories260K/stories260K.bin \\\n"
    "      --prompt \"Once upon a time there was a little girl named Lily. She loved to play with her\"\n"
    "  depass tokens --model models/tinystories-656k --prompt \"Once upon a time,\" --output report.html\n";

const char* kGenerateHelp =
    "usage: depass generate --model PATH [--tokenizer PATH] --prompt TEXT [--max-new N]\n"
    "                       [--explain [split options] [output options]] [--precision P]\n"
    "\n"
    "Greedy (temperature 0) continuation of the prompt. Without --explain the text is printed\n"
    "as it is produced. With --explain every generated token is attributed to the prompt and\n"
    "the earlier output: at each step token-level DePass runs on the sequence so far, and the\n"
    "scores of the chosen token at the last position (plus the bias score) sum to its logit.\n"
    "\n"
    "  --model PATH         llama2.c .bin checkpoint or Hugging Face model directory\n"
    "  --tokenizer PATH     tokenizer; default: found next to the checkpoint\n"
    "  --prompt TEXT        the prompt (a BOS token is prepended)\n"
    "  --max-new N          tokens to generate (default 256, with --explain 16); stops early\n"
    "                       at end of text or when the context is full\n"
    "  --precision P        float or double (default float; double with --explain)\n"
    "  --threads N          threads for matrix products (default: OpenMP's default)\n"
    "  --explain            attribute every generated token (one view per step in HTML)\n"
    DEPASS_CLI_SPLIT_HELP DEPASS_CLI_OUTPUT_HELP
    "\n"
    "examples:\n"
    "  depass generate --model models/stories260K/stories260K.bin --prompt \"Once upon a time\"\n"
    "  depass generate --model models/stories260K/stories260K.bin --prompt \"Once upon a time\" \\\n"
    "      --max-new 12 --explain --output story.html\n";

namespace {

template <typename Scalar>
int run_tokens(const Args& args) {
  check_output_options(args);
  const long alternatives = args.integer("--alternatives", 5);
  if (alternatives < 0) throw UsageError("--alternatives must be >= 0, got " + std::to_string(alternatives));
  const depass::DecomposeOptions options = decompose_options(args);
  Loaded<Scalar> l = load<Scalar>(args);
  const std::vector<int> ids = input_ids(args, l);
  const long n = static_cast<long>(ids.size());
  const long position = resolve_position(args, n);

  Progress<Scalar> progress(args, "tokens", l.model->config().n_layers);
  const depass::Decomposition<Scalar> result =
      depass::Decomposer<Scalar>(*l.model).run(ids, depass::Initialisation<Scalar>::tokens(), options, progress.hook());
  progress.finish();

  const depass::Vector<Scalar> logits = result.logits(position);
  const int target = resolve_target(args, logits);

  json doc = document<Scalar>(depass::output::schema::kTokens, args, options);
  doc["tokens"] = tokens_json(l, ids);
  doc["position"] = position;
  auto attribution = [&](int t) {
    const depass::Vector<Scalar> scores = result.component_logits(position, t);
    json a;
    a["target"] = target_json(l, t, static_cast<double>(result.logit(position, t)), probability(logits, t));
    a["scores"] = json::array();
    for (long m = 0; m < n; ++m) a["scores"].push_back(static_cast<double>(scores(m)));
    a["bias_score"] = static_cast<double>(scores(result.bias_component()));
    // Learned absolute positions (GPT-2) are their own component, right after the tokens.
    if (result.component_count() > n && result.labels()[static_cast<std::size_t>(n)] == "positions")
      a["position_score"] = static_cast<double>(scores(n));
    if (result.chunk_residual_component() >= 0)
      a["chunk_residual_score"] = static_cast<double>(scores(result.chunk_residual_component()));
    return a;
  };
  const json main = attribution(target);
  for (auto it = main.begin(); it != main.end(); ++it) doc[it.key()] = it.value();
  doc["residual_max_abs"] = max_residual(result);
  doc["chunks"] = result.chunk_count();

  std::vector<int> order(static_cast<std::size_t>(logits.size()));
  std::iota(order.begin(), order.end(), 0);
  const std::size_t k = std::min<std::size_t>(static_cast<std::size_t>(alternatives), order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                    [&](int a, int b) { return logits(a) > logits(b) || (logits(a) == logits(b) && a < b); });
  doc["alternatives"] = json::array();
  for (std::size_t i = 0; i < k; ++i) doc["alternatives"].push_back(attribution(order[i]));

  if (args.has("--components")) {
    depass::output::save_components_npy(args.get("--components"), result.components());
    doc["components_file"] = {{"file", args.get("--components")},
                              {"shape", {result.component_count(), result.positions(), l.model->config().dim}},
                              {"labels", result.labels()},
                              {"boundary", "output (final-normed)"}};
  }
  emit(args, doc);
  return 0;
}

template <typename Scalar>
int run_plain_generate(const Args& args) {
  const long max_new = args.integer("--max-new", 256);
  if (max_new < 0 || max_new > 1L << 20) throw UsageError("--max-new must be in [0, 1048576], got " + std::to_string(max_new));
  Loaded<Scalar> l = load<Scalar>(args);
  const depass::Tokenizer& tok = *l.tokenizer;
  const std::vector<int> prompt = tok.encode(args.require("--prompt"), true);
  l.model->check_tokens(prompt);
  // Echo the prompt, then stream each new token as it is chosen.
  int previous = prompt.front();
  for (std::size_t i = 1; i < prompt.size(); ++i) {
    std::cout << tok.token_text(previous, prompt[i]);
    previous = prompt[i];
  }
  std::cout.flush();
  std::vector<int> sequence = prompt;
  const int eos = tok.eos_id();
  for (long step = 0; step < max_new && static_cast<int>(sequence.size()) < l.model->config().max_seq_len; ++step) {
    const int next = l.model->generate(sequence, 1).front();
    if (next == eos || (next == tok.bos_id() && next >= 0)) break;
    std::cout << tok.token_text(sequence.back(), next) << std::flush;
    sequence.push_back(next);
  }
  std::cout << "\n";
  return 0;
}

template <typename Scalar>
int run_explained_generate(const Args& args) {
  check_output_options(args);
  const long max_new = args.integer("--max-new", 16);
  if (max_new < 0 || max_new > 4096) throw UsageError("--max-new with --explain must be in [0, 4096], got " + std::to_string(max_new));
  const depass::DecomposeOptions options = decompose_options(args);
  Loaded<Scalar> l = load<Scalar>(args);
  const depass::Tokenizer& tok = *l.tokenizer;
  const std::string prompt_text = args.require("--prompt");
  const std::vector<int> prompt = tok.encode(prompt_text, true);
  l.model->check_tokens(prompt);
  const int L = l.model->config().n_layers;
  const long room = l.model->config().max_seq_len - static_cast<long>(prompt.size());
  Progress<Scalar> progress(args, "generate", std::max(1L, std::min(max_new, room)) * L);
  const depass::Decomposer<Scalar> decomposer(*l.model);

  json doc = document<Scalar>(depass::output::schema::kGenerate, args, options);
  doc["prompt"] = depass::output::valid_utf8(prompt_text);
  doc["prompt_length"] = prompt.size();
  doc["steps"] = json::array();
  std::vector<int> sequence = prompt;
  double residual = 0;
  const int eos = tok.eos_id();
  for (long step = 0; step < max_new && static_cast<int>(sequence.size()) < l.model->config().max_seq_len; ++step) {
    const depass::Decomposition<Scalar> result =
        decomposer.run(sequence, depass::Initialisation<Scalar>::tokens(), options, progress.hook());
    const long last = static_cast<long>(sequence.size()) - 1;
    const depass::Vector<Scalar> logits = result.logits(last);
    Eigen::Index best = 0;
    logits.maxCoeff(&best);
    const int next = static_cast<int>(best);
    if (next == eos || (next == tok.bos_id() && next >= 0)) break;
    const depass::Vector<Scalar> scores = result.component_logits(last, next);
    json s;
    s["step"] = step;
    s["position"] = last;
    s["token"] = target_json(l, next, static_cast<double>(result.logit(last, next)), probability(logits, next));
    s["scores"] = json::array();
    for (long m = 0; m <= last; ++m) s["scores"].push_back(static_cast<double>(scores(m)));
    s["bias_score"] = static_cast<double>(scores(result.bias_component()));
    if (result.labels()[static_cast<std::size_t>(last + 1)] == "positions")
      s["position_score"] = static_cast<double>(scores(last + 1));
    if (result.chunk_residual_component() >= 0)
      s["chunk_residual_score"] = static_cast<double>(scores(result.chunk_residual_component()));
    s["residual_max_abs"] = max_residual(result);
    residual = std::max(residual, max_residual(result));
    doc["steps"].push_back(s);
    sequence.push_back(next);
  }
  progress.finish();
  const std::vector<int> generated(sequence.begin() + static_cast<std::ptrdiff_t>(prompt.size()), sequence.end());
  doc["tokens"] = tokens_json(l, sequence);
  doc["generated"] = tokens_json(l, generated);
  std::string text;
  int previous = sequence[prompt.size() - 1];
  for (int id : generated) {
    text += tok.token_text(previous, id);
    previous = id;
  }
  doc["text"] = depass::output::valid_utf8(text);
  doc["residual_max_abs"] = residual;
  emit(args, doc);
  return 0;
}

}  // namespace

int command_tokens(const Args& args) {
  args.allow_only(join({kModelOptions, kInputOptions, kSplitOptions, kOutputOptions, {"--alternatives", "--components", "--help"}}));
  return with_precision(args, "double", [&](auto s) { return run_tokens<decltype(s)>(args); });
}

int command_generate(const Args& args) {
  if (!args.has("--explain")) {
    for (const auto& option : join({kSplitOptions, kOutputOptions}))
      if (args.has(option)) throw UsageError(option + " only applies with --explain");
    args.allow_only({"--model", "--tokenizer", "--prompt", "--max-new", "--precision", "--threads", "--help"});
    return with_precision(args, "float", [&](auto s) { return run_plain_generate<decltype(s)>(args); });
  }
  args.allow_only(join({kModelOptions, kSplitOptions, kOutputOptions, {"--prompt", "--max-new", "--explain", "--help"}}));
  return with_precision(args, "double", [&](auto s) { return run_explained_generate<decltype(s)>(args); });
}

}  // namespace cli
