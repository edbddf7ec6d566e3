// depass modules, heads, neurons, subspace, decode: attributions to model components.

#include <algorithm>
#include <numeric>

#include "Commands.hpp"

namespace cli {

const char* kModulesHelp =
    "usage: depass modules --model PATH (--prompt TEXT | --ids LIST) [--position -1] [--target ID]\n"
    "                      [split options] [output options]\n"
    "\n"
    "Attention vs MLP: for every layer l, the output of its attention block and of its MLP\n"
    "is split off as a component (module-level DePass, one run per module) and propagated to\n"
    "the logits; the score is that module's share of the target logit. For each module,\n"
    "residual score + module score + bias score = the target logit.\n"
    "\n"
    DEPASS_CLI_MODEL_HELP DEPASS_CLI_INPUT_HELP DEPASS_CLI_SPLIT_HELP DEPASS_CLI_OUTPUT_HELP
    "\n"
    "example:\n"
    "  depass modules --model models/stories260K/stories260K.bin \\\n"
    "      --prompt \"Once upon a time there was a little girl named Lily. She loved to play with her\"\n";

const char* kHeadsHelp =
    "usage: depass heads --model PATH (--prompt TEXT | --ids LIST) [--layer L] [--position -1]\n"
    "                    [--target ID] [--components FILE.npy] [split options] [output options]\n"
    "\n"
    "Head-level DePass: at each layer (or only --layer L) the attention output is split into\n"
    "one component per head (plus the residual input), propagated to the logits; each head's\n"
    "logit contribution fills an L x H table. Per layer: residual + heads + bias = logit.\n"
    "\n"
    DEPASS_CLI_MODEL_HELP DEPASS_CLI_INPUT_HELP
    "  --layer L            only this layer (negative counts from the end)\n"
    "  --components FILE    with --layer: write the component tensor (M x N x D) as .npy\n"
    DEPASS_CLI_SPLIT_HELP DEPASS_CLI_OUTPUT_HELP
    "\n"
    "example:\n"
    "  depass heads --model models/stories260K/stories260K.bin \\\n"
    "      --prompt \"Once upon a time there was a little girl named Lily. She loved to play with her\" \\\n"
    "      --output heads.html\n";

const char* kNeuronsHelp =
    "usage: depass neurons --model PATH (--prompt TEXT | --ids LIST) [--layer -1] [--top 10]\n"
    "                      [--order desc|asc|abs] [--position -1] [--target ID]\n"
    "                      [--components FILE.npy] [split options] [output options]\n"
    "\n"
    "Neuron-level DePass: every neuron of the layer's MLP writes a[:,k] * W2[:,k]; each is a\n"
    "component, propagated to the logits. Neurons are ranked by their score for the target.\n"
    "\n"
    DEPASS_CLI_MODEL_HELP DEPASS_CLI_INPUT_HELP
    "  --layer L            the MLP's layer (default -1, the last)\n"
    "  --order O            desc: most positive first (default); asc: most negative first;\n"
    "                       abs: largest magnitude first\n"
    "  --components FILE    write the component tensor (M x N x D) as .npy\n"
    DEPASS_CLI_SPLIT_HELP DEPASS_CLI_OUTPUT_HELP
    "\n"
    "example:\n"
    "  depass neurons --model models/stories260K/stories260K.bin --layer 4 --top 5 \\\n"
    "      --prompt \"Once upon a time there was a little girl named Lily. She loved to play with her\"\n";

const char* kSubspaceHelp =
    "usage: depass subspace --model PATH (--prompt TEXT | --ids LIST) --basis FILE.npy [--basis ...]\n"
    "                       [--layer 0] [--site attention|mlp] [--projection] [--top-tokens 5]\n"
    "                       [--position -1] [--target ID] [--components FILE.npy]\n"
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
    "usage: depass decode --model PATH (--prompt TEXT | --ids LIST)\n"
    "                     [--init tokens|modules|heads|neurons|subspace] [--layer L] [--site S]\n"
    "                     [--neurons LIST] [--basis FILE.npy ...] [--k 5] [--logits FILE.npy]\n"
    "                     [--position -1] [--target ID] [split options] [output options]\n"
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

/// Target, logits and the real target logit from a plain forward pass.
template <typename Scalar>
struct Prediction {
  std::vector<int> ids;
  long position = 0;
  int target = 0;
  double logit = 0;
  double prob = 0;
};

template <typename Scalar>
Prediction<Scalar> predict(const Args& args, const Loaded<Scalar>& l) {
  Prediction<Scalar> p;
  p.ids = input_ids(args, l);
  p.position = resolve_position(args, static_cast<long>(p.ids.size()));
  const depass::Matrix<Scalar> logits = l.model->forward(p.ids);
  const depass::Vector<Scalar> row = logits.row(p.position).transpose();
  p.target = resolve_target(args, row);
  p.logit = static_cast<double>(row(p.target));
  p.prob = probability(row, p.target);
  return p;
}

template <typename Scalar>
json start_document(const char* schema, const Args& args, const depass::DecomposeOptions& options, const Loaded<Scalar>& l,
                    const Prediction<Scalar>& p) {
  json doc = document<Scalar>(schema, args, options);
  doc["tokens"] = tokens_json(l, p.ids);
  doc["position"] = p.position;
  doc["target"] = target_json(l, p.target, p.logit, p.prob);
  return doc;
}

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
  depass::output::save_components_npy(args.get("--components"), d.components());
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
  if ((d.components().component(component).row(position).array() == Scalar(0)).all()) return top;
  for (const auto& t : d.top_tokens(component, position, k)) {
    json e = depass::output::token_json(t.first, piece(l, t.first));
    e["logit"] = static_cast<double>(t.second);
    top.push_back(e);
  }
  return top;
}

template <typename Scalar>
int run_modules(const Args& args) {
  check_output_options(args);
  const depass::DecomposeOptions options = decompose_options(args);
  Loaded<Scalar> l = load<Scalar>(args);
  const Prediction<Scalar> p = predict(args, l);
  const int L = l.model->config().n_layers;
  json doc = start_document(depass::output::schema::kModules, args, options, l, p);
  doc["modules"] = json::array();
  double residual = 0;
  Progress<Scalar> progress(args, "modules", 2L * L * L);
  const depass::Decomposer<Scalar> decomposer(*l.model);
  for (int layer = 0; layer < L; ++layer) {
    for (depass::Site site : {depass::Site::Attention, depass::Site::Mlp}) {
      const Decomposition<Scalar> d =
          decomposer.run(p.ids, Initialisation<Scalar>::module_output(layer, site), options, progress.hook());
      const depass::Vector<Scalar> scores = d.component_logits(p.position, p.target);
      json entry = {{"layer", layer},
                    {"site", site_name(site)},
                    {"label", d.labels()[1]},
                    {"score", static_cast<double>(scores(1))},
                    {"residual_score", static_cast<double>(scores(0))}};
      add_bias(entry, d, scores);
      doc["modules"].push_back(entry);
      residual = std::max(residual, max_residual(d));
    }
  }
  progress.finish();
  doc["residual_max_abs"] = residual;
  emit(args, doc);
  return 0;
}

template <typename Scalar>
int run_heads(const Args& args) {
  check_output_options(args);
  const depass::DecomposeOptions options = decompose_options(args);
  Loaded<Scalar> l = load<Scalar>(args);
  const depass::Config& cfg = l.model->config();
  std::vector<int> layers;
  if (args.has("--layer")) layers.push_back(resolve_layer(args, "--layer", cfg.n_layers, -1));
  else
    for (int i = 0; i < cfg.n_layers; ++i) layers.push_back(i);
  if (args.has("--components") && layers.size() != 1)
    throw UsageError("--components needs a single decomposition: add --layer L");
  const Prediction<Scalar> p = predict(args, l);
  json doc = start_document(depass::output::schema::kHeads, args, options, l, p);
  doc["n_heads"] = cfg.n_heads;
  doc["layers"] = json::array();
  double residual = 0;
  Progress<Scalar> progress(args, "heads", static_cast<long>(layers.size()) * cfg.n_layers);
  const depass::Decomposer<Scalar> decomposer(*l.model);
  for (int layer : layers) {
    const Decomposition<Scalar> d = decomposer.run(p.ids, Initialisation<Scalar>::heads(layer), options, progress.hook());
    const depass::Vector<Scalar> scores = d.component_logits(p.position, p.target);
    json heads = json::array();
    for (int h = 0; h < cfg.n_heads; ++h) heads.push_back(static_cast<double>(scores(1 + h)));
    json entry = {{"layer", layer}, {"heads", heads}, {"residual_score", static_cast<double>(scores(0))}};
    add_bias(entry, d, scores);
    doc["layers"].push_back(entry);
    residual = std::max(residual, max_residual(d));
    if (layers.size() == 1) maybe_write_components(args, doc, d, cfg.dim);
  }
  progress.finish();
  doc["residual_max_abs"] = residual;
  emit(args, doc);
  return 0;
}

template <typename Scalar>
int run_neurons(const Args& args) {
  check_output_options(args);
  const std::string order = args.get("--order", "desc");
  if (order != "desc" && order != "asc" && order != "abs")
    throw UsageError("--order '" + order + "' is unknown (allowed: desc, asc, abs)");
  const depass::DecomposeOptions options = decompose_options(args);
  Loaded<Scalar> l = load<Scalar>(args);
  const depass::Config& cfg = l.model->config();
  const int layer = resolve_layer(args, "--layer", cfg.n_layers, -1);
  const Prediction<Scalar> p = predict(args, l);
  Progress<Scalar> progress(args, "neurons", cfg.n_layers);
  const Decomposition<Scalar> d =
      depass::Decomposer<Scalar>(*l.model).run(p.ids, Initialisation<Scalar>::neuron_outputs(layer), options, progress.hook());
  progress.finish();
  const depass::Vector<Scalar> scores = d.component_logits(p.position, p.target);
  const int I = cfg.hidden_dim;
  std::vector<double> s(static_cast<std::size_t>(I));
  for (int k = 0; k < I; ++k) s[static_cast<std::size_t>(k)] = static_cast<double>(scores(1 + k));
  std::vector<int> rank(static_cast<std::size_t>(I));
  std::iota(rank.begin(), rank.end(), 0);
  std::stable_sort(rank.begin(), rank.end(), [&](int a, int b) {
    const double x = s[static_cast<std::size_t>(a)], y = s[static_cast<std::size_t>(b)];
    if (order == "asc") return x < y;
    if (order == "abs") return std::abs(x) > std::abs(y);
    return x > y;
  });
  json doc = start_document(depass::output::schema::kNeurons, args, options, l, p);
  doc["layer"] = layer;
  doc["n_neurons"] = I;
  doc["order"] = order;
  doc["top"] = json::array();
  const std::size_t top = std::min<std::size_t>(top_rows(args), rank.size());
  for (std::size_t r = 0; r < top; ++r)
    doc["top"].push_back({{"rank", r + 1}, {"neuron", rank[r]}, {"score", s[static_cast<std::size_t>(rank[r])]}});
  doc["scores"] = s;
  doc["residual_score"] = static_cast<double>(scores(0));
  doc["other_score"] = static_cast<double>(scores(1 + I));
  add_bias(doc, d, scores);
  doc["residual_max_abs"] = max_residual(d);
  maybe_write_components(args, doc, d, cfg.dim);
  emit(args, doc);
  return 0;
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
  const long k = args.integer("--top-tokens", 5);
  if (k < 0) throw UsageError("--top-tokens must be >= 0, got " + std::to_string(k));
  const depass::DecomposeOptions options = decompose_options(args);
  Loaded<Scalar> l = load<Scalar>(args);
  const depass::Config& cfg = l.model->config();
  const int layer = resolve_layer(args, "--layer", cfg.n_layers, 0);
  const depass::Site site = parse_site(args.get("--site", "attention"));
  json described;
  auto bases = load_bases<Scalar>(args, cfg.dim, args.has("--projection"), described);
  const Prediction<Scalar> p = predict(args, l);
  const depass::Boundary at = site == depass::Site::Mlp ? depass::Boundary::before_mlp(layer) : depass::Boundary::before_attention(layer);
  Progress<Scalar> progress(args, "subspace", cfg.n_layers);
  const Decomposition<Scalar> d = depass::Decomposer<Scalar>(*l.model).run(
      p.ids, Initialisation<Scalar>::subspaces(at, std::move(bases), args.has("--projection")), options, progress.hook());
  progress.finish();
  const depass::Vector<Scalar> scores = d.component_logits(p.position, p.target);
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
                                 {"top_tokens", top_tokens_json(l, d, m, p.position, static_cast<int>(k))}});
  add_bias(doc, d, scores);
  doc["residual_max_abs"] = max_residual(d);
  maybe_write_components(args, doc, d, cfg.dim);
  emit(args, doc);
  return 0;
}

template <typename Scalar>
int run_decode(const Args& args) {
  check_output_options(args);
  const long k = args.integer("--k", 5);
  if (k < 0) throw UsageError("--k must be >= 0, got " + std::to_string(k));
  if (args.has("--logits") && extension_of(args.get("--logits")) != "npy")
    throw UsageError("--logits writes a .npy file; its name must end in .npy");
  const depass::DecomposeOptions options = decompose_options(args);
  Loaded<Scalar> l = load<Scalar>(args);
  const depass::Config& cfg = l.model->config();
  const std::string kind = args.get("--init", "tokens");
  Initialisation<Scalar> init;
  json init_json = {{"kind", kind}};
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
    init = Initialisation<Scalar>::tokens();
  } else if (kind == "modules") {
    need("--layer");
    need("--site");
    const int layer = resolve_layer(args, "--layer", cfg.n_layers, 0);
    const depass::Site site = parse_site(args.get("--site"));
    init = Initialisation<Scalar>::module_output(layer, site);
    init_json["layer"] = layer;
    init_json["site"] = site_name(site);
  } else if (kind == "heads") {
    need("--layer");
    const int layer = resolve_layer(args, "--layer", cfg.n_layers, 0);
    init = Initialisation<Scalar>::heads(layer);
    init_json["layer"] = layer;
  } else if (kind == "neurons") {
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
    init = Initialisation<Scalar>::neuron_outputs(layer, neurons);
    init_json["layer"] = layer;
    init_json["neurons"] = neurons;
  } else if (kind == "subspace") {
    const int layer = resolve_layer(args, "--layer", cfg.n_layers, 0);
    const depass::Site site = parse_site(args.get("--site", "attention"));
    json described;
    auto bases = load_bases<Scalar>(args, cfg.dim, false, described);
    init = Initialisation<Scalar>::subspaces(
        site == depass::Site::Mlp ? depass::Boundary::before_mlp(layer) : depass::Boundary::before_attention(layer),
        std::move(bases));
    init_json["layer"] = layer;
    init_json["site"] = site_name(site);
    init_json["bases"] = described;
  } else {
    throw UsageError("--init '" + kind + "' is unknown (allowed: tokens, modules, heads, neurons, subspace)");
  }
  const Prediction<Scalar> p = predict(args, l);
  Progress<Scalar> progress(args, "decode", cfg.n_layers);
  const Decomposition<Scalar> d = depass::Decomposer<Scalar>(*l.model).run(p.ids, init, options, progress.hook());
  progress.finish();
  const depass::Vector<Scalar> scores = d.component_logits(p.position, p.target);
  json doc = start_document(depass::output::schema::kDecode, args, options, l, p);
  doc["init"] = init_json;
  doc["k"] = k;
  doc["components"] = json::array();
  for (Eigen::Index m = 0; m < d.component_count(); ++m)
    doc["components"].push_back({{"index", m},
                                 {"label", d.labels()[static_cast<std::size_t>(m)]},
                                 {"score", static_cast<double>(scores(m))},
                                 {"top_tokens", top_tokens_json(l, d, m, p.position, static_cast<int>(k))}});
  doc["residual_max_abs"] = max_residual(d);
  if (args.has("--logits")) {
    const depass::Matrix<Scalar> logits = d.component_logits(p.position);
    depass::output::save_npy(args.get("--logits"), depass::output::NpyArray::from_matrix(logits));
    doc["logits_file"] = {{"file", args.get("--logits")}, {"shape", {logits.rows(), logits.cols()}}};
  }
  emit(args, doc);
  return 0;
}

const std::vector<std::string> kCommon = join({kModelOptions, kInputOptions, kSplitOptions, kOutputOptions, {"--help"}});

}  // namespace

int command_modules(const Args& args) {
  args.allow_only(kCommon);
  return with_precision(args, "double", [&](auto s) { return run_modules<decltype(s)>(args); });
}

int command_heads(const Args& args) {
  args.allow_only(join({kCommon, {"--layer", "--components"}}));
  return with_precision(args, "double", [&](auto s) { return run_heads<decltype(s)>(args); });
}

int command_neurons(const Args& args) {
  args.allow_only(join({kCommon, {"--layer", "--order", "--components"}}));
  return with_precision(args, "double", [&](auto s) { return run_neurons<decltype(s)>(args); });
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
