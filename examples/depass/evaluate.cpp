// depass evaluate: the faithfulness protocols (docs/faithfulness.md) of every method over a
// data file (docs/faithfulness-data.md). Samples stream to OUT/samples.jsonl as they are
// computed, so an interrupted run continues with --resume; the curves, their areas and the
// top-1 evidence accuracy go to OUT/results.json, results.csv, report.html and one SVG per
// curve.

#include <sys/stat.h>

#include <depass/methods/ComponentMasking.hpp>
#include <depass/methods/CurveSummary.hpp>
#include <depass/methods/FaithfulnessData.hpp>
#include <depass/methods/SubspaceFaithfulness.hpp>
#include <depass/methods/TokenFaithfulness.hpp>
#include <depass/output/LineChart.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>

#include "Commands.hpp"
#include "Inputs.hpp"
#include "Methods.hpp"

namespace cli {

const char* kEvaluateHelp =
    "usage: depass evaluate --model PATH --data FILE.jsonl --protocol P --out DIR [--methods M,M,...]\n"
    "                       [--resume] [--limit N] [--percents 10,20,...] [--replace T] [--ks 0,1,2,4]\n"
    "                       [--layers L,...] [--probe-layer L] [--probe-site attention|mlp]\n"
    "                       [--train-fraction 0.5] [--steps 100] [--rule riemann|gauss-legendre]\n"
    "                       [--keep-last] [--mlp-split RULE] [--temperature T] [--no-bos-sink]\n"
    "                       [--sink-ratio R]\n"
    "\n"
    "Faithfulness of attribution methods (docs/faithfulness.md): each method ranks the inputs\n"
    "(tokens, heads or neurons) of every record, the top-ranked ones are removed and the\n"
    "model's answer is measured again. Protocols:\n"
    "  disrupt, recover  delete the top p% of input tokens (disrupt) or keep only them (recover)\n"
    "                    and measure how far the target's probability moves, p in --percents;\n"
    "                    min(100, |p_clean - p_new| / p_clean * 100) per sample, averaged; plus\n"
    "                    the top-1 evidence accuracy on records with \"evidence\". Both curves\n"
    "                    are computed; the protocol names the headline (higher is better for\n"
    "                    disrupt, lower for recover)\n"
    "  mask-heads        zero the top-k heads by each method's ranking (and, separately, the\n"
    "                    bottom k), k in --ks: the target's probability and top-1 accuracy\n"
    "  mask-neurons      the same for MLP neurons of --layers (default all), ranked together\n"
    "  subspace          a logistic-regression probe is trained on the hidden states at\n"
    "                    --probe-layer / --probe-site of the first --train-fraction of the\n"
    "                    records (\"label\" 0/1); each method ranks the tokens of the other\n"
    "                    records by how much they feed the probe's direction, and the curves\n"
    "                    follow the probe's probability of its class\n"
    "\n"
    DEPASS_CLI_MODEL_HELP
    "  --data FILE          JSON Lines: {\"prompt\" | \"ids\", \"target\"?, \"evidence\"?, \"label\"?};\n"
    "                       a bad line is reported with its number and skipped (exit status 1)\n"
    "  --protocol P         disrupt, recover, mask-heads, mask-neurons or subspace\n"
    "  --methods M,...      methods to compare (default: every one that applies)\n"
    "  --out DIR            results: samples.jsonl (one line per record and method, written as\n"
    "                       it is computed), run.json, results.json, results.csv, report.html,\n"
    "                       <curve>.svg\n"
    "  --resume             continue the run in DIR (same settings): saved samples are kept\n"
    "  --limit N            only the first N good records\n"
    "  --percents LIST      token protocols: the percents of the curves (default 10,20,...,100)\n"
    "  --replace T          token protocols: replace the removed tokens by T (id or text)\n"
    "                       instead of deleting them (positions kept)\n"
    "  --keep-last          disrupt, recover: the paper's protocol, the last token (the\n"
    "                       explained position) is never removed nor ranked, recover keeps it\n"
    "  --ks LIST            masking: the k grid (default 0, 1, 2, 4, ..., all)\n"
    "  --layers LIST        mask-neurons: the layers whose neurons are ranked (default all)\n"
    "  --probe-layer L      subspace: the probe's layer (default the middle one)\n"
    "  --probe-site S       subspace: attention (before the attention block, default) or mlp\n"
    "  --train-fraction F   subspace: share of the records that train the probe (default 0.5)\n"
    "  --steps K, --rule R  integrated gradients: nodes (default 100) and rule\n"
    "  --mlp-split RULE, --temperature T, --no-bos-sink, --sink-ratio R\n"
    "                       depass: its split rule (softmax, argmax, proportional, path) and\n"
    "                       options, as for `depass tokens` (default: softmax, T = 0.1, sink on)\n"
    "  --no-progress        no progress bar (it shows on a terminal only)\n"
    "\n"
    "example:\n"
    "  depass evaluate --model models/stories260K/stories260K.bin --data data/faithfulness/stories260K.jsonl \\\n"
    "      --protocol disrupt --methods depass,attention-mean,input-x-grad --limit 20 --out eval-stories\n";

namespace {

using depass::Method;

enum class Protocol { Disrupt, Recover, MaskHeads, MaskNeurons, Subspace };

/// What the command line asked for (everything run.json records).
struct EvalSettings {
  Protocol protocol = Protocol::Disrupt;
  std::string protocol_name;
  std::vector<Method> methods;
  std::vector<int> percents = depass::faithfulness::default_percents();
  std::string replace;  // empty: delete
  bool keep_last = false;  // the paper's protocol: the last token is no candidate
  std::vector<int> ks, layers;
  long probe_layer = -1;  // -1: the middle layer
  depass::Site probe_site = depass::Site::Attention;
  double train_fraction = 0.5;
  int steps = 100;
  depass::Quadrature rule = depass::Quadrature::Midpoint;
  depass::DecomposeOptions depass;  // Method::DePass: split rule, temperature, sink
  long limit = -1;

  bool tokens() const { return protocol == Protocol::Disrupt || protocol == Protocol::Recover; }
  bool masking() const { return protocol == Protocol::MaskHeads || protocol == Protocol::MaskNeurons; }
  depass::Level level() const {
    return protocol == Protocol::MaskHeads ? depass::Level::Heads : protocol == Protocol::MaskNeurons ? depass::Level::Neurons
                                                                                                     : depass::Level::Tokens;
  }
};

Protocol parse_protocol(const std::string& name) {
  if (name == "disrupt") return Protocol::Disrupt;
  if (name == "recover") return Protocol::Recover;
  if (name == "mask-heads") return Protocol::MaskHeads;
  if (name == "mask-neurons") return Protocol::MaskNeurons;
  if (name == "subspace") return Protocol::Subspace;
  throw UsageError("--protocol '" + name + "' is unknown (allowed: disrupt, recover, mask-heads, mask-neurons, subspace)");
}

/// The methods the subspace protocol can rank with (methods/SubspaceFaithfulness.hpp).
bool subspace_method(Method m) {
  return m == Method::DePass || m == Method::GradNorm || m == Method::InputXGrad || m == Method::IntegratedGradients ||
         m == Method::Occlusion;
}

std::vector<Method> parse_methods(const Args& args, const EvalSettings& s) {
  std::string list;
  for (const auto& entry : depass::method_names())
    if (depass::applies(entry.first, s.level()) && (s.protocol != Protocol::Subspace || subspace_method(entry.first)))
      list += (list.empty() ? "" : ",") + std::string(entry.second);
  return parse_method_list(args.get("--methods", list), s.level(), "--methods", list, [&](Method m, const std::string& name) {
    if (s.protocol == Protocol::Subspace && !subspace_method(m))
      throw UsageError("--methods: method '" + name + "' does not apply to the subspace protocol (allowed: " + list + ")");
  });
}

/// Options that only some protocols read must not be given to the others.
void refuse_unused(const Args& args, const EvalSettings& s) {
  auto only = [&](const char* option, bool applies, const char* where) {
    if (args.has(option) && !applies) throw UsageError(std::string(option) + " applies to " + where + " only");
  };
  only("--percents", s.tokens() || s.protocol == Protocol::Subspace, "disrupt, recover and subspace");
  only("--replace", s.tokens() || s.protocol == Protocol::Subspace, "disrupt, recover and subspace");
  only("--keep-last", s.tokens(), "disrupt and recover");
  only("--ks", s.masking(), "mask-heads and mask-neurons");
  only("--layers", s.protocol == Protocol::MaskNeurons, "mask-neurons");
  for (const char* option : {"--probe-layer", "--probe-site", "--train-fraction"}) only(option, s.protocol == Protocol::Subspace, "subspace");
  const bool ig = std::find(s.methods.begin(), s.methods.end(), Method::IntegratedGradients) != s.methods.end();
  only("--steps", ig, "--methods with ig");
  only("--rule", ig, "--methods with ig");
  const bool depass = std::find(s.methods.begin(), s.methods.end(), Method::DePass) != s.methods.end();
  for (const char* option : {"--mlp-split", "--temperature", "--no-bos-sink", "--sink-ratio"}) only(option, depass, "--methods with depass");
  if (args.get("--precision", "") == "bf16" && !depass)
    throw UsageError("--precision bf16 runs DePass in bf16 (the other methods in float): give --methods with depass");
}

std::vector<int> int_list(const Args& args, const char* option) {
  const std::vector<int> v = parse_int_list(option, args.get(option));
  for (std::size_t i = 1; i < v.size(); ++i)
    if (v[i] <= v[i - 1]) throw UsageError(std::string(option) + " must be strictly increasing, got " + args.get(option));
  return v;
}

EvalSettings eval_settings(const Args& args) {
  EvalSettings s;
  if (!args.has("--protocol")) throw UsageError("missing required option --protocol (disrupt, recover, mask-heads, mask-neurons, subspace)");
  s.protocol_name = args.get("--protocol");
  s.protocol = parse_protocol(s.protocol_name);
  s.methods = parse_methods(args, s);
  refuse_unused(args, s);
  if (args.has("--percents")) s.percents = int_list(args, "--percents");
  for (int p : s.percents)
    if (p < 1 || p > 100) throw UsageError("--percents: " + std::to_string(p) + " is out of range [1, 100]");
  if (args.has("--ks")) s.ks = int_list(args, "--ks");
  if (args.has("--layers")) s.layers = int_list(args, "--layers");
  s.replace = args.get("--replace", "");
  s.keep_last = args.has("--keep-last");
  s.probe_layer = args.integer("--probe-layer", -1);
  if (args.has("--probe-layer") && s.probe_layer < 0)
    throw UsageError("--probe-layer must be >= 0, got " + std::to_string(s.probe_layer));
  if (args.has("--probe-site")) s.probe_site = parse_site(args.get("--probe-site"));
  s.train_fraction = args.number("--train-fraction", 0.5);
  if (!(s.train_fraction > 0 && s.train_fraction < 1))
    throw UsageError("--train-fraction must be in (0, 1), got " + args.get("--train-fraction"));
  parse_ig_quadrature(args, s.steps, s.rule);
  s.depass = decompose_options(args);
  s.limit = args.integer("--limit", -1);
  if (args.has("--limit") && s.limit < 1) throw UsageError("--limit must be >= 1, got " + std::to_string(s.limit));
  if (!args.has("--out")) throw UsageError("missing required option --out DIR (where the results go)");
  if (!args.has("--data")) throw UsageError("missing required option --data FILE.jsonl");
  return s;
}

/// The settings a resumed run must share with the saved one.
json describe(const Args& args, const EvalSettings& s, const std::string& precision) {
  json methods = json::array();
  for (Method m : s.methods) methods.push_back(depass::to_string(m));
  json run = {{"schema", "depass.evaluate-run/1"}, {"model", args.get("--model")}, {"data", args.get("--data")},
          {"protocol", s.protocol_name},        {"methods", methods},             {"percents", s.percents},
          {"replace", s.replace},               {"ks", s.ks},                     {"layers", s.layers},
          {"probe_layer", s.probe_layer},       {"probe_site", site_name(s.probe_site)},
          {"train_fraction", s.train_fraction}, {"steps", s.steps},               {"rule", depass::to_string(s.rule)},
          {"limit", s.limit},                   {"precision", precision}};
  // Recorded only when not the defaults: runs saved before these options existed resume.
  const depass::DecomposeOptions plain;
  if (s.depass.split != plain.split) run["mlp_split"] = depass::to_string(s.depass.split);
  if (s.depass.temperature != plain.temperature) run["temperature"] = s.depass.temperature;
  if (s.depass.bos_sink != plain.bos_sink) run["bos_sink"] = s.depass.bos_sink;
  if (s.depass.sink_ratio != plain.sink_ratio) run["sink_ratio"] = s.depass.sink_ratio;
  if (s.keep_last) run["keep_last"] = true;
  return run;
}

// --- the output directory -------------------------------------------------------------------

bool is_directory(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

/// OUT: run.json (the settings) and samples.jsonl (one line per record and method, flushed
/// as written). A new run refuses a directory that holds a run; --resume needs the same
/// settings and keeps every complete saved line (a half-written last line is dropped).
/// Under mpirun rank 0 alone keeps the log: the other ranks' logs are inactive (nothing
/// saved, nothing written), and rank 0 drops what they recompute of a resumed run.
class SampleLog {
 public:
  SampleLog(const std::string& dir, const json& run, bool resume, bool active = true) : dir_(dir), active_(active) {
    if (!active) return;
    if (!is_directory(dir) && mkdir(dir.c_str(), 0777) != 0) throw std::runtime_error("cannot create --out directory '" + dir + "'");
    const bool saved = file_exists(path("run.json"));
    if (saved && !resume)
      throw UsageError("--out " + dir + " holds a run already (run.json): add --resume to continue it, or choose another directory");
    if (saved) check_same(run, json::parse(read_input("run.json", path("run.json"))));
    else write_file(path("run.json"), run.dump(2) + "\n");
    if (saved) load();
    out_.open(path("samples.jsonl"), std::ios::app);
    if (!out_) throw std::runtime_error("cannot write " + path("samples.jsonl"));
  }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  const std::vector<json>& saved() const { return saved_; }
  bool done(long line, const std::string& method) const { return done_.count({line, method}) > 0; }

  void write(const json& sample) {
    if (!active_) return;
    out_ << sample.dump() << "\n";
    out_.flush();
  }

 private:
  static void check_same(const json& run, const json& saved) {
    std::set<std::string> keys;
    for (auto it = run.begin(); it != run.end(); ++it) keys.insert(it.key());
    for (auto it = saved.begin(); it != saved.end(); ++it) keys.insert(it.key());
    for (const std::string& key : keys)
      if (key != "limit" && (!saved.contains(key) || !run.contains(key) || saved[key] != run[key]))  // a resumed run may go further
        throw UsageError("--resume: the run in --out was made with " + key + " = " + (saved.contains(key) ? saved[key].dump() : "the default") +
                         ", this one asks for " + (run.contains(key) ? run[key].dump() : "the default"));
  }

  /// The complete lines of samples.jsonl; the file is rewritten without a torn last line.
  void load() {
    if (!file_exists(path("samples.jsonl"))) return;
    std::istringstream in(read_input("samples.jsonl", path("samples.jsonl")));
    std::string line, kept;
    while (std::getline(in, line)) {
      json sample;
      try {
        sample = json::parse(line);
      } catch (const json::parse_error&) {
        break;  // the interrupted write; everything after it is lost too
      }
      done_.insert({sample.at("line").get<long>(), sample.at("method").get<std::string>()});
      saved_.push_back(sample);
      kept += line + "\n";
    }
    write_file(path("samples.jsonl"), kept);
  }

  std::string dir_;
  std::ofstream out_;
  bool active_ = true;
  std::vector<json> saved_;
  std::set<std::pair<long, std::string>> done_;
};

// --- the samples ----------------------------------------------------------------------------

/// A token-curve sample (disrupt / recover, subspace) as a samples.jsonl line.
json token_sample_json(const depass::FaithfulnessRecord& r, int target, const depass::TokenCurveSample& s) {
  json j = {{"line", r.line}, {"method", depass::to_string(s.method)}, {"target", target}};
  if (!s.ok()) {
    j["error"] = s.error;
    return j;
  }
  j["p_clean"] = s.p_clean;
  j["top_ranked"] = std::vector<long>(s.ranking.begin(), s.ranking.begin() + std::min<std::ptrdiff_t>(10, s.ranking.size()));
  if (!r.evidence.empty())
    j["evidence_hit"] = !s.ranking.empty() && std::find(r.evidence.begin(), r.evidence.end(), s.ranking.front()) != r.evidence.end();
  j["disrupt"] = s.disrupt;
  j["recover"] = s.recover;
  j["disrupt_probability"] = s.disrupt_probability;
  j["recover_probability"] = s.recover_probability;
  return j;
}

json masking_sample_json(const depass::FaithfulnessRecord& r, int target, const depass::MaskingSample& s) {
  return {{"line", r.line},
          {"method", depass::to_string(s.method)},
          {"target", target},
          {"p_clean", s.p_clean},
          {"top1_clean", s.top1_clean},
          {"top_probability", s.top_probability},
          {"bottom_probability", s.bottom_probability},
          {"top_accuracy", s.top_correct},
          {"bottom_accuracy", s.bottom_correct}};
}

/// The curves of a protocol, by the samples.jsonl field they average.
std::vector<std::string> curve_names(const EvalSettings& s) {
  if (s.masking()) return {"top_probability", "bottom_probability", "top_accuracy", "bottom_accuracy"};
  return {"disrupt", "recover"};
}

/// Per method: the mean curves, the evidence hits and the failed samples.
struct MethodTotals {
  std::map<std::string, depass::CurveSummary> curves;
  long evidence_hits = 0, evidence_counted = 0, failed = 0;
};

class Totals {
 public:
  Totals(const EvalSettings& s, const std::vector<double>& xs) : names_(curve_names(s)) {
    for (Method m : s.methods) {
      MethodTotals t;
      for (const std::string& c : names_) t.curves.emplace(c, depass::CurveSummary(xs));
      by_method_.emplace(depass::to_string(m), t);
    }
  }
  /// One samples.jsonl line (fresh or saved).
  void add(const json& sample) {
    MethodTotals& t = by_method_.at(sample.at("method").get<std::string>());
    if (sample.contains("error")) {
      ++t.failed;
      return;
    }
    for (const std::string& c : names_) t.curves.at(c).add(sample.at(c).get<std::vector<double>>());
    if (sample.contains("evidence_hit")) {
      ++t.evidence_counted;
      if (sample["evidence_hit"].get<bool>()) ++t.evidence_hits;
    }
  }
  const MethodTotals& at(const std::string& method) const { return by_method_.at(method); }
  const std::vector<std::string>& names() const { return names_; }

 private:
  std::vector<std::string> names_;
  std::map<std::string, MethodTotals> by_method_;
};

// --- the protocols --------------------------------------------------------------------------

/// The target of a record: its own, or the model's top-1 after its ids.
template <typename Scalar>
int target_of(const Loaded<Scalar>& l, const depass::FaithfulnessRecord& r) {
  if (r.target >= 0) return r.target;
  Eigen::Index best = 0;
  l.model->forward(r.ids, {}, true).row(0).maxCoeff(&best);
  return static_cast<int>(best);
}

/// Computes the samples of one record for the given methods, as samples.jsonl lines.
using Evaluator = std::function<std::vector<json>(const depass::FaithfulnessRecord&, const std::vector<Method>&)>;

template <typename Scalar>
depass::IgOptions<Scalar> eval_ig(const EvalSettings& s) {
  depass::IgOptions<Scalar> ig;
  ig.steps = s.steps;
  ig.rule = s.rule;
  return ig;
}

template <typename Scalar>
int replacement_id(const Loaded<Scalar>& l, const EvalSettings& s) {
  if (s.replace.empty()) return -1;
  const depass::Tokenizer* tok = l.tokenizer ? &*l.tokenizer : nullptr;
  return resolve_token(s.replace, "--replace", l.model->config().vocab_size, tok, false);
}

/// The options both curve protocols share, from the command line.
template <typename Scalar>
void fill_curve_options(const Loaded<Scalar>& l, const EvalSettings& s, depass::CurveOptions<Scalar>& options) {
  options.percents = s.percents;
  options.replacement = replacement_id(l, s);
  options.ig = eval_ig<Scalar>(s);
  options.depass = s.depass;
}

template <typename Scalar>
Evaluator token_evaluator(const Loaded<Scalar>& l, const EvalSettings& s) {
  depass::TokenFaithfulnessOptions<Scalar> options;
  fill_curve_options(l, s, options);
  options.keep_last = s.keep_last;
  auto faith = std::make_shared<depass::TokenFaithfulness<Scalar>>(*l.model, options);
  return [faith, &l](const depass::FaithfulnessRecord& r, const std::vector<Method>& methods) {
    const int target = target_of(l, r);
    std::vector<json> out;
    for (const depass::TokenCurveSample& sample : faith->evaluate(r.ids, target, methods)) out.push_back(token_sample_json(r, target, sample));
    return out;
  };
}

template <typename Scalar>
Evaluator masking_evaluator(const Loaded<Scalar>& l, const EvalSettings& s) {
  depass::MaskingOptions options;
  options.ks = s.ks;
  options.neuron_layers = s.layers;
  options.component.depass = s.depass;
  auto masking = std::make_shared<depass::ComponentMasking<Scalar>>(*l.model, options);
  const depass::Level level = s.level();
  return [masking, level, &l](const depass::FaithfulnessRecord& r, const std::vector<Method>& methods) {
    const int target = target_of(l, r);
    std::vector<json> out;
    for (Method m : methods) out.push_back(masking_sample_json(r, target, masking->evaluate(m, level, r.ids, target)));
    return out;
  };
}

/// The probe's boundary (before the attention or the MLP of the probe layer).
template <typename Scalar>
depass::Boundary probe_boundary(const Loaded<Scalar>& l, const EvalSettings& s) {
  const int L = l.model->config().n_layers;
  const long layer = s.probe_layer < 0 ? L / 2 : s.probe_layer;
  const int at = static_cast<int>(layer);
  return s.probe_site == depass::Site::Mlp ? depass::Boundary::before_mlp(at) : depass::Boundary::before_attention(at);
}

/// Trains the probe on the first train_fraction of the records, which are then removed;
/// its training accuracy and size go into `info`.
template <typename Scalar>
Evaluator subspace_evaluator(const Loaded<Scalar>& l, const EvalSettings& s, std::vector<depass::FaithfulnessRecord>& records,
                                     json& info) {
  const std::size_t n_train = static_cast<std::size_t>(s.train_fraction * static_cast<double>(records.size()));
  if (n_train < 2 || n_train >= records.size())
    throw std::runtime_error("the subspace protocol needs records to train the probe on and records to evaluate: " +
                             std::to_string(records.size()) + " good records, " + std::to_string(n_train) + " for training");
  std::vector<std::vector<int>> sequences;
  std::vector<int> labels;
  for (std::size_t i = 0; i < n_train; ++i) {
    sequences.push_back(records[i].ids);
    labels.push_back(records[i].label);
  }
  const depass::Boundary boundary = probe_boundary(l, s);
  const depass::Matrix<Scalar> features = depass::SubspaceFaithfulness<Scalar>::features(*l.model, sequences, boundary);
  depass::LinearProbe<Scalar> probe = depass::LinearProbe<Scalar>::train(features, labels);
  info = {{"boundary", boundary.to_string()}, {"train_records", n_train}, {"train_accuracy", probe.accuracy},
          {"converged", probe.converged}, {"first_evaluated_line", records[n_train].line}};
  records.erase(records.begin(), records.begin() + static_cast<std::ptrdiff_t>(n_train));
  depass::SubspaceOptions<Scalar> options;
  fill_curve_options(l, s, options);
  auto faith = std::make_shared<depass::SubspaceFaithfulness<Scalar>>(*l.model, boundary, std::move(probe), options);
  return [faith](const depass::FaithfulnessRecord& r, const std::vector<Method>& methods) {
    std::vector<json> out;
    for (const depass::TokenCurveSample& sample : faith->evaluate(r.ids, methods)) {
      out.push_back(token_sample_json(r, -1, sample));
      out.back().erase("target");
      if (r.label >= 0) out.back()["label"] = r.label;
    }
    return out;
  };
}

// --- results --------------------------------------------------------------------------------

std::vector<double> curve_xs(const EvalSettings& s, long units) {
  if (!s.masking()) return std::vector<double>(s.percents.begin(), s.percents.end());
  std::vector<int> ks = s.ks;
  if (ks.empty()) {
    for (long k = 1; k < units; k *= 2) ks.push_back(static_cast<int>(k));
    ks.insert(ks.begin(), 0);
    ks.push_back(static_cast<int>(units));
  }
  return std::vector<double>(ks.begin(), ks.end());
}

json results_json(const json& run, const EvalSettings& s, const Totals& totals, const std::vector<double>& xs, const json& extra) {
  json doc = run;
  doc["schema"] = "depass.evaluate/1";
  doc["xs"] = xs;
  doc["x"] = s.masking() ? "k (units masked)" : "percent of tokens";
  doc.update(extra);
  doc["results"] = json::array();
  for (Method m : s.methods) {
    const MethodTotals& t = totals.at(depass::to_string(m));
    json r = {{"method", depass::to_string(m)}, {"failed", t.failed}};
    for (const std::string& c : totals.names()) {
      const depass::CurveSummary& curve = t.curves.at(c);
      r["samples"] = curve.samples();
      r["curves"][c] = {{"mean", curve.mean()}, {"area", curve.area()}};
    }
    if (t.evidence_counted > 0)
      r["evidence_top1"] = {{"hits", t.evidence_hits},
                            {"counted", t.evidence_counted},
                            {"accuracy", static_cast<double>(t.evidence_hits) / static_cast<double>(t.evidence_counted)}};
    doc["results"].push_back(r);
  }
  return doc;
}

std::string results_csv(const json& doc) {
  std::string csv = "method,curve,x,mean\n";
  for (const json& r : doc["results"])
    for (auto c = r["curves"].begin(); c != r["curves"].end(); ++c) {
      for (std::size_t i = 0; i < doc["xs"].size(); ++i)
        csv += r["method"].get<std::string>() + "," + c.key() + "," + depass::output::exact_number(doc["xs"][i].get<double>()) + "," +
               depass::output::exact_number(c.value()["mean"][i].is_number() ? c.value()["mean"][i].get<double>() : NAN) + "\n";
      csv += r["method"].get<std::string>() + "," + c.key() + ",area," +
             depass::output::exact_number(c.value()["area"].is_number() ? c.value()["area"].get<double>() : NAN) + "\n";
    }
  return csv;
}

/// One line chart per curve, every method a series.
depass::output::LineChart curve_chart(const json& doc, const std::string& curve, bool standalone) {
  depass::output::LineChart chart;
  chart.xs = doc["xs"].get<std::vector<double>>();
  chart.x_title = doc["x"].get<std::string>();
  chart.y_title = curve;
  chart.aria_label = doc["protocol"].get<std::string>() + ": " + curve;
  chart.standalone = standalone;
  chart.fixed_y = true;
  chart.y_min = 0;
  chart.y_max = curve.find("accuracy") != std::string::npos || curve.find("probability") != std::string::npos ? 1 : 100;
  for (const json& r : doc["results"]) {
    std::vector<double> ys;
    for (const json& v : r["curves"][curve]["mean"]) ys.push_back(v.is_number() ? v.get<double>() : NAN);
    chart.series.push_back({r["method"].get<std::string>(), ys, "", false});
  }
  return chart;
}

std::string results_table(const json& doc) {
  std::vector<std::string> header = {"method", "samples"};
  const json& first = doc["results"][0]["curves"];
  for (auto c = first.begin(); c != first.end(); ++c) header.push_back(c.key() + " area");
  const bool evidence = std::any_of(doc["results"].begin(), doc["results"].end(), [](const json& r) { return r.contains("evidence_top1"); });
  if (evidence) header.push_back("top-1 evidence");
  std::vector<std::vector<std::string>> rows;
  for (const json& r : doc["results"]) {
    std::vector<std::string> row = {r["method"].get<std::string>(), std::to_string(r["samples"].get<long>())};
    for (auto c = r["curves"].begin(); c != r["curves"].end(); ++c)
      row.push_back(c.value()["area"].is_number() ? depass::output::fixed(c.value()["area"].get<double>(), 3) : "-");
    if (evidence)
      row.push_back(r.contains("evidence_top1") ? depass::output::fixed(100 * r["evidence_top1"]["accuracy"].get<double>(), 1) + "%" : "-");
    rows.push_back(row);
  }
  return depass::output::table(header, rows, std::vector<bool>(header.size(), true));
}

std::string report_html(const json& doc) {
  std::string body = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>depass evaluate: " +
                     depass::output::html_escape(doc["protocol"].get<std::string>()) +
                     "</title><style>body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
                     "table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}"
                     "th:first-child,td:first-child{text-align:left}</style></head><body>";
  body += "<h1>Faithfulness: " + depass::output::html_escape(doc["protocol"].get<std::string>()) + "</h1><p>model " +
          depass::output::html_escape(doc["model"].get<std::string>()) + " &middot; data " +
          depass::output::html_escape(doc["data"].get<std::string>()) + " &middot; " + std::to_string(doc["records"].get<long>()) +
          " records</p><pre>" + depass::output::html_escape(results_table(doc)) + "</pre>";
  for (auto c = doc["results"][0]["curves"].begin(); c != doc["results"][0]["curves"].end(); ++c)
    body += "<h2>" + depass::output::html_escape(c.key()) + "</h2>" + depass::output::svg_line_chart(curve_chart(doc, c.key(), false));
  return body + "</body></html>\n";
}

void write_results(const SampleLog& log, const json& doc) {
  write_file(log.path("results.json"), doc.dump(2) + "\n");
  write_file(log.path("results.csv"), results_csv(doc));
  write_file(log.path("report.html"), report_html(doc));
  for (auto c = doc["results"][0]["curves"].begin(); c != doc["results"][0]["curves"].end(); ++c)
    write_file(log.path(c.key() + ".svg"), depass::output::svg_line_chart(curve_chart(doc, c.key(), true)) + "\n");
}

// --- the run --------------------------------------------------------------------------------

template <typename Scalar>
depass::FaithfulnessData read_data(const Args& args, const Loaded<Scalar>& l, const EvalSettings& s) {
  depass::DataRequirements req;
  req.vocab_size = l.model->config().vocab_size;
  req.max_length = l.model->config().max_seq_len;
  req.label = s.protocol == Protocol::Subspace;
  req.tokenizer = l.tokenizer ? &*l.tokenizer : nullptr;
  depass::FaithfulnessData data = depass::load_faithfulness_data(args.get("--data"), req);
  for (const depass::DataError& e : data.errors) std::cerr << "depass evaluate: " << args.get("--data") << ": " << e.message << "\n";
  if (s.limit > 0 && static_cast<long>(data.records.size()) > s.limit) data.records.resize(static_cast<std::size_t>(s.limit));
  return data;
}

/// The settings that depend on the model, checked before any work.
template <typename Scalar>
void check_against_model(const Loaded<Scalar>& l, const EvalSettings& s) {
  const depass::Config& cfg = l.model->config();
  for (int layer : s.layers)
    if (layer >= cfg.n_layers) throw UsageError("--layers: layer " + std::to_string(layer) + " is out of range [0, " + std::to_string(cfg.n_layers) + ")");
  if (s.probe_layer >= cfg.n_layers)
    throw UsageError("--probe-layer " + std::to_string(s.probe_layer) + " is out of range [0, " + std::to_string(cfg.n_layers) + ")");
  replacement_id(l, s);
}

/// Units a masking protocol ranks: every head, or the neurons of the chosen layers.
template <typename Scalar>
long unit_count(const Loaded<Scalar>& l, const EvalSettings& s) {
  const depass::Config& cfg = l.model->config();
  if (s.protocol == Protocol::MaskHeads) return static_cast<long>(cfg.n_layers) * cfg.n_heads;
  return static_cast<long>(s.layers.empty() ? cfg.n_layers : static_cast<int>(s.layers.size())) * cfg.hidden_dim;
}

/// The samples of one record for the methods the log does not hold yet (a JSON array).
json evaluate_record(const depass::FaithfulnessRecord& r, const EvalSettings& s, const SampleLog& log, const Evaluator& evaluate) {
  std::vector<Method> missing;
  for (Method m : s.methods)
    if (!log.done(r.line, depass::to_string(m))) missing.push_back(m);
  json samples = json::array();
  for (const json& sample : missing.empty() ? std::vector<json>{} : evaluate(r, missing)) samples.push_back(sample);
  return samples;
}

template <typename Scalar>
int run_evaluate(const Args& args) {
  const EvalSettings s = eval_settings(args);
  const auto started = std::chrono::steady_clock::now();
  Loaded<Scalar> l = load<Scalar>(args);
  check_against_model(l, s);
  depass::FaithfulnessData data = read_data(args, l, s);
  const bool bf16 = s.depass.gemm_precision == depass::GemmPrecision::Bf16;
  const json run = describe(args, s, bf16 ? "bf16" : std::is_same<Scalar, float>::value ? "float" : "double");
  json extra = {{"data_errors", json::array()}};
  for (const depass::DataError& e : data.errors) extra["data_errors"].push_back({{"line", e.line}, {"error", e.message}});
  Evaluator evaluate = s.masking() ? masking_evaluator(l, s) : s.tokens() ? token_evaluator(l, s) : Evaluator{};
  if (s.protocol == Protocol::Subspace) {
    json probe;
    evaluate = subspace_evaluator(l, s, data.records, probe);  // the training records leave data.records
    extra["probe"] = probe;
  }
  extra["records"] = data.records.size();  // the evaluated ones
  MpiJob& job = MpiJob::get();
  SampleLog log(args.get("--out"), run, args.has("--resume"), job.writes());
  const std::vector<double> xs = curve_xs(s, s.masking() ? unit_count(l, s) : 0);
  Totals totals(s, xs);
  for (const json& sample : log.saved()) totals.add(sample);
  depass::output::ProgressBar bar(std::cerr, "evaluate", static_cast<long>(data.records.size()), progress_enabled(args), "records");
  // Under mpirun the ranks take the records in turn; rank 0 logs each round in input order.
  const std::size_t ranks = static_cast<std::size_t>(job.ranks()), count = data.records.size();
  for (std::size_t first = 0; first < count; first += ranks) {
    const std::size_t mine = first + static_cast<std::size_t>(job.rank());
    const json samples = mine < count ? evaluate_record(data.records[mine], s, log, evaluate) : json();
    for (const std::string& text : job.gather(samples.dump())) {
      const json round = json::parse(text);
      if (round.is_null()) continue;  // a rank past the last record
      for (const json& sample : round) {
        const long line = sample["line"].get<long>();
        const std::string method = sample["method"].get<std::string>();
        if (log.done(line, method)) continue;  // saved by an earlier run: another rank recomputed it
        log.write(sample);
        totals.add(sample);
        if (sample.contains("error")) std::cerr << "depass evaluate: line " << line << ", " << method << ": " << sample["error"].get<std::string>() << "\n";
      }
      bar.advance();
    }
  }
  bar.finish();
  extra["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  extra["resumed_samples"] = log.saved().size();  // computed by an earlier run: not in `seconds`
  const json doc = results_json(run, s, totals, xs, extra);
  write_results(log, doc);
  std::cout << results_table(doc);
  std::cerr << "depass: wrote " << log.path("results.json") << ", results.csv, report.html and the curves (.svg)\n";
  return data.errors.empty() ? 0 : 1;
}

}  // namespace

int command_evaluate(const Args& args) {
  args.allow_only({"--model", "--tokenizer", "--precision", "--threads", "--data", "--protocol", "--methods", "--out", "--resume",
                   "--limit", "--percents", "--replace", "--ks", "--layers", "--probe-layer", "--probe-site", "--train-fraction",
                   "--steps", "--rule", "--mlp-split", "--temperature", "--no-bos-sink", "--sink-ratio", "--keep-last", "--no-progress", "--help"});
  return with_precision<false, true>(args, "double", [&](auto s) { return run_evaluate<decltype(s)>(args); });
}

}  // namespace cli
