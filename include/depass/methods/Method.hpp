#pragma once
// The attribution methods by name, and at which level each applies (docs/methods.md):
// tokens (one score per input position), heads (one per attention head of every layer),
// neurons (one per MLP neuron of a layer). Names as the CLI spells them.

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace depass {

enum class Method {
  DePass,               ///< "depass": the decomposed forward pass (Decomposer)
  AttentionLast,        ///< "attention-last": last layer's probabilities, heads averaged, query row p
  AttentionMean,        ///< "attention-mean": the same averaged over layers
  Rollout,              ///< "rollout": product over layers of 0.5 A + 0.5 I, heads averaged, row p
  GradNorm,             ///< "grad-norm": || df/dx0[i] ||
  InputXGrad,           ///< "input-x-grad": x0[i] . df/dx0[i]
  IntegratedGradients,  ///< "ig": path integral of the gradient from a baseline
  Occlusion,            ///< "occlusion": f(x) - f(x with token i's embedding zeroed)
  Atp,                  ///< "atp": attribution patching, grad x activation
  OutputNorm,           ///< "norm": norm of the unit's output at p
  Ablation              ///< "ablation": f(x) - f(x with the unit zeroed), exact
};

enum class Level { Tokens, Heads, Neurons };

inline const char* to_string(Level level) {
  switch (level) {
    case Level::Tokens: return "tokens";
    case Level::Heads: return "heads";
    case Level::Neurons: return "neurons";
  }
  return "?";
}

inline const std::vector<std::pair<Method, const char*>>& method_names() {
  static const std::vector<std::pair<Method, const char*>> names = {
      {Method::DePass, "depass"},        {Method::AttentionLast, "attention-last"},
      {Method::AttentionMean, "attention-mean"}, {Method::Rollout, "rollout"},
      {Method::GradNorm, "grad-norm"},   {Method::InputXGrad, "input-x-grad"},
      {Method::IntegratedGradients, "ig"}, {Method::Occlusion, "occlusion"},
      {Method::Atp, "atp"},              {Method::OutputNorm, "norm"},
      {Method::Ablation, "ablation"}};
  return names;
}

inline const char* to_string(Method method) {
  for (const auto& entry : method_names())
    if (entry.first == method) return entry.second;
  return "?";
}

/// Whether `method` gives scores at `level`.
inline bool applies(Method method, Level level) {
  const bool component = method == Method::Atp || method == Method::OutputNorm || method == Method::Ablation;
  if (method == Method::DePass) return true;
  return level == Level::Tokens ? !component : component;
}

/// The methods that apply at `level`, comma-separated (for error messages).
inline std::string method_list(Level level) {
  std::string out;
  for (const auto& entry : method_names())
    if (applies(entry.first, level)) out += (out.empty() ? "" : ", ") + std::string(entry.second);
  return out;
}

/// The method called `name`; throws std::invalid_argument listing the known names.
inline Method parse_method(const std::string& name) {
  std::string all;
  for (const auto& entry : method_names()) {
    if (name == entry.second) return entry.first;
    all += (all.empty() ? "" : ", ") + std::string(entry.second);
  }
  throw std::invalid_argument("method '" + name + "' is unknown (allowed: " + all + ")");
}

/// Throws std::invalid_argument unless `method` applies at `level`, naming those that do.
inline void check_applies(Method method, Level level) {
  if (!applies(method, level))
    throw std::invalid_argument("method '" + std::string(to_string(method)) + "' does not apply to " +
                                to_string(level) + " (allowed there: " + method_list(level) + ")");
}

}  // namespace depass
