// depass tokens, depass generate [--explain]: token-level attributions.

#include <algorithm>
#include <depass/LogitTrace.hpp>
#include <numeric>

#include "Batch.hpp"
#include "Commands.hpp"
#include "Methods.hpp"
#include "Trace.hpp"

namespace cli {

const char* kTokensHelp =
    "usage: depass tokens --model PATH [--tokenizer PATH] (--prompt TEXT | --prompt-file FILE | --ids 1,2,3\n"
    "                     | --batch FILE.jsonl) [--position -1] [--target T] [--contrast T]\n"
    "                     [--method depass|M,M,...] [--objective logit|logprob] [--alternatives 5]\n"
    "                     [--trace] [--components FILE.npy] [split options] [ig options] [output options]\n"
    "\n"
    "Token-level DePass: how much each input token contributes to the logit of the target\n"
    "token at one position (or to logit(target) - logit(contrast)). The scores plus the bias\n"
    "score sum to the real logit (difference). --method gives the same table by a baseline\n"
    "method instead; several methods, comma-separated, are compared side by side (the first\n"
    "fills the main table; JSON field \"methods\" has every one's scores).\n"
    "\n"
    DEPASS_CLI_MODEL_HELP DEPASS_CLI_INPUT_HELP DEPASS_CLI_BATCH_HELP
    DEPASS_CLI_METHOD_HELP("depass, attention-last, attention-mean,\n"
                           "                       rollout, grad-norm, input-x-grad, ig, occlusion")
    DEPASS_CLI_IG_HELP
    "  --alternatives K     also attribute the K most likely tokens at the position (default 5\n"
    "                       with depass, 0 with a baseline; the HTML report has a selector)\n"
    "  --components FILE    write the full component tensor (M x N x D, float64) at the output\n"
    "                       boundary (final-normed) as .npy; labels go to the JSON (not with\n"
    "                       chunking)\n"
    DEPASS_CLI_COMPARE_FLOAT_HELP
    DEPASS_CLI_TRACE_HELP DEPASS_CLI_SPLIT_HELP DEPASS_CLI_OUTPUT_HELP
    "\n"
    "examples:\n"
    "  depass tokens --model models/stories260K/stories260K.bin \\\n"
    "      --prompt \"Once upon a time there was a little girl named Lily. She loved to play with her\"\n"
    "  depass tokens --model models/stories260K/stories260K.bin --prompt \"Once upon a time there was a\" \\\n"
    "      --target \" little\" --contrast \" big\" --trace\n"
    "  depass tokens --model models/stories260K/stories260K.bin --prompt \"Once upon a time there was a\" \\\n"
    "      --method depass,ig,input-x-grad,rollout --output compare.html\n"
    "  depass tokens --model models/tinystories-656k --prompt \"Once upon a time,\" --output report.html\n";

const char* kGenerateHelp =
    "usage: depass generate --model PATH [--tokenizer PATH] (--prompt TEXT | --prompt-file FILE)\n"
    "                       [--max-new N] [--explain [--contrast T] [split options] [output options]]\n"
    "\n"
    "Greedy (temperature 0) continuation of the prompt. Without --explain the text is printed\n"
    "as it is produced. With --explain every generated token is attributed to the prompt and\n"
    "the earlier output: the text is generated first, then one token-level DePass pass over\n"
    "the whole sequence gives every step's attribution at that step's position (under the\n"
    "causal mask position i depends only on tokens <= i, so this equals running each step on\n"
    "its own prefix). Each step's scores plus its bias score sum to the chosen token's logit.\n"
    "\n"
    DEPASS_CLI_MODEL_LINE
    "  --tokenizer PATH     tokenizer; default: found next to the checkpoint / inside the model\n"
    "  --prompt TEXT        the prompt (a BOS token is prepended)\n"
    "  --prompt-file FILE   the prompt from a file (- for stdin; one trailing newline dropped)\n"
    "  --max-new N          tokens to generate (default 256, with --explain 16); stops early\n"
    "                       at end of text or when the context is full\n"
    "  --precision P        float or double (default float; double with --explain); with --explain\n"
    "                       also bf16 (float model, DePass products in bfloat16)\n"
    "  --threads N          threads for every parallel loop and matrix product (default: all)\n"
    "  --explain            attribute every generated token (one view per step in HTML)\n"
    "  --contrast T         with --explain: explain logit(token) - logit(T) at every step\n"
    "  --target-position first  for a --contrast text of several tokens, use its first token\n"
    DEPASS_CLI_SPLIT_HELP DEPASS_CLI_OUTPUT_HELP
    "\n"
    "examples:\n"
    "  depass generate --model models/stories260K/stories260K.bin --prompt \"Once upon a time\"\n"
    "  depass generate --model models/stories260K/stories260K.bin --prompt \"Once upon a time\" \\\n"
    "      --max-new 12 --explain --output story.html\n";

namespace {

/// The non-token scores of a token-level run: bias, learned positions (GPT-2), chunk residual.
template <typename Scalar>
void add_extra_scores(json& entry, const depass::Decomposition<Scalar>& d, const depass::Vector<Scalar>& scores, long n) {
  entry["bias_score"] = static_cast<double>(scores(d.bias_component()));
  // Learned absolute positions (GPT-2) are their own component, right after the tokens.
  if (d.component_count() > n && d.labels()[static_cast<std::size_t>(n)] == "positions")
    entry["position_score"] = static_cast<double>(scores(n));
  if (d.chunk_residual_component() >= 0)
    entry["chunk_residual_score"] = static_cast<double>(scores(d.chunk_residual_component()));
}

/// One method's scores for question q as a tokens entry: the target, one score per input
/// position and what the method measured. DePass's entry holds its non-token scores too.
template <typename Scalar>
json method_entry(const Loaded<Scalar>& l, const MethodChoice& c, depass::Method method, const depass::DecomposeOptions& options,
                  const Question& q, const depass::Vector<Scalar>& logits) {
  const depass::TokenAttributor<Scalar> attributor(*l.model);
  const depass::Objective objective = objective_of(q, c);
  const depass::Attribution<Scalar> a = method == depass::Method::DePass
                                            ? attributor.depass(q.ids, objective, options)
                                            : attributor.run(method, q.ids, objective, ig_options(c, l, q.ids));
  json e;
  add_explained(e, l, q, logits);
  e["scores"] = json::array();
  for (Eigen::Index m = 0; m < a.scores.size(); ++m) e["scores"].push_back(static_cast<double>(a.scores(m)));
  for (std::size_t x = 0; x < a.extra_labels.size(); ++x) {
    const std::string& label = a.extra_labels[x];
    const std::string key = label == "positions" ? "position_score" : label == "chunk residual" ? "chunk_residual_score" : label + "_score";
    e[key] = a.extra_scores[x];
  }
  add_method_fields(e, a, c);
  return e;
}

/// The `alternatives` most likely tokens at the position, best first, without the contrast.
template <typename Scalar>
std::vector<int> likely_tokens(const depass::Vector<Scalar>& logits, long alternatives, int foil) {
  std::vector<int> order(static_cast<std::size_t>(logits.size()));
  std::iota(order.begin(), order.end(), 0);
  const std::size_t k = std::min<std::size_t>(static_cast<std::size_t>(alternatives), order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                    [&](int a, int b) { return logits(a) > logits(b) || (logits(a) == logits(b) && a < b); });
  order.resize(k);
  order.erase(std::remove(order.begin(), order.end(), foil), order.end());
  return order;
}

/// With several methods: "methods", every method's entry for the main target (DePass's
/// reused from the main document when it ran first).
template <typename Scalar>
void add_comparison(json& doc, const Loaded<Scalar>& l, const MethodChoice& c, const depass::DecomposeOptions& options,
                    const Question& q, const depass::Vector<Scalar>& logits, const json& main) {
  if (c.methods.size() < 2) return;
  doc["methods"] = json::array();
  for (depass::Method m : c.methods) {
    json e = m == c.first() ? main : method_entry(l, c, m, options, q, logits);
    for (const char* shown : {"target", "contrast", "logit_difference"}) e.erase(shown);  // the main document has them
    doc["methods"].push_back(e);
  }
}

/// A tokens document by a baseline method (the first of --method).
template <typename Scalar>
json baseline_tokens_document(const Args& args, const Loaded<Scalar>& l, const depass::DecomposeOptions& options,
                              long alternatives, const MethodChoice& c, Question q) {
  const depass::Vector<Scalar> logits = top_logits(*l.model, q.ids, q.position);
  choose_target(q, logits);
  json doc = method_document<Scalar>(depass::output::schema::kTokens, args);
  doc["tokens"] = tokens_json(l, q.ids);
  doc["position"] = q.position;
  doc["reachable_positions"] = q.position + 1;
  const json main = method_entry(l, c, c.first(), options, q, logits);
  for (auto it = main.begin(); it != main.end(); ++it) doc[it.key()] = it.value();
  doc["alternatives"] = json::array();
  for (int t : likely_tokens(logits, alternatives, q.foil)) {
    Question alt = q;
    alt.target = t;
    doc["alternatives"].push_back(method_entry(l, c, c.first(), options, alt, logits));
  }
  add_comparison(doc, l, c, options, q, logits, main);
  return doc;
}

/// A bf16 run's costs: its kernel, the completeness residual at every boundary and, with
/// --compare-float, how its scores agree with a float run's over the reachable positions.
template <typename Scalar>
void add_precision_report(const Args& args, json& doc, const Loaded<Scalar>& l, const depass::DecomposeOptions& options,
                          const Question& q, const depass::Decomposition<Scalar>& bf16) {
  if (options.gemm_precision != depass::GemmPrecision::Bf16) return;
  doc["gemm_kernel"] = bf16.gemm_kernel();
  doc["completeness"] = completeness_json(bf16);
  if (!args.has("--compare-float")) return;
  depass::DecomposeOptions native = options;
  native.gemm_precision = depass::GemmPrecision::Native;
  const depass::Decomposition<Scalar> reference =
      decompose_run(*l.model, q.ids, depass::Initialisation<Scalar>::tokens(), native, depass::Hook<Scalar>{});
  const Eigen::Index reach = q.position + 1;
  const Eigen::VectorXd test = explained_scores(bf16, q).head(reach).template cast<double>();
  const Eigen::VectorXd ref = explained_scores(reference, q).head(reach).template cast<double>();
  doc["bf16_vs_float"] = agreement_json(test, ref);
  doc["bf16_vs_float"]["positions"] = reach;
  doc["bf16_vs_float"]["float_residual_max_abs"] = max_residual(reference);
}

template <typename Scalar>
json tokens_document(const Args& args, const Loaded<Scalar>& l, const depass::DecomposeOptions& base, long alternatives,
                     const MethodChoice& c, const Request& request, const depass::Hook<Scalar>& progress) {
  Question q = resolve(request, l);
  if (c.first() != depass::Method::DePass) return baseline_tokens_document(args, l, base, alternatives, c, q);
  const long n = static_cast<long>(q.ids.size());
  depass::DecomposeOptions options = base;
  if (!args.has("--components")) keep_only(options, {q.position});
  const bool tracing = args.has("--trace") || args.has("--trace-npy");
  if (tracing && q.target < 0) choose_target(q, top_logits(*l.model, q.ids, q.position));  // the trace needs it up front
  std::optional<depass::LogitTrace<Scalar>> trace;
  if (tracing) trace.emplace(*l.model, q.position, q.target, q.foil);
  const depass::Decomposition<Scalar> result = decompose_run(
      *l.model, q.ids, depass::Initialisation<Scalar>::tokens(), options, both<Scalar>(progress, trace ? trace->hook() : depass::Hook<Scalar>{}));

  const depass::Vector<Scalar> logits = result.logits(q.position);
  choose_target(q, logits);
  json doc = document<Scalar>(depass::output::schema::kTokens, args, options);
  doc["tokens"] = tokens_json(l, q.ids);
  doc["position"] = q.position;
  doc["reachable_positions"] = q.position + 1;  // later tokens cannot affect the position (causal mask)
  auto attribution = [&](int t) {
    Question alt = q;
    alt.target = t;
    const depass::Vector<Scalar> scores = explained_scores(result, alt);
    json a;
    add_explained(a, l, alt, logits);
    a["scores"] = json::array();
    for (long m = 0; m < n; ++m) a["scores"].push_back(static_cast<double>(scores(m)));
    add_extra_scores(a, result, scores, n);
    a["method"] = "depass";
    a["objective"] = alt.foil >= 0 ? "contrast" : "logit";
    return a;
  };
  const json main = attribution(q.target);
  for (auto it = main.begin(); it != main.end(); ++it) doc[it.key()] = it.value();
  doc["residual_max_abs"] = max_residual(result);
  doc["chunks"] = result.chunk_count();
  add_precision_report(args, doc, l, options, q, result);
  doc["alternatives"] = json::array();
  for (int t : likely_tokens(logits, alternatives, q.foil)) doc["alternatives"].push_back(attribution(t));
  add_comparison(doc, l, c, base, q, logits, main);

  if (trace) add_trace(args, doc, *trace, result.labels());
  if (args.has("--components")) {
    if (MpiJob::get().writes()) depass::output::save_components_npy(args.get("--components"), result.components());
    doc["components_file"] = {{"file", args.get("--components")},
                              {"shape", {result.component_count(), result.positions(), l.model->config().dim}},
                              {"labels", result.labels()},
                              {"boundary", "output (final-normed)"}};
  }
  return doc;
}

template <typename Scalar>
int run_tokens(const Args& args) {
  check_output_options(args);
  const MethodChoice c = method_choice(args, depass::Level::Tokens);
  const long alternatives = args.integer("--alternatives", c.first() == depass::Method::DePass ? 5 : 0);
  if (alternatives < 0) throw UsageError("--alternatives must be >= 0, got " + std::to_string(alternatives));
  const depass::DecomposeOptions options = decompose_options(args);
  check_trace_options(args, options, true);
  const Inputs in = read_inputs(args);
  Loaded<Scalar> l = load<Scalar>(args);
  return run_inputs<Scalar>(args, "tokens", in, l.model->config().n_layers, [&](const Request& r, const depass::Hook<Scalar>& hook) {
    return tokens_document(args, l, options, alternatives, c, r, hook);
  });
}

/// The prompt of generate: --prompt or --prompt-file.
inline std::string generate_prompt(const Args& args) {
  if (args.has("--prompt") == args.has("--prompt-file")) throw UsageError("give exactly one of --prompt and --prompt-file");
  const std::string text = args.has("--prompt") ? args.get("--prompt") : prompt_file_text(args.get("--prompt-file"));
  if (text.empty()) throw UsageError("the prompt is empty");
  return text;
}

/// Greedy continuation of `prompt` by plain forward passes: up to max_new tokens, stopping
/// before an end-of-text (or BOS) token or when the context is full.
template <typename Scalar>
std::vector<int> greedy_continuation(const Loaded<Scalar>& l, const std::vector<int>& prompt, long max_new,
                                     const depass::Hook<Scalar>& hook) {
  const depass::Tokenizer& tok = *l.tokenizer;
  std::vector<int> sequence = prompt;
  for (long step = 0; step < max_new && static_cast<int>(sequence.size()) < l.model->config().max_seq_len; ++step) {
    const depass::Matrix<Scalar> logits = l.model->forward(sequence, hook, true);
    Eigen::Index best = 0;
    logits.row(0).maxCoeff(&best);
    const int next = static_cast<int>(best);
    if (next == tok.eos_id() || (next == tok.bos_id() && next >= 0)) break;
    sequence.push_back(next);
  }
  return std::vector<int>(sequence.begin() + static_cast<std::ptrdiff_t>(prompt.size()), sequence.end());
}

template <typename Scalar>
int run_plain_generate(const Args& args) {
  const long max_new = args.integer("--max-new", 256);
  if (max_new < 0 || max_new > 1L << 20) throw UsageError("--max-new must be in [0, 1048576], got " + std::to_string(max_new));
  const std::string prompt_text = generate_prompt(args);
  Loaded<Scalar> l = load<Scalar>(args);
  const depass::Tokenizer& tok = l.require_tokenizer("generate");
  const std::vector<int> prompt = tok.encode(prompt_text, true);
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

/// Step t of generate --explain: the token chosen at `position` + 1, attributed at `position`.
template <typename Scalar>
json step_json(const Loaded<Scalar>& l, const depass::Decomposition<Scalar>& d, long step, long position, int token, int foil) {
  const depass::Vector<Scalar> logits = d.logits(position);
  Question q;
  q.position = position;
  q.target = token;
  q.foil = foil == token ? -1 : foil;  // a step that chose the contrast token explains nothing
  depass::Vector<Scalar> scores = explained_scores(d, q);
  if (foil == token) scores.setZero();
  json s;
  s["step"] = step;
  s["position"] = position;
  s["token"] = target_json(l, token, static_cast<double>(logits(token)), probability(logits, token));
  if (foil >= 0) {
    s["contrast"] = target_json(l, foil, static_cast<double>(logits(foil)), probability(logits, foil));
    s["logit_difference"] = static_cast<double>(logits(token)) - static_cast<double>(logits(foil));
    if (foil == token) s["token_is_contrast"] = true;
  }
  s["scores"] = json::array();
  for (long m = 0; m <= position; ++m) s["scores"].push_back(static_cast<double>(scores(m)));
  add_extra_scores(s, d, scores, position + 1);
  s["residual_max_abs"] = max_residual(d);
  return s;
}

template <typename Scalar>
int run_explained_generate(const Args& args) {
  check_output_options(args);
  const long max_new = args.integer("--max-new", 16);
  if (max_new < 0 || max_new > 4096) throw UsageError("--max-new with --explain must be in [0, 4096], got " + std::to_string(max_new));
  depass::DecomposeOptions options = decompose_options(args);
  const std::string prompt_text = generate_prompt(args);
  target_position_mode(args);
  Loaded<Scalar> l = load<Scalar>(args);
  const depass::Tokenizer& tok = l.require_tokenizer("generate");
  const std::vector<int> prompt = tok.encode(prompt_text, true);
  l.model->check_tokens(prompt);
  const int foil = args.has("--contrast") ? resolve_token(args.get("--contrast"), "--contrast", l.model->config().vocab_size, &tok,
                                                          target_position_mode(args) == "first")
                                          : -1;
  const int L = l.model->config().n_layers;
  const long room = l.model->config().max_seq_len - static_cast<long>(prompt.size());
  const long steps_max = std::max(0L, std::min(max_new, room));
  const bool per_step = args.has("--per-step");
  Progress<Scalar> progress(args, "generate", steps_max * L + (per_step ? steps_max * L : L));
  const std::vector<int> generated = greedy_continuation(l, prompt, max_new, progress.hook());
  const long P = static_cast<long>(prompt.size()), T = static_cast<long>(generated.size());
  std::vector<int> sequence = prompt;
  sequence.insert(sequence.end(), generated.begin(), generated.end());

  json doc = document<Scalar>(depass::output::schema::kGenerate, args, options);
  doc["prompt"] = depass::output::valid_utf8(prompt_text);
  doc["prompt_length"] = P;
  doc["steps"] = json::array();
  double residual = 0;
  if (per_step) {
    // The reference path: one decomposition per step over the sequence so far.
    for (long t = 0; t < T; ++t) {
      const std::vector<int> prefix(sequence.begin(), sequence.begin() + P + t);
      const depass::Decomposition<Scalar> d =
          decompose_run(*l.model, prefix, depass::Initialisation<Scalar>::tokens(), options, progress.hook());
      doc["steps"].push_back(step_json(l, d, t, P + t - 1, generated[static_cast<std::size_t>(t)], foil));
      residual = std::max(residual, max_residual(d));
    }
  } else if (T > 0) {
    // One pass over everything but the last token: step t reads position P + t - 1.
    const std::vector<int> explained(sequence.begin(), sequence.end() - 1);
    std::vector<long> positions;
    for (long t = 0; t < T; ++t) positions.push_back(P + t - 1);
    keep_only(options, positions);
    const depass::Decomposition<Scalar> d =
        decompose_run(*l.model, explained, depass::Initialisation<Scalar>::tokens(), options, progress.hook());
    for (long t = 0; t < T; ++t) doc["steps"].push_back(step_json(l, d, t, P + t - 1, generated[static_cast<std::size_t>(t)], foil));
    residual = max_residual(d);
  }
  progress.finish();
  doc["explained_in"] = per_step ? "one pass per step" : "one pass";
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
  args.allow_only(join({kModelOptions, kInputOptions, kSplitOptions, kOutputOptions, kMethodOptions,
                        {"--alternatives", "--components", "--trace", "--trace-npy", "--batch", "--compare-float", "--help"}}));
  return with_precision<false, true>(args, "double", [&](auto s) { return run_tokens<decltype(s)>(args); });
}

int command_generate(const Args& args) {
  if (!args.has("--explain")) {
    for (const auto& option : join({kSplitOptions, kOutputOptions, {"--contrast", "--target-position", "--per-step"}}))
      if (args.has(option)) throw UsageError(option + " only applies with --explain");
    args.allow_only({"--model", "--tokenizer", "--prompt", "--prompt-file", "--max-new", "--precision", "--threads", "--help"});
    return with_precision<true>(args, "float", [&](auto s) { return run_plain_generate<decltype(s)>(args); });
  }
  args.allow_only(join({kModelOptions, kSplitOptions, kOutputOptions,
                        {"--prompt", "--prompt-file", "--max-new", "--explain", "--contrast", "--target-position", "--per-step",
                         "--help"}}));
  return with_precision<false, true>(args, "double", [&](auto s) { return run_explained_generate<decltype(s)>(args); });
}

}  // namespace cli
