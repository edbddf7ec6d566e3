#pragma once
// The MLP block (docs/method.md, "MLP block"): gated SiLU (SwiGLU: a = silu(x W1^T) * x W3^T),
// gated GELU (GeGLU, Gemma: a = gelu_tanh(x W1^T) * x W3^T) or GELU (a = gelu(x W1^T + b1), the
// tanh form for GPT-2, the exact erf form for GPT-NeoX), then a W2^T. The real pass freezes the neuron
// values a; each neuron's output a[i,k] W2[:,k] is shared among the components by how much
// each drives the neuron's gate, g_m = norm(C_m) W1^T, and for the path rule its up input,
// u_m = norm(C_m) W3^T (layers/NeuronSplit.hpp). Biases go to the bias component.

#include <Eigen/Core>
#include <stdexcept>
#include <vector>

#include "../ComponentState.hpp"
#include "../Config.hpp"
#include "../Hook.hpp"
#include "../Weights.hpp"
#include "../detail/Bf16Gemm.hpp"
#include "../detail/SplitProduct.hpp"
#include "NeuronSplit.hpp"
#include "Norm.hpp"

namespace depass {

template <typename Scalar>
class Mlp {
 public:
  using MatrixType = Matrix<Scalar>;
  using VectorType = Vector<Scalar>;

  /// The weights must outlive the Mlp.
  Mlp(const Config& cfg, const LayerWeights<Scalar>& w) : w_(w), kind_(cfg.mlp), gated_(cfg.gated_mlp()) {}

  /// What the real computation gives: the output and the frozen neuron values.
  struct Forward {
    MatrixType out;   // N x D: act W2^T + b2
    MatrixType act;   // N x I: neuron values a
    MatrixType gate;  // N x I: x W1^T + b1 (the backward pass reads it)
    MatrixType up;    // N x I: x W3^T + b3 for gated MLPs, else empty
    VectorType post_scale;  // N: the scale of the model's norm of `out` before the residual add (Gemma 2), else empty
  };

  /// The real MLP of normed rows xn (any number of rows: positions of one or more sequences).
  Forward forward(const MatrixType& xn, const detail::Tap<Scalar>& tap) const {
    Forward f;
    std::vector<detail::ProductJob<Scalar>> projections{{&f.gate, {{xn, w_.w1, true}}}};
    if (gated_) projections.push_back({&f.up, {{xn, w_.w3, true}}});
    detail::run_products(projections);
    route_bias(f.gate, w_.b1, true);
    tap("ffn_gate", f.gate);
    if (gated_) {
      route_bias(f.up, w_.b3, true);
      tap("ffn_up", f.up);
    }
    f.act.resize(f.gate.rows(), f.gate.cols());
    by_neurons(f.gate, [&](Eigen::Index b, Eigen::Index n) {
      if (gated_) f.act.middleCols(b, n) = gate_activation(f.gate.middleCols(b, n)).cwiseProduct(f.up.middleCols(b, n));
      else f.act.middleCols(b, n) = ungated_activation(f.gate.middleCols(b, n));
    });
    tap("ffn_act", f.act);
    f.out = output(f.act);
    tap("ffn_out", f.out);
    return f;
  }

  /// Reverse mode, down projection: the gradient wrt the neuron values, d_act = d_out W2.
  MatrixType backward_output(const Eigen::Ref<const MatrixType>& d_out) const {
    return detail::split_product<Scalar>(d_out, w_.w2, false);
  }

  /// Reverse mode from d_act (the gradient wrt `real.act`) to the normed input.
  ///   gated: a = f(g) u,  dg = d_act u f'(g), du = d_act f(g), dxn = dg W1 + du W3  (f = silu or gelu)
  ///   GELU:  a = gelu(g), dg = d_act gelu'(g),                   dxn = dg W1
  MatrixType backward(const Forward& real, const Eigen::Ref<const MatrixType>& d_act) const {
    MatrixType dg(d_act.rows(), d_act.cols()), du(gated_ ? d_act.rows() : 0, d_act.cols());
    by_neurons(real.gate, [&](Eigen::Index b, Eigen::Index n) {
      const Eigen::Ref<const MatrixType> g = real.gate.middleCols(b, n), d = d_act.middleCols(b, n);
      if (!gated_) {
        dg.middleCols(b, n) = (d.array() * ungated_derivative(g).array()).matrix();
      } else if (kind_ == MlpKind::GatedGeluTanh) {
        dg.middleCols(b, n) = (d.array() * real.up.middleCols(b, n).array() * gelu_tanh_derivative(g).array()).matrix();
        du.middleCols(b, n) = (d.array() * gelu_tanh(g).array()).matrix();
      } else {
        using ArrayType = Eigen::Array<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
        const ArrayType s = (Scalar(1) + (-g.array()).exp()).inverse();  // sigmoid; silu' = s (1 + g (1 - s))
        dg.middleCols(b, n) = (d.array() * real.up.middleCols(b, n).array() * s * (Scalar(1) + g.array() * (Scalar(1) - s))).matrix();
        du.middleCols(b, n) = (d.array() * g.array() * s).matrix();
      }
    });
    if (!gated_) return detail::split_product<Scalar>(dg, w_.w1, false);
    MatrixType dxn;
    detail::run_products<Scalar>({{&dxn, {{dg, w_.w1, false}, {du, w_.w3, false}}}});
    return dxn;
  }

  Eigen::Index neurons() const { return w_.w1.rows(); }

  /// body(begin, count) over runs of neurons (columns of `gate`), shared among threads when
  /// the element-wise pass is long enough to pay for waking them.
  template <typename Body>
  static void by_neurons(const MatrixType& gate, const Body& body) {
    const double work = static_cast<double>(gate.size()) * detail::kElementWork;
    detail::for_column_runs(gate.cols(), work, body);
  }

  /// dst = normed W1^T, each component's contribution to every gate; rows [bias_begin,
  /// + bias_count) belong to the bias component and receive the gate bias.
  template <typename Rows, typename Dst>
  void gate_contributions(const Rows& normed, Dst&& dst, Eigen::Index bias_begin, Eigen::Index bias_count,
                          const detail::Product<Scalar>& product = {}) const {
    product(normed, w_.w1, dst);
    if (bias_count > 0) route_bias(dst.middleRows(bias_begin, bias_count), w_.b1, true);
  }

  /// dst = normed W3^T, each component's contribution to every up input (gated MLPs); rows
  /// [bias_begin, + bias_count) receive the up bias.
  template <typename Rows, typename Dst>
  void up_contributions(const Rows& normed, Dst&& dst, Eigen::Index bias_begin, Eigen::Index bias_count,
                        const detail::Product<Scalar>& product = {}) const {
    product(normed, w_.w3, dst);
    if (bias_count > 0) route_bias(dst.middleRows(bias_begin, bias_count), w_.b3, true);
  }
  bool gated() const { return gated_; }
  /// The neuron's form (what the path rule integrates).
  MlpKind kind() const { return kind_; }

  /// The real output of the neuron values act (rows x I): act W2^T + b2.
  MatrixType output(const MatrixType& act) const {
    MatrixType out = detail::split_product<Scalar>(act, w_.w2, true);
    route_bias(out, w_.b2, true);
    return out;
  }

  /// dst = shares W2^T, the output of each component's share of the neurons (the
  /// propagation's products, bf16 ones too); rows [bias_begin, + bias_count) receive the
  /// down projection's bias.
  template <typename Shares, typename Dst>
  void down(const Shares& shares, Dst&& dst, Eigen::Index bias_begin, Eigen::Index bias_count,
            const detail::Product<Scalar>& product = {}) const {
    product(shares, w_.w2, dst);
    if (bias_count > 0) route_bias(dst.middleRows(bias_begin, bias_count), w_.b2, true);
  }

  /// Neuron k's output at every position, act[:, k] W2[:, k]^T (N x D): neuron-level components.
  MatrixType neuron_output(const MatrixType& act, int k) const { return act.col(k) * w_.w2.col(k).transpose(); }
  /// Several neurons' outputs summed, act[:, ks] W2[:, ks]^T.
  MatrixType neurons_output(const MatrixType& act, const std::vector<int>& ks) const {
    MatrixType a(act.rows(), static_cast<Eigen::Index>(ks.size())), w(w_.w2.rows(), a.cols());
    for (std::size_t j = 0; j < ks.size(); ++j) {
      a.col(static_cast<Eigen::Index>(j)) = act.col(ks[j]);
      w.col(static_cast<Eigen::Index>(j)) = w_.w2.col(ks[j]);
    }
    return a * w.transpose();
  }
  /// The down projection's bias (empty: none); it belongs to the bias component.
  const VectorType& output_bias() const { return w_.b2; }

  /// The reference rule, dense: every row of every component, with the real pass's neuron
  /// values. normed: (M*N) x D, the components after the frozen norm.
  void propagate(const Forward& real, const MatrixType& normed, ComponentState<Scalar>& cs,
                 const FrozenNorm<Scalar>& post = {}) const {
    const MatrixType& act = real.act;
    const Eigen::Index M = cs.tensor.components(), N = cs.tensor.positions(), I = neurons();
    const Eigen::Index bias_rows = cs.bias_component >= 0 ? N : 0, bias_begin = std::max<Eigen::Index>(0, cs.bias_component) * N;
    MatrixType g(M * N, I), u;
    gate_contributions(normed, g, bias_begin, bias_rows);
    const bool path = cs.split.split == MlpSplit::Path, use_up = path && gated_;
    if (use_up) {
      u.resize(M * N, I);
      up_contributions(normed, u, bias_begin, bias_rows);
    }
    for (const Sink& sink : cs.sinks) {
      const Eigen::Index s = sink.component * N, b = cs.bias_component * N;
      if (!path) {
        exclude_sink(g.middleRows(s, N), 0, sink.position);
        continue;
      }
      if (cs.bias_component < 0) throw std::logic_error("the path rule's sink handling needs a bias component");
      merge_sink_into_bias(g.middleRows(s, N), g.middleRows(b, N), 0, sink.position);
      if (use_up) merge_sink_into_bias(u.middleRows(s, N), u.middleRows(b, N), 0, sink.position);
    }
    MatrixType shares(M * N, I);
    std::vector<Scalar> column(static_cast<std::size_t>(M)), up(static_cast<std::size_t>(M)),
        share(static_cast<std::size_t>(M));
    for (Eigen::Index k = 0; k < I; ++k)
      for (Eigen::Index i = 0; i < N; ++i) {
        for (Eigen::Index m = 0; m < M; ++m) column[static_cast<std::size_t>(m)] = g(m * N + i, k);
        if (path) {
          for (Eigen::Index m = 0; use_up && m < M; ++m) up[static_cast<std::size_t>(m)] = u(m * N + i, k);
          split_neuron_path(kind_, column.data(), use_up ? up.data() : nullptr, M, share.data());
        } else if (!split_neuron(cs.split, column.data(), M, act(i, k), share.data())) {
          if (cs.bias_component < 0) throw std::logic_error("a neuron driven by no component needs a bias component");
          share[static_cast<std::size_t>(cs.bias_component)] = act(i, k);
        }
        for (Eigen::Index m = 0; m < M; ++m) shares(m * N + i, k) = share[static_cast<std::size_t>(m)];
      }
    MatrixType update(M * N, w_.w2.rows());
    down(shares, update, bias_begin, bias_rows);
    for (Eigen::Index m = 0; post && m < M; ++m) post.apply(update.middleRows(m * N, N), 0);
    cs.tensor.stacked() += update;
  }

 private:
  static MatrixType silu(const Eigen::Ref<const MatrixType>& g) { return (g.array() / (Scalar(1) + (-g.array()).exp())).matrix(); }
  /// The gated MLP's gate nonlinearity: silu (SwiGLU) or gelu_tanh (GeGLU).
  MatrixType gate_activation(const Eigen::Ref<const MatrixType>& g) const {
    return kind_ == MlpKind::GatedGeluTanh ? gelu_tanh(g) : silu(g);
  }

  /// The GELU MLP's activation: the tanh approximation (GPT-2) or the exact erf form (GPT-NeoX).
  MatrixType ungated_activation(const Eigen::Ref<const MatrixType>& g) const {
    return kind_ == MlpKind::GeluErf ? gelu_erf(g) : gelu_tanh(g);
  }
  MatrixType ungated_derivative(const Eigen::Ref<const MatrixType>& g) const {
    return kind_ == MlpKind::GeluErf ? gelu_erf_derivative(g) : gelu_tanh_derivative(g);
  }

  /// GELU, exact: g Phi(g), Phi(g) = (1 + erf(g / sqrt 2)) / 2.
  static MatrixType gelu_erf(const Eigen::Ref<const MatrixType>& g) {
    return g.unaryExpr([](Scalar x) { return x * detail::normal_cdf(x); });
  }
  /// d gelu / dg = Phi(g) + g phi(g), phi(g) = exp(-g^2 / 2) / sqrt(2 pi).
  static MatrixType gelu_erf_derivative(const Eigen::Ref<const MatrixType>& g) {
    const Scalar inv_sqrt_2pi = static_cast<Scalar>(0.3989422804014327);
    return g.unaryExpr([inv_sqrt_2pi](Scalar x) {
      return detail::normal_cdf(x) + x * inv_sqrt_2pi * std::exp(Scalar(-0.5) * x * x);
    });
  }

  /// GELU, tanh approximation: 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))).
  static MatrixType gelu_tanh(const Eigen::Ref<const MatrixType>& g) {
    const Scalar k = static_cast<Scalar>(0.7978845608028654);  // sqrt(2/pi)
    return (Scalar(0.5) * g.array() * (Scalar(1) + (k * (g.array() + Scalar(0.044715) * g.array().cube())).tanh()))
        .matrix();
  }

  /// d gelu_tanh / dg = 0.5 (1 + t) + 0.5 g (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 g^2),
  /// t = tanh(sqrt(2/pi) (g + 0.044715 g^3)).
  static MatrixType gelu_tanh_derivative(const Eigen::Ref<const MatrixType>& g) {
    const Scalar k = static_cast<Scalar>(0.7978845608028654), c = static_cast<Scalar>(0.044715);
    const Eigen::Array<Scalar, Eigen::Dynamic, Eigen::Dynamic> t = (k * (g.array() + c * g.array().cube())).tanh();
    return (Scalar(0.5) * (Scalar(1) + t) +
            Scalar(0.5) * g.array() * (Scalar(1) - t.square()) * k * (Scalar(1) + Scalar(3) * c * g.array().square()))
        .matrix();
  }

  const LayerWeights<Scalar>& w_;
  MlpKind kind_;
  bool gated_;  // SwiGLU or GeGLU (W1, W3) rather than GELU (W1 only)
};

}  // namespace depass
