#pragma once
// The MLP split: how a neuron's output a[i,k] is shared among the components that drive
// it at position i (docs/method.md, "MLP block"). This file states each rule once, in
// plain scalar code; it is the specification. The engine's vectorised kernel
// (engine/SplitKernel.hpp) computes the same shares and is tested against split_neuron
// and split_neuron_path.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "../Config.hpp"

namespace depass {

/// How an MLP neuron's output is shared among the components that drive its gate.
enum class MlpSplit {
  Softmax,      ///< softmax over components of gate contribution / temperature (default)
  Argmax,       ///< whole neuron to the component with the largest gate contribution
  Proportional, ///< signed share g_m / g; softmax where the g_m nearly cancel (see below)
  Path          ///< path integral of the neuron over its gate and up inputs (split_neuron_path)
};

/// Every rule, in the order the CLI and the docs list them.
constexpr MlpSplit kMlpSplits[] = {MlpSplit::Softmax, MlpSplit::Argmax, MlpSplit::Proportional, MlpSplit::Path};

/// Proportional split: where |sum g_m| <= this * sum |g_m| the signed shares would exceed
/// 1/this in magnitude and rounding would break losslessness, so softmax is used there.
constexpr double kProportionalCancelRatio = 1e-3;

inline const char* to_string(MlpSplit split) {
  switch (split) {
    case MlpSplit::Softmax: return "softmax";
    case MlpSplit::Argmax: return "argmax";
    case MlpSplit::Proportional: return "proportional";
    case MlpSplit::Path: return "path";
  }
  return "?";
}

/// "softmax, argmax, proportional, path": every rule's name, in kMlpSplits' order.
inline std::string mlp_split_names() {
  std::string names;
  for (const MlpSplit split : kMlpSplits) names += (names.empty() ? "" : ", ") + std::string(to_string(split));
  return names;
}

inline MlpSplit parse_mlp_split(const std::string& name) {
  for (const MlpSplit split : kMlpSplits)
    if (name == to_string(split)) return split;
  throw std::invalid_argument("mlp split '" + name + "' is unknown (allowed: " + mlp_split_names() + ")");
}

/// A split rule and its parameter.
struct SplitRule {
  MlpSplit split = MlpSplit::Softmax;
  double temperature = 0.1;  // softmax (and the proportional rule's fallback), > 0
  /// The path rule reads each component's up contributions too (gated MLPs).
  bool needs_up() const { return split == MlpSplit::Path; }
};

/// Shares neuron output `a` among `count` members with gate contributions g[0..count),
/// writing member i's share to share[i] (the shares sum to a). A member is eligible where
/// its contribution is not exactly zero: zero means the component is absent there (a later
/// token under the causal mask) or was excluded (the attention sink past position 0).
/// Returns false, with every share zero, when no member is eligible: the caller gives such
/// a neuron to the bias component.
template <typename Scalar>
bool split_neuron(const SplitRule& rule, const Scalar* g, Eigen::Index count, Scalar a, Scalar* share) {
  if (rule.split == MlpSplit::Path)
    throw std::invalid_argument("split_neuron: the path rule reads up contributions too; call split_neuron_path");
  Scalar peak = -std::numeric_limits<Scalar>::infinity(), total = 0, magnitude = 0;
  Eigen::Index best = -1;
  for (Eigen::Index i = 0; i < count; ++i) {
    share[i] = 0;
    if (g[i] == Scalar(0)) continue;
    total += g[i];
    magnitude += std::abs(g[i]);
    if (g[i] > peak) {  // strictly: on ties the lowest member wins
      peak = g[i];
      best = i;
    }
  }
  if (best < 0) return false;
  if (rule.split == MlpSplit::Argmax) {
    share[best] = a;
    return true;
  }
  if (rule.split == MlpSplit::Proportional &&
      std::abs(total) > static_cast<Scalar>(kProportionalCancelRatio) * magnitude) {
    for (Eigen::Index i = 0; i < count; ++i)
      if (g[i] != Scalar(0)) share[i] = g[i] / total * a;
    return true;
  }
  const Scalar inv_t = Scalar(1) / static_cast<Scalar>(rule.temperature);
  Scalar norm = 0;
  for (Eigen::Index i = 0; i < count; ++i)
    if (g[i] != Scalar(0)) norm += share[i] = std::exp((g[i] - peak) * inv_t);
  for (Eigen::Index i = 0; i < count; ++i) share[i] = share[i] / norm * a;
  return true;
}

namespace detail {

/// integral of f over [lo, hi] by 16-point Gauss-Legendre (nodes tabulated, symmetric pairs):
/// the path weights below run once per (position, neuron), so no nodes are computed here.
template <typename F>
double gauss_legendre_16(const F& f, double lo, double hi) {
  static const double node[8] = {0.0950125098376374, 0.2816035507792589, 0.4580167776572274, 0.6178762444026438,
                                 0.7554044083550030, 0.8656312023878318, 0.9445750230732326, 0.9894009349916499};
  static const double weight[8] = {0.1894506104550685, 0.1826034150449236, 0.1691565193950025, 0.1495959888165767,
                                   0.1246289712555339, 0.0951585116824928, 0.0622535239386479, 0.0271524594117541};
  const double half = 0.5 * (hi - lo);
  double sum = 0;
  for (int j = 0; j < 8; ++j)
    for (const double at : {0.5 * (1 - node[j]), 0.5 * (1 + node[j])}) sum += half * weight[j] * f(lo + (hi - lo) * at);
  return sum;
}

/// Phi(x) = (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2, so that gelu_tanh(x) = x Phi(x).
template <typename Scalar>
Scalar gelu_tanh_gate(Scalar x) {
  const Scalar k = static_cast<Scalar>(0.7978845608028654);  // sqrt(2/pi)
  return Scalar(0.5) * (Scalar(1) + std::tanh(k * (x + Scalar(0.044715) * x * x * x)));
}

/// Phi(x) = (1 + erf(x / sqrt 2)) / 2 = erfc(-x / sqrt 2) / 2, the normal CDF, so that the
/// exact gelu(x) = x Phi(x); erfc keeps the digits of Phi's far left tail.
template <typename Scalar>
Scalar normal_cdf(Scalar x) {
  return Scalar(0.5) * std::erfc(-x * static_cast<Scalar>(0.7071067811865476));
}

/// q(G) = integral_0^1 t sigmoid(t G) dt, the path rule's weight (split_neuron_path).
/// |G| <= 2: 16-point Gauss-Legendre on [0, 1] (the integrand's nearest poles, t = i pi / G,
/// leave Bernstein-ellipse room for full double precision). |G| > 2: q = F(G) / G^2 with
/// F(G) = integral_0^G silu = G^2/2 - H(G) (G > 0) or H(-G) (G < 0), and
/// H(x) = integral_0^x s / (1 + e^s) ds = pi^2/12 - sum_k (-1)^(k+1) e^(-kx) (x/k + 1/k^2).
inline double silu_path_weight(double G) {
  const double x = std::abs(G);
  if (x <= 2.0) return gauss_legendre_16([G](double t) { return t / (1 + std::exp(-t * G)); }, 0.0, 1.0);
  double tail = 0;  // sum_k (-1)^(k+1) e^(-kx) (x/k + 1/k^2): alternating, decreasing terms
  for (int k = 1; k <= 64; ++k) {
    const double term = std::exp(-k * x) * (x / k + 1.0 / (double(k) * k));
    tail += (k % 2 ? term : -term);
    if (term < 1e-18 * x) break;
  }
  const double H = 0.8224670334241132 - tail;  // pi^2 / 12
  const double over = H / (G * G);  // G * G may overflow to inf: over -> 0, still right
  return G > 0 ? 0.5 - over : over;
}

/// p(G) = integral_0^1 t Phi(t G) dt, the path rule's weight for GeGLU (as silu_path_weight
/// for SwiGLU). |G| <= 8: 16-point Gauss-Legendre on ceil(|G|/3) panels (the integrand's
/// nearest singularities, Im x = +-2.75, leave full double precision). |G| > 8: p = F(G) / G^2
/// with F(G) = integral_0^G s Phi(s) ds = G^2/2 - K (G > 0) or K (G < 0), K = integral_0^inf
/// s (1 - Phi(s)) ds (mpmath, 40 digits); the tail past 8 is below 1e-20.
inline double gelu_path_weight(double G) {
  const double x = std::abs(G);
  if (x > 8.0) {
    const double over = 0.24958576776842670050 / (G * G);  // G * G may overflow to inf: over -> 0, still right
    return G > 0 ? 0.5 - over : over;
  }
  const int panels = std::max(1, static_cast<int>(std::ceil(x / 3.0)));
  double p = 0;
  for (int j = 0; j < panels; ++j)
    p += gauss_legendre_16([G](double t) { return t * gelu_tanh_gate(t * G); }, double(j) / panels, double(j + 1) / panels);
  return p;
}

}  // namespace detail

/// The path rule's per-neuron coefficients: component m's share of the neuron is
/// cg g_m + cu u_m, with G = sum g_m and U = sum u_m. It is integrated gradients of the
/// neuron a(g, u) along the straight path from zero to (G, U), the components' parts of
/// (g, u) as the inputs (docs/method.md, "MLP block"):
///   SwiGLU a = silu(g) u:  cg = U (sigmoid(G) - q(G)), cu = G q(G), q = silu_path_weight;
///   GeGLU  a = gelu(g) u:  cg = U (Phi(G) - p(G)),     cu = G p(G), p = gelu_path_weight;
///   GELU   a = gelu(g):    cg = gelu(G) / G = Phi(G) = (1 + tanh(k (G + 0.044715 G^3))) / 2, cu = 0
///                          (the exact GELU: Phi(G) = (1 + erf(G / sqrt 2)) / 2).
/// cg G + cu U = silu(G) U (gelu(G) U, gelu(G)) for every q (p), so the shares sum to the
/// neuron exactly, whatever the rounding of q; no ratio is ever divided by G.
template <typename Scalar>
void path_coefficients(MlpKind kind, Scalar G, Scalar U, Scalar& cg, Scalar& cu) {
  if (!gated(kind)) {
    cg = kind == MlpKind::GeluErf ? detail::normal_cdf(G) : detail::gelu_tanh_gate(G);
    cu = 0;
    return;
  }
  if (kind == MlpKind::GatedGeluTanh) {
    const Scalar p = static_cast<Scalar>(detail::gelu_path_weight(static_cast<double>(G)));
    cg = U * (detail::gelu_tanh_gate(G) - p);
    cu = G * p;
    return;
  }
  const Scalar q = static_cast<Scalar>(detail::silu_path_weight(static_cast<double>(G)));
  cg = U * (Scalar(1) / (Scalar(1) + std::exp(-G)) - q);
  cu = G * q;
}

/// The path rule for one neuron of an MLP of the given kind: g[m], u[m] are member m's
/// contributions to its gate and up inputs (u null for a GELU MLP, else required),
/// share[m] = cg g[m] + cu u[m]. Linear in the contributions, so no member needs
/// excluding: an absent one (zeros) gets nothing.
template <typename Scalar>
void split_neuron_path(MlpKind kind, const Scalar* g, const Scalar* u, Eigen::Index count, Scalar* share) {
  if (gated(kind) == (u == nullptr))
    throw std::invalid_argument(std::string("split_neuron_path: a ") + to_string(kind) + " MLP " +
                                (u ? "has no up inputs" : "needs the up contributions"));
  Scalar G = 0, U = 0, cg, cu;
  for (Eigen::Index i = 0; i < count; ++i) {
    G += g[i];
    if (u) U += u[i];
  }
  path_coefficients(kind, G, U, cg, cu);
  for (Eigen::Index i = 0; i < count; ++i) share[i] = cg * g[i] + (u ? cu * u[i] : Scalar(0));
}

/// SwiGLU (u given) or GELU (u null).
template <typename Scalar>
void split_neuron_path(const Scalar* g, const Scalar* u, Eigen::Index count, Scalar* share) {
  split_neuron_path(u ? MlpKind::GatedSiLU : MlpKind::GeluTanh, g, u, count, share);
}

}  // namespace depass
