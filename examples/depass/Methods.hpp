#pragma once
// --method and --objective of tokens, heads and neurons: which attribution method
// (methods/Method.hpp, docs/methods.md) explains which scalar. DePass is the default and
// keeps its own documents; the baselines write the same fields (scores per token, the
// heads table, the ranked neurons) without DePass's bias / residual components, plus what
// the method itself measured (f(x); for integrated gradients f(baseline) and the
// completeness gap).

#include <algorithm>
#include <cmath>
#include <functional>
#include <depass/methods/ComponentAttributor.hpp>
#include <depass/methods/TokenAttributor.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "Inputs.hpp"

namespace cli {

/// Options of the baselines; each is refused where it does not apply.
inline const std::vector<std::string> kMethodOptions = {"--method", "--objective", "--steps", "--rule", "--baseline",
                                                        "--mean-ablation"};

#define DEPASS_CLI_METHOD_HELP(METHODS)                                                      \
  "  --method M           attribution method (default depass): " METHODS "\n"                     \
  "                       (docs/methods.md); split, chunk and trace options are DePass's own\n"     \
  "  --objective O        logit (default) or logprob (log-softmax of the target; not with\n"       \
  "                       depass, whose shares add up to a logit, nor with --contrast, which\n"     \
  "                       explains logit(target) - logit(contrast) with every method)\n"

#define DEPASS_CLI_IG_HELP                                                                           \
  "  --steps K            ig: quadrature nodes (default 100)\n"                                     \
  "  --rule R             ig: riemann (midpoint, default) or gauss-legendre\n"                      \
  "  --baseline B         ig: zero (all-zero embeddings, default) or a token (same rule as\n"       \
  "                       --target) whose embedding replaces every token after BOS\n"

/// What --method / --objective asked for, checked against the level and the other options.
struct MethodChoice {
  std::vector<depass::Method> methods;  // tokens may compare several; heads and neurons take one
  depass::ObjectiveKind objective = depass::ObjectiveKind::Logit;  // Logit or LogProb; a contrast overrides
  int steps = 100;
  depass::Quadrature rule = depass::Quadrature::Midpoint;
  std::string baseline = "zero";
  bool mean_ablation = false;

  depass::Method first() const { return methods.front(); }
  bool only_depass() const { return methods.size() == 1 && methods.front() == depass::Method::DePass; }
  bool has(depass::Method m) const { return std::find(methods.begin(), methods.end(), m) != methods.end(); }
};

/// A comma-separated list of methods that apply at `level`, each named once, as `option`
/// gives it; `check(method, name)` may refuse more (it throws), in list order. Empty lists are
/// refused naming `allowed`.
inline std::vector<depass::Method> parse_method_list(const std::string& text, depass::Level level, const std::string& option,
                                                     const std::string& allowed,
                                                     const std::function<void(depass::Method, const std::string&)>& check = {}) {
  std::vector<depass::Method> methods;
  std::stringstream in(text);
  std::string name;
  while (std::getline(in, name, ',')) {
    depass::Method m;
    try {
      m = depass::parse_method(name);
      depass::check_applies(m, level);
    } catch (const std::invalid_argument& e) {
      throw UsageError(option + ": " + std::string(e.what()));
    }
    if (check) check(m, name);
    if (std::find(methods.begin(), methods.end(), m) != methods.end()) throw UsageError(option + " names '" + name + "' twice");
    methods.push_back(m);
  }
  if (methods.empty()) throw UsageError(option + " is empty (allowed: " + allowed + ")");
  return methods;
}

/// --steps and --rule of integrated gradients (defaults 100, riemann).
inline void parse_ig_quadrature(const Args& args, int& steps, depass::Quadrature& rule) {
  const long given = args.integer("--steps", 100);
  if (given < 1 || given > 100000) throw UsageError("--steps must be in [1, 100000], got " + std::to_string(given));
  steps = static_cast<int>(given);
  const std::string name = args.get("--rule", "riemann");
  if (name == "gauss-legendre") rule = depass::Quadrature::GaussLegendre;
  else if (name == "riemann") rule = depass::Quadrature::Midpoint;
  else throw UsageError("--rule '" + name + "' is unknown (allowed: riemann, gauss-legendre)");
}

namespace detail_methods {

inline std::vector<depass::Method> parse_methods(const Args& args, depass::Level level) {
  const std::vector<depass::Method> methods =
      parse_method_list(args.get("--method", "depass"), level, "--method", depass::method_list(level));
  if (methods.size() > 1 && level != depass::Level::Tokens)
    throw UsageError("--method takes one method for " + std::string(depass::to_string(level)) +
                     " (several, comma-separated, only for tokens)");
  return methods;
}

/// Options that only one method reads must not be given without it.
inline void refuse_unused(const Args& args, const MethodChoice& c) {
  for (const char* option : {"--steps", "--rule", "--baseline"})
    if (args.has(option) && !c.has(depass::Method::IntegratedGradients))
      throw UsageError(std::string(option) + " applies to --method ig only");
  if (args.has("--mean-ablation") && !c.has(depass::Method::Atp)) throw UsageError("--mean-ablation applies to --method atp only");
  if (c.has(depass::Method::DePass)) return;
  for (const auto& option : join({kSplitOptions, {"--trace", "--trace-npy", "--components"}}))
    if (args.has(option)) throw UsageError(option + " applies to --method depass only");
}

}  // namespace detail_methods

/// Parses and checks --method, --objective and the options of the baselines for `level`.
inline MethodChoice method_choice(const Args& args, depass::Level level) {
  MethodChoice c;
  c.methods = detail_methods::parse_methods(args, level);
  const std::string objective = args.get("--objective", "logit");
  if (objective == "logprob") c.objective = depass::ObjectiveKind::LogProb;
  else if (objective != "logit") throw UsageError("--objective '" + objective + "' is unknown (allowed: logit, logprob)");
  if (c.objective == depass::ObjectiveKind::LogProb && args.has("--contrast"))
    throw UsageError("--objective logprob and --contrast exclude each other: a contrast explains logit(target) - logit(contrast)");
  if (c.objective == depass::ObjectiveKind::LogProb && c.has(depass::Method::DePass))
    throw UsageError("--objective logprob does not apply to --method depass: DePass splits a logit (or a logit difference) "
                     "into exact shares, and a log-probability is not a sum of shares");
  parse_ig_quadrature(args, c.steps, c.rule);
  c.baseline = args.get("--baseline", "zero");
  c.mean_ablation = args.has("--mean-ablation");
  detail_methods::refuse_unused(args, c);
  if (args.get("--precision", "") == "bf16" && !c.only_depass())
    throw UsageError("--precision bf16 runs DePass's propagation only (--method depass); the other methods run float "
                     "or double");
  return c;
}

/// The scalar a question asks a baseline to explain.
inline depass::Objective objective_of(const Question& q, const MethodChoice& c) {
  if (q.foil >= 0) return depass::Objective::contrast(q.position, q.target, q.foil);
  if (c.objective == depass::ObjectiveKind::LogProb) return depass::Objective::logprob(q.position, q.target);
  return depass::Objective::logit(q.position, q.target);
}

/// The IG options of `c` for the sequence `ids` (a token baseline keeps BOS).
template <typename Scalar>
depass::IgOptions<Scalar> ig_options(const MethodChoice& c, const Loaded<Scalar>& l, const std::vector<int>& ids) {
  depass::IgOptions<Scalar> ig;
  ig.steps = c.steps;
  ig.rule = c.rule;
  if (c.baseline == "zero") return ig;
  const depass::Tokenizer* tok = l.tokenizer ? &*l.tokenizer : nullptr;
  const int token = resolve_token(c.baseline, "--baseline", l.model->config().vocab_size, tok, false);
  std::vector<int> baseline_ids(ids.size(), token);
  baseline_ids.front() = ids.front();
  ig.baseline = l.model->embed(baseline_ids);
  return ig;
}

/// "method", "objective" and what the method measured besides its scores.
template <typename Scalar>
void add_method_fields(json& entry, const depass::Attribution<Scalar>& a, const MethodChoice& c) {
  entry["method"] = depass::to_string(a.method);
  entry["objective"] = depass::to_string(a.objective.kind);
  if (std::isfinite(a.value)) entry["value"] = a.value;
  if (a.method == depass::Method::IntegratedGradients) {
    entry["ig"] = {{"steps", c.steps}, {"rule", depass::to_string(c.rule)}, {"baseline", c.baseline}};
    entry["baseline_value"] = a.baseline_value;
    entry["completeness_gap"] = a.completeness_gap;
  }
  if (a.method == depass::Method::Atp) entry["ablation"] = c.mean_ablation ? "mean" : "zero";
}

/// Fields a baseline's document starts with (no DePass split settings).
template <typename Scalar>
json method_document(const char* schema, const Args& args) {
  json doc;
  doc["schema"] = schema;
  doc["depass_version"] = depass::version_string();
  doc["model"] = args.get("--model");
  doc["precision"] = std::is_same<Scalar, float>::value ? "float" : "double";
  return doc;
}

}  // namespace cli
