// depass modules, heads, neurons, subspace, decode: attributions to model components.

#include <algorithm>
#include <numeric>

#include "Batch.hpp"
#include "Commands.hpp"
#include "Methods.hpp"
#include "Trace.hpp"

namespace cli {

const char* kModulesHelp =
    "usage: depass modules --model PATH (--prompt TEXT | --prompt-file FILE | --ids LIST | --batch FILE.jsonl)\n"
    "                      [--position -1] [--target T] [--contrast T] [--trace] [split options] [output options]\n"
    "\n"
    "Attention vs MLP: for every layer l, the output of its attention block and of its MLP\n"
    "is split off as a component (module-level DePass, one run per module) and propagated to\n"
    "the logits; the score is that module's share of the target logit. For each module,\n"
    "residual score + module score + bias score = the target logit.\n"
    "\n"
    DEPASS_CLI_MODEL_HELP DEPASS_CLI_INPUT_HELP DEPASS_CLI_BATCH_HELP
    "  --trace              also trace each run's components (residual, module, bias) over the\n"
    "                       later layer boundaries (JSON field \"trace\" of each module entry)\n"
    DEPASS_CLI_COMPARE_FLOAT_HELP DEPASS_CLI_SPLIT_HELP DEPASS_CLI_OUTPUT_HELP
    "\n"
    "example:\n"
    "  depass modules --model models/stories260K/stories260K.bin \\\n"
    "      --prompt \"Once upon a time there was a little girl named Lily. She loved to play with her\"\n";

const char* kHeadsHelp =
    "usage: depass heads --model PATH (--prompt TEXT | --prompt-file FILE | --ids LIST | --batch FILE.jsonl)\n"
    "                    [--layer L] [--position -1] [--target T] [--contrast T] [--trace]\n"
    "                    [--method depass|atp|norm|ablation] [--objective logit|logprob] [--mean-ablation]\n"
    "                    [--components FILE.npy] [split options] [output options]\n"
    "\n"
    "Head-level DePass: at each layer (or only --layer L) the attention output is split into\n"
    "one component per head (plus the residual input), propagated to the logits; each head's\n"
    "logit contribution fills an L x H table. Per layer: residual + heads + bias = logit.\n"
    "\n"
    DEPASS_CLI_MODEL_HELP DEPASS_CLI_INPUT_HELP DEPASS_CLI_BATCH_HELP
    "  --layer L            only this layer (negative counts from the end)\n"
    DEPASS_CLI_METHOD_HELP("depass, atp (gradient x activation), norm\n"
                           "                       (output norm), ablation (exact effect of zeroing the head)")
    "  --mean-ablation      atp: estimate mean ablation instead of zero ablation\n"
    "  --components FILE    with --layer: write the component tensor (M x N x D) as .npy\n"
    "  --trace              trace each layer's heads over the later boundaries (JSON \"trace\" of\n"
    "                       each layer entry; a chart per layer in HTML; not with chunking)\n"
    "  --trace-npy FILE     with --layer: the trace as a (boundaries, components) .npy\n"
    DEPASS_CLI_COMPARE_FLOAT_HELP DEPASS_CLI_SPLIT_HELP DEPASS_CLI_OUTPUT_HELP
    "\n"
    "example:\n"
    "  depass heads --model models/stories260K/stories260K.bin \\\n"
    "      --prompt \"Once upon a time there was a little girl named Lily. She loved to play with her\" \\\n"
    "      --output heads.html\n";

const char* kNeuronsHelp =
    "usage: depass neurons --model PATH (--prompt TEXT | --prompt-file FILE | --ids LIST | --batch FILE.jsonl)\n"
    "                      [--layer -1] [--top 10] [--order desc|asc|abs] [--position -1] [--target T] [--contrast T]\n"
    "                      [--method depass|atp|norm|ablation] [--objective logit|logprob] [--mean-ablation]\n"
    "                      [--components FILE.npy] [split options] [output options]\n"
    "\n"
    "Neuron-level DePass: every neuron of the layer's MLP writes a[:,k] * W2[:,k]; each is a\n"
    "component, propagated to the logits. Neurons are ranked by their score for the target.\n"
    "\n"
    DEPASS_CLI_MODEL_HELP DEPASS_CLI_INPUT_HELP DEPASS_CLI_BATCH_HELP
    "  --layer L            the MLP's layer (default -1, the last)\n"
    DEPASS_CLI_METHOD_HELP("depass, atp (gradient x activation), norm\n"
                           "                       (output norm), ablation (exact effect of zeroing the neuron)")
    "  --mean-ablation      atp: estimate mean ablation instead of zero ablation\n"
    "  --order O            desc: most positive first (default); asc: most negative first;\n"
    "                       abs: largest magnitude first\n"
    "  --components FILE    write the component tensor (M x N x D) as .npy\n"
    DEPASS_CLI_COMPARE_FLOAT_HELP DEPASS_CLI_SPLIT_HELP DEPASS_CLI_OUTPUT_HELP
    "\n"
    "example:\n"
    "  depass neurons --model models/stories260K/stories260K.bin --layer 4 --top 5 \\\n"
    "      --prompt \"Once upon a time there was a little girl named Lily. She loved to play with her\"\n";

const char* kSubspaceHelp =
    "usage: depass subspace --model PATH (--prompt TEXT | --prompt-file FILE | --ids LIST) --basis FILE.npy\n"
    "                       [--basis ...] [--layer 0] [--site attention|mlp] [--projection] [--top-tokens 5]\n"
    "                       [--position -1] [--target T] [--contrast T] [--components FILE.npy]\n"
    "                       [split options] [output options]\n"
    "\n"
    "Subspace-level DePass: at the boundary before the attention (or MLP) of --layer, the\n"
    "hidden state is split into its projections onto the span of each basis plus the\n"
    "orthogonal remainder; the parts are propagated to the logits and decoded.\n"
    "\n"
    DEPASS_CLI_MODEL_HELP DEPASS_CLI_INPUT_HELP
    "  --basis FILE         a .npy basis, D x k (float32 '<f4' or float64 '<f8'; a 1-D array of\n"
    "                       length D is one direction); repeat for several subspaces\n"
    "  --layer L            boundary layer (default 0; negative counts from the end)\n"
    "  --site S             attention (before the attention block, default) or mlp\n"
    "  --projection         the files hold D x D projection matrices, used as given\n"
    "  --top-tokens K       tokens decoded per component (default 5)\n"
    "  --components FILE    write the component tensor (M x N x D) as .npy\n"
    DEPASS_CLI_SPLIT_HELP DEPASS_CLI_OUTPUT_HELP
    "\n"
    "example:\n"
    "  depass subspace --model models/stories260K/stories260K.bin --layer 2 --site mlp \\\n"
    "      --basis directions.npy --prompt \"Once upon a time\"\n";

const char* kDecodeHelp =
    "usage: depass decode --model PATH (--prompt TEXT | --prompt-file FILE | --ids LIST)\n"
    "                     [--init tokens|modules|heads|neurons|subspace] [--layer L] [--site S]\n"
    "                     [--neurons LIST] [--basis FILE.npy ...] [--k 5] [--logits FILE.npy]\n"
    "                     [--position -1] [--target T] [--contrast T] [split options] [output options]\n"
    "\n"
    "Decodes every component: the tokens each one pushes up most at the position (its logits\n"
    "through the unembedding), and its score for the target.\n"
    "\n"
    DEPASS_CLI_MODEL_HELP DEPASS_CLI_INPUT_HELP
    "  --init KIND          which components: tokens (default), modules (--layer, --site),\n"
    "                       heads (--layer), neurons (--layer, --neurons) or subspace\n"
    "                       (--layer, --site, --basis)\n"
    "  --layer L, --site S  where modules/heads/neurons/subspace components are made\n"
    "  --neurons LIST       neurons as separate components (default: all)\n"
    "  --basis FILE         subspace basis (.npy, D x k); repeatable\n"
    "  --k K                tokens per component (default 5)\n"
    "  --logits FILE        write every component's logits at the position (M x V, float64)\n"
    DEPASS_CLI_SPLIT_HELP DEPASS_CLI_OUTPUT_HELP
    "\n"
    "example:\n"
    "  depass decode --model models/stories260K/stories260K.bin --init heads --layer 4 \\\n"
    "      --prompt \"Once upon a time there was a little girl named Lily. She loved to play with her\"\n";

namespace {

using depass::Decomposition;
using depass::Initialisation;

/// A resolved question whose default target comes from a plain forward pass, and the real
/// logits at its position.
template <typename Scalar>
struct Prediction {
  Question q;
  depass::Vector<Scalar> logits;
};

template <typename Scalar>
Prediction<Scalar> predict(const Request& r, const Loaded<Scalar>& l) {
  Prediction<Scalar> p;
  p.q = resolve(r, l);
  p.logits = top_logits(*l.model, p.q.ids, p.q.position);
  choose_target(p.q, p.logits);
  return p;
}

/// Sinks are a rule of the token-level split (docs/method.md, "Attention sink"): for other
/// components --no-bos-sink and --sink-ratio would change nothing, so they are refused, and
/// their documents carry no bos_sink nor sink_ratio field.
inline void refuse_sink_option(const Args& args, bool token_level) {
  for (const char* option : {"--no-bos-sink", "--sink-ratio"})
    if (!token_level && args.has(option))
      throw UsageError(std::string(option) +
                       " applies to token components only (tokens, generate --explain, decode --init tokens): "
                       "sinks are a rule of the token-level split");
}

template <typename Scalar>
json start_document(const char* schema, const Args& args, const depass::DecomposeOptions& options, const Loaded<Scalar>& l,
                    const Prediction<Scalar>& p, bool token_level = false) {
  json doc = document<Scalar>(schema, args, options);
  if (!token_level) doc.erase("bos_sink");
  if (!token_level) doc.erase("sink_ratio");
  doc["tokens"] = tokens_json(l, p.q.ids);
  doc["position"] = p.q.position;
  add_explained(doc, l, p.q, p.logits);
  doc["method"] = "depass";
  doc["objective"] = p.q.foil >= 0 ? "contrast" : "logit";
  return doc;
}

/// The options of one request: component rows kept only at the explained position,
/// unless --components writes them all.
inline depass::DecomposeOptions request_options(const Args& args, depass::DecomposeOptions options, long position) {
  if (!args.has("--components")) keep_only(options, {position});
  return options;
}

/// Decomposes the prediction's sequence; with --trace (and `traced` given), the layer
/// trace goes into *traced as "trace" (and "trace_file").
template <typename Scalar>
Decomposition<Scalar> decompose(const Args& args, const Loaded<Scalar>& l, const Prediction<Scalar>& p,
                                const Initialisation<Scalar>& init, const depass::DecomposeOptions& options,
                                const depass::Hook<Scalar>& progress, json* traced = nullptr) {
  std::optional<depass::LogitTrace<Scalar>> trace;
  if (traced != nullptr && (args.has("--trace") || args.has("--trace-npy")))
    trace.emplace(*l.model, p.q.position, p.q.target, p.q.foil);
  Decomposition<Scalar> d =
      decompose_run(*l.model, p.q.ids, init, options, both<Scalar>(progress, trace ? trace->hook() : depass::Hook<Scalar>{}));
  if (trace) add_trace(args, *traced, *trace, d.labels());
  return d;
}

/// --precision bf16: the kernel that ran the products (in doc), and decomposition d's
/// completeness residual at every boundary (in entry): what the mode costs.
template <typename Scalar>
void add_completeness(json& doc, json& entry, const depass::DecomposeOptions& options, const Decomposition<Scalar>& d) {
  if (options.gemm_precision != depass::GemmPrecision::Bf16) return;
  // A run from the last MLP's output has no products to run: keep the kernel of one that had.
  if (!d.gemm_kernel().empty() || !doc.contains("gemm_kernel")) doc["gemm_kernel"] = d.gemm_kernel();
  entry["completeness"] = completeness_json(d);
}

/// --compare-float: each bf16 decomposition again in float; the units' scores of both runs
/// are gathered and compared in "bf16_vs_float" (as tokens does over its positions).
template <typename Scalar>
class FloatComparison {
 public:
  explicit FloatComparison(const Args& args) : on_(args.has("--compare-float")) {}

  /// The float run of `init`; keeps components [first, first + count) of both runs' scores.
  void add(const Loaded<Scalar>& l, const Prediction<Scalar>& p, const Initialisation<Scalar>& init,
           depass::DecomposeOptions options, const depass::Vector<Scalar>& bf16_scores, Eigen::Index first, Eigen::Index count) {
    if (!on_) return;
    options.gemm_precision = depass::GemmPrecision::Native;
    const Decomposition<Scalar> d = decompose_run(*l.model, p.q.ids, init, options, depass::Hook<Scalar>{});
    const depass::Vector<Scalar> reference = explained_scores(d, p.q);
    for (Eigen::Index k = first; k < first + count; ++k) {
      bf16_.push_back(static_cast<double>(bf16_scores(k)));
      reference_.push_back(static_cast<double>(reference(k)));
    }
    float_residual_ = std::max(float_residual_, max_residual(d));
  }

  void write(json& doc) const {
    if (!on_) return;
    const Eigen::Index n = static_cast<Eigen::Index>(bf16_.size());
    doc["bf16_vs_float"] = agreement_json(Eigen::Map<const Eigen::VectorXd>(bf16_.data(), n),
                                          Eigen::Map<const Eigen::VectorXd>(reference_.data(), n));
    doc["bf16_vs_float"]["units"] = n;
    doc["bf16_vs_float"]["float_residual_max_abs"] = float_residual_;
  }

 private:
  bool on_;
  std::vector<double> bf16_, reference_;
  double float_residual_ = 0;
};

/// Sets "bias_score" and, for a chunked run, "chunk_residual_score" (both part of the sum).
template <typename Scalar>
void add_bias(json& entry, const Decomposition<Scalar>& d, const depass::Vector<Scalar>& scores) {
  entry["bias_score"] = static_cast<double>(scores(d.bias_component()));
  if (d.chunk_residual_component() >= 0)
    entry["chunk_residual_score"] = static_cast<double>(scores(d.chunk_residual_component()));
}

template <typename Scalar>
void maybe_write_components(const Args& args, json& doc, const Decomposition<Scalar>& d, int dim) {
  if (!args.has("--components")) return;
  if (MpiJob::get().writes()) depass::output::save_components_npy(args.get("--components"), d.components());
  doc["components_file"] = {{"file", args.get("--components")},
                            {"shape", {d.component_count(), d.positions(), dim}},
                            {"labels", d.labels()},
                            {"boundary", "output (final-normed)"}};
}

template <typename Scalar>
json top_tokens_json(const Loaded<Scalar>& l, const Decomposition<Scalar>& d, Eigen::Index component, long position, int k) {
  json top = json::array();
  // A component that is exactly zero at the position (e.g. the bias component of a model
  // without biases) pushes no token up: its "top tokens" would be an arbitrary tie order.
  if ((d.row(component, position).array() == Scalar(0)).all()) return top;
  for (const auto& t : d.top_tokens(component, position, k)) {
    json e = depass::output::token_json(t.first, piece(l, t.first));
    e["logit"] = static_cast<double>(t.second);
    top.push_back(e);
  }
  return top;
}

template <typename Scalar>
json modules_document(const Args& args, const Loaded<Scalar>& l, const depass::DecomposeOptions& base, const Request& r,
                      const depass::Hook<Scalar>& progress) {
  const Prediction<Scalar> p = predict(r, l);
  const depass::DecomposeOptions options = request_options(args, base, p.q.position);
  json doc = start_document(depass::output::schema::kModules, args, options, l, p);
  doc["modules"] = json::array();
  double residual = 0;
  FloatComparison<Scalar> comparison(args);
  for (int layer = 0; layer < l.model->config().n_layers; ++layer) {
    for (depass::Site site : {depass::Site::Attention, depass::Site::Mlp}) {
      json traced;
      const Initialisation<Scalar> init = Initialisation<Scalar>::module_output(layer, site);
      const Decomposition<Scalar> d = decompose(args, l, p, init, options, progress, &traced);
      const depass::Vector<Scalar> scores = explained_scores(d, p.q);
      json entry = {{"layer", layer},
                    {"site", site_name(site)},
                    {"label", d.labels()[1]},
                    {"score", static_cast<double>(scores(1))},
                    {"residual_score", static_cast<double>(scores(0))}};
      add_bias(entry, d, scores);
      add_completeness(doc, entry, options, d);
      if (!traced.is_null()) entry.update(traced);
      doc["modules"].push_back(entry);
      residual = std::max(residual, max_residual(d));
      comparison.add(l, p, init, options, scores, 1, 1);
    }
  }
  doc["residual_max_abs"] = residual;
  comparison.write(doc);
  return doc;
}

template <typename Scalar>
int run_modules(const Args& args) {
  check_output_options(args);
  refuse_sink_option(args, false);
  const depass::DecomposeOptions options = decompose_options(args);
  check_trace_options(args, options, false);
  const Inputs in = read_inputs(args);
  Loaded<Scalar> l = load<Scalar>(args);
  const long L = l.model->config().n_layers;
  return run_inputs<Scalar>(args, "modules", in, 2 * L * L, [&](const Request& r, const depass::Hook<Scalar>& hook) {
    return modules_document(args, l, options, r, hook);
  });
}

template <typename Scalar>
json heads_document(const Args& args, const Loaded<Scalar>& l, const depass::DecomposeOptions& base, const std::vector<int>& layers,
                    const Request& r, const depass::Hook<Scalar>& progress) {
  const depass::Config& cfg = l.model->config();
  const Prediction<Scalar> p = predict(r, l);
  const depass::DecomposeOptions options = request_options(args, base, p.q.position);
  json doc = start_document(depass::output::schema::kHeads, args, options, l, p);
  doc["n_heads"] = cfg.n_heads;
  doc["layers"] = json::array();
  double residual = 0;
  FloatComparison<Scalar> comparison(args);
  for (int layer : layers) {
    json traced;
    const Initialisation<Scalar> init = Initialisation<Scalar>::heads(layer);
    const Decomposition<Scalar> d = decompose(args, l, p, init, options, progress, &traced);
    const depass::Vector<Scalar> scores = explained_scores(d, p.q);
    json heads = json::array();
    for (int h = 0; h < cfg.n_heads; ++h) heads.push_back(static_cast<double>(scores(1 + h)));
    json entry = {{"layer", layer}, {"heads", heads}, {"residual_score", static_cast<double>(scores(0))}};
    add_bias(entry, d, scores);
    add_completeness(doc, entry, options, d);
    if (!traced.is_null()) entry.update(traced);
    doc["layers"].push_back(entry);
    residual = std::max(residual, max_residual(d));
    comparison.add(l, p, init, options, scores, 1, cfg.n_heads);
    if (layers.size() == 1) maybe_write_components(args, doc, d, cfg.dim);
  }
  doc["residual_max_abs"] = residual;
  comparison.write(doc);
  return doc;
}

/// A heads document by a baseline method: the same table, without DePass's residual and
/// bias components.
template <typename Scalar>
json baseline_heads_document(const Args& args, const Loaded<Scalar>& l, const MethodChoice& c, const std::vector<int>& layers,
                             const Request& r) {
  const depass::Config& cfg = l.model->config();
  const Prediction<Scalar> p = predict(r, l);
  depass::ComponentOptions options;
  options.mean_ablation = c.mean_ablation;
  const depass::Attribution<Scalar> a =
      depass::ComponentAttributor<Scalar>(*l.model).heads(c.first(), p.q.ids, objective_of(p.q, c), options);
  json doc = method_document<Scalar>(depass::output::schema::kHeads, args);
  doc["tokens"] = tokens_json(l, p.q.ids);
  doc["position"] = p.q.position;
  add_explained(doc, l, p.q, p.logits);
  add_method_fields(doc, a, c);
  doc["n_heads"] = cfg.n_heads;
  doc["layers"] = json::array();
  for (int layer : layers) {
    json heads = json::array();
    for (int h = 0; h < cfg.n_heads; ++h) heads.push_back(static_cast<double>(a.head(layer, h, cfg.n_heads)));
    doc["layers"].push_back({{"layer", layer}, {"heads", heads}});
  }
  return doc;
}

template <typename Scalar>
int run_heads(const Args& args) {
  check_output_options(args);
  refuse_sink_option(args, false);
  const MethodChoice c = method_choice(args, depass::Level::Heads);
  const depass::DecomposeOptions options = decompose_options(args);
  check_trace_options(args, options, args.has("--layer"));
  if (args.has("--components") && !args.has("--layer")) throw UsageError("--components needs a single decomposition: add --layer L");
  const Inputs in = read_inputs(args);
  Loaded<Scalar> l = load<Scalar>(args);
  const depass::Config& cfg = l.model->config();
  std::vector<int> layers;
  if (args.has("--layer")) layers.push_back(resolve_layer(args, "--layer", cfg.n_layers, -1));
  else
    for (int i = 0; i < cfg.n_layers; ++i) layers.push_back(i);
  return run_inputs<Scalar>(args, "heads", in, static_cast<long>(layers.size()) * cfg.n_layers,
                            [&](const Request& r, const depass::Hook<Scalar>& hook) {
                              if (!c.only_depass()) return baseline_heads_document(args, l, c, layers, r);
                              return heads_document(args, l, options, layers, r, hook);
                            });
}

/// "layer", "n_neurons", "order", the ranked "top" rows and every neuron's "scores".
inline void add_ranked_neurons(const Args& args, json& doc, int layer, const std::string& order, const std::vector<double>& s) {
  std::vector<int> rank(s.size());
  std::iota(rank.begin(), rank.end(), 0);
  std::stable_sort(rank.begin(), rank.end(), [&](int a, int b) {
    const double x = s[static_cast<std::size_t>(a)], y = s[static_cast<std::size_t>(b)];
    if (order == "asc") return x < y;
    if (order == "abs") return std::abs(x) > std::abs(y);
    return x > y;
  });
  doc["layer"] = layer;
  doc["n_neurons"] = s.size();
  doc["order"] = order;
  doc["top"] = json::array();
  const std::size_t top = std::min<std::size_t>(top_rows(args), rank.size());
  for (std::size_t i = 0; i < top; ++i)
    doc["top"].push_back({{"rank", i + 1}, {"neuron", rank[i]}, {"score", s[static_cast<std::size_t>(rank[i])]}});
  doc["scores"] = s;
}

/// A neurons document by a baseline method: the ranking, without DePass's other components.
template <typename Scalar>
json baseline_neurons_document(const Args& args, const Loaded<Scalar>& l, const MethodChoice& c, int layer,
                               const std::string& order, const Request& r) {
  const Prediction<Scalar> p = predict(r, l);
  depass::ComponentOptions options;
  options.mean_ablation = c.mean_ablation;
  const depass::Attribution<Scalar> a =
      depass::ComponentAttributor<Scalar>(*l.model).neurons(c.first(), layer, p.q.ids, objective_of(p.q, c), options);
  json doc = method_document<Scalar>(depass::output::schema::kNeurons, args);
  doc["tokens"] = tokens_json(l, p.q.ids);
  doc["position"] = p.q.position;
  add_explained(doc, l, p.q, p.logits);
  add_method_fields(doc, a, c);
  add_ranked_neurons(args, doc, layer, order, std::vector<double>(a.scores.data(), a.scores.data() + a.scores.size()));
  return doc;
}

template <typename Scalar>
json neurons_document(const Args& args, const Loaded<Scalar>& l, const depass::DecomposeOptions& base, int layer,
                      const std::string& order, const Request& r, const depass::Hook<Scalar>& progress) {
  const Prediction<Scalar> p = predict(r, l);
  const depass::DecomposeOptions options = request_options(args, base, p.q.position);
  const Initialisation<Scalar> init = Initialisation<Scalar>::neuron_outputs(layer);
  const Decomposition<Scalar> d = decompose(args, l, p, init, options, progress);
  const depass::Vector<Scalar> scores = explained_scores(d, p.q);
  const int I = l.model->config().hidden_dim;
  std::vector<double> s(static_cast<std::size_t>(I));
  for (int k = 0; k < I; ++k) s[static_cast<std::size_t>(k)] = static_cast<double>(scores(1 + k));
  json doc = start_document(depass::output::schema::kNeurons, args, options, l, p);
  add_ranked_neurons(args, doc, layer, order, s);
  doc["residual_score"] = static_cast<double>(scores(0));
  doc["other_score"] = static_cast<double>(scores(1 + I));
  add_bias(doc, d, scores);
  doc["residual_max_abs"] = max_residual(d);
  add_completeness(doc, doc, options, d);
  FloatComparison<Scalar> comparison(args);
  comparison.add(l, p, init, options, scores, 1, I);
  comparison.write(doc);
  maybe_write_components(args, doc, d, l.model->config().dim);
  return doc;
}

template <typename Scalar>
int run_neurons(const Args& args) {
  check_output_options(args);
  refuse_sink_option(args, false);
  const std::string order = args.get("--order", "desc");
  if (order != "desc" && order != "asc" && order != "abs")
    throw UsageError("--order '" + order + "' is unknown (allowed: desc, asc, abs)");
  const MethodChoice c = method_choice(args, depass::Level::Neurons);
  const depass::DecomposeOptions options = decompose_options(args);
  check_trace_options(args, options, true);
  const Inputs in = read_inputs(args);
  Loaded<Scalar> l = load<Scalar>(args);
  const int layer = resolve_layer(args, "--layer", l.model->config().n_layers, -1);
  return run_inputs<Scalar>(args, "neurons", in, l.model->config().n_layers, [&](const Request& r, const depass::Hook<Scalar>& hook) {
    if (!c.only_depass()) return baseline_neurons_document(args, l, c, layer, order, r);
    return neurons_document(args, l, options, layer, order, r, hook);
  });
}

/// The --basis files as D x k matrices (a 1-D file is one direction), checked against D.
template <typename Scalar>
std::vector<depass::Matrix<Scalar>> load_bases(const Args& args, int D, bool projections, json& described) {
  const std::vector<std::string> files = args.all("--basis");
  if (files.empty()) throw UsageError("missing required option --basis FILE.npy");
  std::vector<depass::Matrix<Scalar>> bases;
  described = json::array();
  for (const std::string& file : files) {
    if (!file_exists(file)) throw std::runtime_error("cannot open basis '" + file + "': no such file");
    depass::output::NpyArray a = depass::output::load_npy(file);
    if (a.shape.size() == 1) a.shape = {a.shape[0], 1};
    if (a.shape.size() != 2)
      throw depass::FormatError(file + ": a basis must be a 2-D array (D x k) or a 1-D direction, got shape " +
                                depass::output::npy_shape_string(a.shape));
    if (a.shape[0] != static_cast<std::size_t>(D))
      throw depass::FormatError(file + ": basis has " + std::to_string(a.shape[0]) + " rows; the model width is D = " +
                                std::to_string(D) + " (expected shape (" + std::to_string(D) + ", k))");
    if (projections && a.shape[1] != static_cast<std::size_t>(D))
      throw depass::FormatError(file + ": --projection needs a " + std::to_string(D) + " x " + std::to_string(D) +
                                " matrix, got shape " + depass::output::npy_shape_string(a.shape));
    for (double v : a.data)
      if (!std::isfinite(v)) throw depass::FormatError(file + ": basis contains NaN or infinite values");
    bases.push_back(depass::output::to_matrix<Scalar>(a, file));
    described.push_back({{"file", file}, {"shape", a.shape}, {"dtype", depass::output::npy_descr(a.type)}});
  }
  return bases;
}

template <typename Scalar>
int run_subspace(const Args& args) {
  check_output_options(args);
  refuse_sink_option(args, false);
  const long k = args.integer("--top-tokens", 5);
  if (k < 0) throw UsageError("--top-tokens must be >= 0, got " + std::to_string(k));
  const depass::DecomposeOptions base = decompose_options(args);
  check_trace_options(args, base, true);
  const Inputs in = read_inputs(args);
  Loaded<Scalar> l = load<Scalar>(args);
  const depass::Config& cfg = l.model->config();
  const int layer = resolve_layer(args, "--layer", cfg.n_layers, 0);
  const depass::Site site = parse_site(args.get("--site", "attention"));
  json described;
  auto bases = load_bases<Scalar>(args, cfg.dim, args.has("--projection"), described);
  const depass::Boundary at = site == depass::Site::Mlp ? depass::Boundary::before_mlp(layer) : depass::Boundary::before_attention(layer);
  const Initialisation<Scalar> init = Initialisation<Scalar>::subspaces(at, std::move(bases), args.has("--projection"));
  return run_inputs<Scalar>(args, "subspace", in, cfg.n_layers, [&](const Request& r, const depass::Hook<Scalar>& hook) {
    const Prediction<Scalar> p = predict(r, l);
    const depass::DecomposeOptions options = request_options(args, base, p.q.position);
    const Decomposition<Scalar> d = decompose(args, l, p, init, options, hook);
    const depass::Vector<Scalar> scores = explained_scores(d, p.q);
    json doc = start_document(depass::output::schema::kSubspace, args, options, l, p);
    doc["layer"] = layer;
    doc["site"] = site_name(site);
    doc["boundary"] = at.to_string();
    doc["bases"] = described;
    doc["projections"] = args.has("--projection");
    doc["components"] = json::array();
    const Eigen::Index S = static_cast<Eigen::Index>(described.size());
    for (Eigen::Index m = 0; m <= S; ++m)
      doc["components"].push_back({{"label", d.labels()[static_cast<std::size_t>(m)]},
                                   {"score", static_cast<double>(scores(m))},
                                   {"top_tokens", top_tokens_json(l, d, m, p.q.position, static_cast<int>(k))}});
    add_bias(doc, d, scores);
    doc["residual_max_abs"] = max_residual(d);
    maybe_write_components(args, doc, d, cfg.dim);
    return doc;
  });
}

/// The --init of decode as an Initialisation, described in `init_json`.
template <typename Scalar>
Initialisation<Scalar> decode_initialisation(const Args& args, const depass::Config& cfg, json& init_json) {
  const std::string kind = args.get("--init", "tokens");
  init_json = {{"kind", kind}};
  auto need = [&](const char* option) {
    if (!args.has(option)) throw UsageError(std::string("--init ") + kind + " needs " + option);
  };
  auto refuse = [&](const char* option) {
    if (args.has(option)) throw UsageError(std::string(option) + " does not apply to --init " + kind);
  };
  if (kind != "subspace") refuse("--basis");
  if (kind != "neurons") refuse("--neurons");
  if (kind != "modules" && kind != "subspace") refuse("--site");
  if (kind == "tokens") {
    refuse("--layer");
    return Initialisation<Scalar>::tokens();
  }
  if (kind == "modules") {
    need("--layer");
    need("--site");
    const int layer = resolve_layer(args, "--layer", cfg.n_layers, 0);
    const depass::Site site = parse_site(args.get("--site"));
    init_json["layer"] = layer;
    init_json["site"] = site_name(site);
    return Initialisation<Scalar>::module_output(layer, site);
  }
  if (kind == "heads") {
    need("--layer");
    const int layer = resolve_layer(args, "--layer", cfg.n_layers, 0);
    init_json["layer"] = layer;
    return Initialisation<Scalar>::heads(layer);
  }
  if (kind == "neurons") {
    need("--layer");
    const int layer = resolve_layer(args, "--layer", cfg.n_layers, 0);
    std::vector<int> neurons;
    if (args.has("--neurons")) {
      neurons = parse_int_list("--neurons", args.get("--neurons"));
      for (int n : neurons)
        if (n >= cfg.hidden_dim)
          throw UsageError("--neurons: neuron " + std::to_string(n) + " is out of range (the MLP has neurons 0.." +
                           std::to_string(cfg.hidden_dim - 1) + ")");
    }
    init_json["layer"] = layer;
    init_json["neurons"] = neurons;
    return Initialisation<Scalar>::neuron_outputs(layer, neurons);
  }
  if (kind == "subspace") {
    const int layer = resolve_layer(args, "--layer", cfg.n_layers, 0);
    const depass::Site site = parse_site(args.get("--site", "attention"));
    json described;
    auto bases = load_bases<Scalar>(args, cfg.dim, false, described);
    init_json["layer"] = layer;
    init_json["site"] = site_name(site);
    init_json["bases"] = described;
    return Initialisation<Scalar>::subspaces(
        site == depass::Site::Mlp ? depass::Boundary::before_mlp(layer) : depass::Boundary::before_attention(layer), std::move(bases));
  }
  throw UsageError("--init '" + kind + "' is unknown (allowed: tokens, modules, heads, neurons, subspace)");
}

template <typename Scalar>
int run_decode(const Args& args) {
  check_output_options(args);
  const long k = args.integer("--k", 5);
  if (k < 0) throw UsageError("--k must be >= 0, got " + std::to_string(k));
  if (args.has("--logits") && extension_of(args.get("--logits")) != "npy")
    throw UsageError("--logits writes a .npy file; its name must end in .npy");
  const depass::DecomposeOptions base = decompose_options(args);
  const Inputs in = read_inputs(args);
  Loaded<Scalar> l = load<Scalar>(args);
  const depass::Config& cfg = l.model->config();
  json init_json;
  const Initialisation<Scalar> init = decode_initialisation<Scalar>(args, cfg, init_json);
  refuse_sink_option(args, init.kind == depass::InitKind::Token);
  return run_inputs<Scalar>(args, "decode", in, cfg.n_layers, [&](const Request& r, const depass::Hook<Scalar>& hook) {
    const Prediction<Scalar> p = predict(r, l);
    const depass::DecomposeOptions options = request_options(args, base, p.q.position);
    const Decomposition<Scalar> d = decompose(args, l, p, init, options, hook);
    const depass::Vector<Scalar> scores = explained_scores(d, p.q);
    json doc = start_document(depass::output::schema::kDecode, args, options, l, p, init.kind == depass::InitKind::Token);
    doc["init"] = init_json;
    doc["k"] = k;
    doc["components"] = json::array();
    for (Eigen::Index m = 0; m < d.component_count(); ++m)
      doc["components"].push_back({{"index", m},
                                   {"label", d.labels()[static_cast<std::size_t>(m)]},
                                   {"score", static_cast<double>(scores(m))},
                                   {"top_tokens", top_tokens_json(l, d, m, p.q.position, static_cast<int>(k))}});
    doc["residual_max_abs"] = max_residual(d);
    if (args.has("--logits")) {
      const depass::Matrix<Scalar> logits = d.component_logits(p.q.position);
      if (MpiJob::get().writes()) depass::output::save_npy(args.get("--logits"), depass::output::NpyArray::from_matrix(logits));
      doc["logits_file"] = {{"file", args.get("--logits")}, {"shape", {logits.rows(), logits.cols()}}};
    }
    return doc;
  });
}

const std::vector<std::string> kCommon = join({kModelOptions, kInputOptions, kSplitOptions, kOutputOptions, {"--help"}});

}  // namespace

int command_modules(const Args& args) {
  args.allow_only(join({kCommon, {"--batch", "--trace", "--compare-float"}}));
  return with_precision<false, true>(args, "double", [&](auto s) { return run_modules<decltype(s)>(args); });
}

int command_heads(const Args& args) {
  args.allow_only(join({kCommon, kMethodOptions, {"--layer", "--components", "--batch", "--trace", "--trace-npy", "--compare-float"}}));
  return with_precision<false, true>(args, "double", [&](auto s) { return run_heads<decltype(s)>(args); });
}

int command_neurons(const Args& args) {
  args.allow_only(join({kCommon, kMethodOptions, {"--layer", "--order", "--components", "--batch", "--compare-float"}}));
  return with_precision<false, true>(args, "double", [&](auto s) { return run_neurons<decltype(s)>(args); });
}

int command_subspace(const Args& args) {
  args.allow_only(join({kCommon, {"--layer", "--site", "--basis", "--projection", "--top-tokens", "--components"}}), {"--basis"});
  return with_precision(args, "double", [&](auto s) { return run_subspace<decltype(s)>(args); });
}

int command_decode(const Args& args) {
  args.allow_only(join({kCommon, {"--init", "--layer", "--site", "--neurons", "--basis", "--k", "--logits"}}), {"--basis"});
  return with_precision(args, "double", [&](auto s) { return run_decode<decltype(s)>(args); });
}

}  // namespace cli
