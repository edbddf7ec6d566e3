#pragma once
// The Python module's attribution methods and faithfulness protocol (methods/): the
// baselines and DePass as one score per token, head or neuron (TokenAttributor,
// ComponentAttributor), and the token-level disrupt / recover curves of one sample
// (TokenFaithfulness). Included by depass_python.cpp after PyModel and make_options.

#include <cmath>
#include <optional>
#include <string>
#include <vector>

namespace depass {
namespace python {

/// "logit", "logprob" or "contrast" (which needs foil) at position (negative: from the end).
inline Objective make_objective(const std::string& kind, long position, Eigen::Index N, int target,
                                std::optional<int> foil) {
  const Eigen::Index p = position < 0 ? position + N : position;
  if (foil && kind != "contrast")
    throw std::invalid_argument("foil is given, so objective must be 'contrast', got '" + kind + "'");
  if (kind == "logit") return Objective::logit(p, target);
  if (kind == "logprob") return Objective::logprob(p, target);
  if (kind == "contrast") {
    if (!foil) throw std::invalid_argument("objective 'contrast' needs foil (the token the target is compared with)");
    return Objective::contrast(p, target, *foil);
  }
  throw std::invalid_argument("objective '" + kind + "' is unknown (allowed: logit, logprob, contrast)");
}

inline Quadrature parse_quadrature(const std::string& name) {
  if (name == "riemann" || name == "midpoint") return Quadrature::Midpoint;
  if (name == "gauss-legendre") return Quadrature::GaussLegendre;
  throw std::invalid_argument("quadrature '" + name + "' is unknown (allowed: riemann, gauss-legendre)");
}

/// The token the model predicts at `position` (the default target).
template <typename Scalar>
int predicted_token(const Model<Scalar>& model, const std::vector<int>& ids, long position) {
  const Eigen::Index N = static_cast<Eigen::Index>(ids.size());
  const Eigen::Index p = position < 0 ? position + N : position;
  if (p < 0 || p >= N)
    throw std::invalid_argument("position " + std::to_string(position) + " is out of range [" + std::to_string(-N) + ", " +
                                std::to_string(N) + ")");
  Eigen::Index best = 0;
  model.forward(ids).row(p).maxCoeff(&best);
  return static_cast<int>(best);
}

/// What Model.attribute and Model.faithfulness share: the method settings.
struct MethodSettings {
  int steps = 100;                   // integrated gradients
  std::string quadrature = "riemann";
  DecomposeOptions depass;           // DePass: split, temperature, sink
  bool mean_ablation = false;        // heads / neurons: atp's mean-ablation estimate
};

/// One method at one level (TokenAttributor / ComponentAttributor); GIL released by the caller.
template <typename Scalar>
Attribution<Scalar> run_method(const Model<Scalar>& model, Method method, const std::string& level, std::optional<int> layer,
                               const std::vector<int>& ids, const Objective& objective, const MethodSettings& s) {
  if (level == "tokens" || level == "heads") {
    if (layer) throw std::invalid_argument("layer applies to level 'neurons', not '" + level + "'");
  }
  if (level == "tokens") {
    const TokenAttributor<Scalar> attributor(model);
    if (method == Method::DePass) return attributor.depass(ids, objective, s.depass);
    IgOptions<Scalar> ig;
    ig.steps = s.steps;
    ig.rule = parse_quadrature(s.quadrature);
    return attributor.run(method, ids, objective, ig);
  }
  ComponentOptions options;
  options.mean_ablation = s.mean_ablation;
  options.depass = s.depass;
  const ComponentAttributor<Scalar> attributor(model);
  if (level == "heads") return attributor.heads(method, ids, objective, options);
  if (level != "neurons") throw std::invalid_argument("level '" + level + "' is unknown (allowed: tokens, heads, neurons)");
  if (!layer) throw std::invalid_argument("level 'neurons' needs layer (the MLP whose neurons are scored)");
  return attributor.neurons(method, *layer, ids, objective, options);
}

/// The settings' Python keywords, shared by attribute and faithfulness.
inline MethodSettings method_settings(int steps, const std::string& quadrature, const std::string& split,
                                      double temperature, bool bos_sink, bool mean_ablation) {
  MethodSettings s;
  s.steps = steps;
  s.quadrature = quadrature;
  s.depass = make_options(split, temperature, bos_sink, Boundary::output(), 0, 0, {}, false, DecomposeOptions{}.work_rows);
  s.mean_ablation = mean_ablation;
  return s;
}

template <typename Scalar>
void bind_attribution(py::module_& m, const char* name) {
  using A = Attribution<Scalar>;
  const auto nan_none = [](double v) { return std::isnan(v) ? py::object(py::none()) : py::object(py::float_(v)); };
  py::class_<A>(m, name, "One method's scores (methods/Attribution.hpp): per token, per head (layer-major) or per neuron.")
      .def_property_readonly("method", [](const A& a) { return std::string(to_string(a.method)); })
      .def_property_readonly("level", [](const A& a) { return std::string(to_string(a.level)); })
      .def_property_readonly("scores", [](const A& a) { return Vector<Scalar>(a.scores); })
      .def_property_readonly("labels", [](const A& a) { return a.labels; })
      .def_property_readonly("layer", [](const A& a) { return a.layer < 0 ? py::object(py::none()) : py::object(py::int_(a.layer)); })
      .def_property_readonly("value", [nan_none](const A& a) { return nan_none(a.value); },
                             "The objective f(x) where the method computed it, else None.")
      .def_property_readonly("baseline_value", [nan_none](const A& a) { return nan_none(a.baseline_value); })
      .def_property_readonly("completeness_gap", [nan_none](const A& a) { return nan_none(a.completeness_gap); },
                             "Integrated gradients: sum(scores) - (f(x) - f(baseline)).")
      .def_property_readonly("extra_labels", [](const A& a) { return a.extra_labels; })
      .def_property_readonly("extra_scores", [](const A& a) { return a.extra_scores; },
                             "DePass: the shares of components that are no input (bias, positions).")
      .def("__repr__", [name](const A& a) {
        return std::string("<depass.") + name + ": " + to_string(a.method) + ", " + to_string(a.level) + ", " +
               std::to_string(a.scores.size()) + " scores>";
      });
}

/// A TokenCurveSample as a dict (its fields, method by name).
inline py::dict curve_dict(const TokenCurveSample& s) {
  py::dict d;
  d["method"] = std::string(to_string(s.method));
  d["scores"] = s.scores;
  d["ranking"] = s.ranking;
  d["p_clean"] = s.p_clean;
  d["disrupt_probability"] = s.disrupt_probability;
  d["recover_probability"] = s.recover_probability;
  d["disrupt"] = s.disrupt;
  d["recover"] = s.recover;
  d["error"] = s.error.empty() ? py::object(py::none()) : py::object(py::str(s.error));
  return d;
}

/// Model.faithfulness: the token-level disrupt / recover curves of one sample.
template <typename Scalar>
py::list faithfulness(const Model<Scalar>& model, const std::vector<int>& ids, int target, const std::vector<std::string>& methods,
                      const py::object& scores, const std::vector<int>& percents, int replacement, bool keep_last,
                      const MethodSettings& s) {
  TokenFaithfulnessOptions<Scalar> options;
  if (!percents.empty()) options.percents = percents;
  options.replacement = replacement;
  options.keep_last = keep_last;
  options.ig.steps = s.steps;
  options.ig.rule = parse_quadrature(s.quadrature);
  options.depass = s.depass;
  std::vector<Method> parsed;
  for (const std::string& name : methods) parsed.push_back(parse_method(name));
  std::optional<Vector<Scalar>> given;
  if (!scores.is_none()) given = scores.cast<Vector<Scalar>>();
  std::vector<TokenCurveSample> samples;
  {
    py::gil_scoped_release release;
    const TokenFaithfulness<Scalar> protocol(model, options);
    samples = protocol.evaluate(ids, target, parsed);
    if (given) samples.push_back(protocol.curves(ids, target, *given));
  }
  py::list out;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    py::dict d = curve_dict(samples[i]);
    if (given && i + 1 == samples.size()) d["method"] = "scores";
    out.append(d);
  }
  return out;
}

constexpr const char* kAttributeDoc =
    "One attribution method (docs/methods.md) on a text prompt or token ids: method 'depass', 'attention-last', "
    "'attention-mean', 'rollout', 'grad-norm', 'input-x-grad', 'ig', 'occlusion' (level 'tokens'), 'atp', 'norm', "
    "'ablation', 'depass' (levels 'heads' and 'neurons', which needs layer). The objective ('logit', 'logprob', "
    "'contrast' with foil) is read at position (default the last) for target (default the predicted token). "
    "steps/quadrature: integrated gradients; split/temperature/bos_sink: DePass; mean_ablation: atp.";

constexpr const char* kFaithfulnessDoc =
    "The token-level faithfulness protocols of one sample (TokenFaithfulness): each method's scores rank the "
    "input tokens, then disrupt-top p% deletes (or replaces, replacement=id) the top p% and recover-top p% keeps "
    "only BOS and them; the target's probability after each edit gives the curves. ids start with BOS; target "
    "defaults to the predicted next token. scores: also evaluate these (one per id; reported as method 'scores'). "
    "Returns one dict per method.";

template <typename Scalar, typename PyClass>
void bind_methods(PyClass& model_class) {
  using PM = typename PyClass::type;
  model_class
      .def(
          "attribute",
          [](const PM& p, const py::object& prompt, const std::string& method, const std::string& level,
             std::optional<int> layer, std::optional<int> target, long position, const std::string& objective,
             std::optional<int> foil, int steps, const std::string& quadrature, const std::string& split,
             double temperature, bool bos_sink, bool mean_ablation) {
            const std::vector<int> ids = p.ids(prompt);
            const Method parsed = parse_method(method);
            const MethodSettings s = method_settings(steps, quadrature, split, temperature, bos_sink, mean_ablation);
            py::gil_scoped_release release;
            p.model().check_tokens(ids);
            const int t = target ? *target : predicted_token(p.model(), ids, position);
            const Objective o = make_objective(objective, position, static_cast<Eigen::Index>(ids.size()), t, foil);
            return run_method(p.model(), parsed, level, layer, ids, o, s);
          },
          py::arg("prompt"), py::arg("method") = "depass", py::arg("level") = "tokens", py::arg("layer") = py::none(),
          py::arg("target") = py::none(), py::arg("position") = -1, py::arg("objective") = "logit",
          py::arg("foil") = py::none(), py::arg("steps") = 100, py::arg("quadrature") = "riemann",
          py::arg("split") = "softmax", py::arg("temperature") = 0.1, py::arg("bos_sink") = true,
          py::arg("mean_ablation") = false, kAttributeDoc)
      .def(
          "faithfulness",
          [](const PM& p, const py::object& prompt, std::optional<int> target, const std::vector<std::string>& methods,
             const py::object& scores, const std::vector<int>& percents, int replacement, bool keep_last, int steps,
             const std::string& quadrature, const std::string& split, double temperature, bool bos_sink) {
            const std::vector<int> ids = p.ids(prompt);
            const MethodSettings s = method_settings(steps, quadrature, split, temperature, bos_sink, false);
            p.model().check_tokens(ids);
            const int t = target ? *target : predicted_token(p.model(), ids, -1);
            return faithfulness(p.model(), ids, t, methods, scores, percents, replacement, keep_last, s);
          },
          py::arg("prompt"), py::arg("target") = py::none(), py::arg("methods") = std::vector<std::string>{"depass"},
          py::arg("scores") = py::none(), py::arg("percents") = std::vector<int>{}, py::arg("replacement") = -1,
          py::arg("keep_last") = false, py::arg("steps") = 100, py::arg("quadrature") = "riemann",
          py::arg("split") = "softmax", py::arg("temperature") = 0.1, py::arg("bos_sink") = true, kFaithfulnessDoc);
}

}  // namespace python
}  // namespace depass
