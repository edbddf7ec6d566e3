#pragma once
// Causal multi-head self-attention with grouped key/value heads (docs/method.md,
// "Attention block"). The real pass freezes the attention probabilities; a component then
// moves linearly: V_m = norm(C_m) Wv^T, out_m[h] = A_h V_m[kv(h)], C_m += concat_h(out_m) Wo^T.
// Mixing per head before the output projection is H times cheaper than expanding every
// head through Wo first. Biases (bq, bk only enter the real probabilities; bv, bo) go to
// the bias component, and since A is row-stochastic the value bias passes through it.
// Gemma 2 scales the scores by query_pre_attn_scalar^-1/2 and soft-caps them before the
// softmax; both only shape the real probabilities, which the components use frozen.

#include <Eigen/Core>
#include <cmath>
#include <limits>

#include "../ComponentState.hpp"
#include "../Config.hpp"
#include "../Hook.hpp"
#include "../Weights.hpp"
#include "../detail/Bf16Gemm.hpp"
#include "../detail/FloatGemm.hpp"
#include "../detail/SplitProduct.hpp"
#include "Norm.hpp"
#include "Rotary.hpp"

namespace depass {

template <typename Scalar>
class Attention {
 public:
  using MatrixType = Matrix<Scalar>;
  using VectorType = Vector<Scalar>;

  /// The weights (and the model's rotary tables, if given) must outlive the Attention.
  Attention(const Config& cfg, const LayerWeights<Scalar>& w, detail::RotaryTables* rotary_tables = nullptr)
      : w_(w), rotary_(cfg, rotary_tables), heads_(cfg.n_heads), kv_heads_(cfg.n_kv_heads), head_dim_(cfg.head_dim),
        group_(cfg.heads_per_kv()), eps_(static_cast<Scalar>(cfg.norm_eps)),
        score_scale_(cfg.attention_scale > 0 ? static_cast<Scalar>(cfg.attention_scale)
                                            : Scalar(1) / std::sqrt(static_cast<Scalar>(cfg.head_dim))), softcap_(static_cast<Scalar>(cfg.attention_softcap)) {}

  /// What the real computation gives: the output, and the coefficients it froze. For a
  /// batch of S sequences of N positions stacked as S*N rows, sequence s owns rows
  /// [s*N, (s+1)*N) of every matrix and rows [(s*H + h)*N, + N) of probs for head h.
  struct Forward {
    MatrixType out;    // N x D: heads Wo^T + bo
    MatrixType probs;  // (H*N) x N: head h's probabilities in rows [h*N, (h+1)*N)
    MatrixType heads;  // N x (H*d): each head's mixed values, before Wo
    MatrixType q, k, v;  // N x (H*d), N x (G*d), N x (G*d): after biases, head norms and RoPE (the backward pass reads them)
    MatrixType q_raw, k_raw;  // before the per-head norms (Qwen3's q/k norm), else empty
    VectorType post_scale;    // N: the scale of the model's norm of `out` before the residual add (Gemma 2), else empty
  };

  /// The real attention of the normed state xn (N x D), or of S sequences of
  /// `sequence_length` positions stacked (0: one sequence).
  Forward forward(const MatrixType& xn, const detail::Tap<Scalar>& tap, Eigen::Index sequence_length = 0) const {
    const Eigen::Index N = sequence_length > 0 ? sequence_length : xn.rows(), S = xn.rows() / N;
    Forward f;
    detail::run_products<Scalar>({{&f.q, {{xn, w_.wq, true}}}, {&f.k, {{xn, w_.wk, true}}}, {&f.v, {{xn, w_.wv, true}}}});
    route_bias(f.q, w_.bq, true);
    route_bias(f.k, w_.bk, true);
    route_bias(f.v, w_.bv, true);
    if (w_.q_norm.size()) {  // Qwen3: each head's query and key RMS-normed before RoPE
      f.q_raw = f.q;
      f.k_raw = f.k;
      head_norm(f.q, heads_, w_.q_norm);
      head_norm(f.k, kv_heads_, w_.k_norm);
    }
    f.probs.resize(S * heads_ * N, N);
    f.heads.resize(S * N, q_width());
    for (Eigen::Index s = 0; s < S; ++s) attend(f, s, N);
    tap("attn_probs", f.probs);
    tap("attn_heads", f.heads);
    f.out = output(f.heads);
    tap("attn_out", f.out);
    return f;
  }

  /// Reverse mode, output projection: the gradient wrt the heads' mixed values (before Wo),
  /// dz = d_out Wo, from the gradient wrt the block's output (rows x D).
  MatrixType backward_output(const Eigen::Ref<const MatrixType>& d_out) const {
    return detail::split_product<Scalar>(d_out, w_.wo, false);
  }

  /// Reverse mode from dz (the gradient wrt `real.heads`) to the normed input: through the
  /// mixing, the softmax, RoPE and the Q/K/V projections (biases have no input gradient).
  MatrixType backward(const Forward& real, const Eigen::Ref<const MatrixType>& dz, Eigen::Index sequence_length) const {
    const Eigen::Index N = sequence_length, S = dz.rows() / N;
    MatrixType dq(S * N, q_width()), dk = MatrixType::Zero(S * N, kv_width()), dv = MatrixType::Zero(S * N, kv_width());
    const int team = head_team(N);
    for (Eigen::Index s = 0; s < S; ++s) {
      // Heads sharing a kv head add into its dk and dv: one thread per kv head.
      detail::for_each_index(kv_heads_, team, team > 1, [&](Eigen::Index g) {
        for (int h = static_cast<int>(g) * group_; h < (static_cast<int>(g) + 1) * group_; ++h)
          backward_head(real, dz, s, N, h, dq, dk, dv);
      });
      rotary_.rotate<Scalar>(dq.middleRows(s * N, N), heads_, -1);
      rotary_.rotate<Scalar>(dk.middleRows(s * N, N), kv_heads_, -1);
    }
    if (w_.q_norm.size()) {
      head_norm_backward(real.q_raw, dq, heads_, w_.q_norm);
      head_norm_backward(real.k_raw, dk, kv_heads_, w_.k_norm);
    }
    MatrixType dxn;
    detail::run_products<Scalar>({{&dxn, {{dq, w_.wq, false}, {dk, w_.wk, false}, {dv, w_.wv, false}}}});
    return dxn;
  }

  /// GQA: query head h reads key/value head h / (H / G).
  int kv_head(int h) const { return h / group_; }
  int heads() const { return heads_; }
  Eigen::Index head_dim() const { return head_dim_; }
  Eigen::Index q_width() const { return heads_ * head_dim_; }
  Eigen::Index kv_width() const { return kv_heads_ * head_dim_; }

  /// dst = normed Wv^T for stacked rows; rows [bias_begin, + bias_count) belong to the bias
  /// component and receive the value bias.
  template <typename Rows, typename Dst>
  void values(const Rows& normed, Dst&& dst, Eigen::Index bias_begin, Eigen::Index bias_count,
              const detail::Product<Scalar>& product = {}) const {
    product(normed, w_.wv, dst);
    if (bias_count > 0) route_bias(dst.middleRows(bias_begin, bias_count), w_.bv, true);
  }

  /// Mixing with the frozen probabilities, out_m[h] = A_h V_m[kv(h)], for B components over
  /// positions [start, N) (rows before `start` are zero). values and mixed are packed
  /// column-major, (B*n) x (G*d) and (B*n) x (H*d), component b in rows [b*n, (b+1)*n):
  /// then per kv head the values of all B components form one n x (d*B) matrix, and each
  /// head is one triangular product (A is lower triangular: causal). `threads` > 1 shares
  /// the heads among threads.
  void mix(const MatrixType& probs, Eigen::Index start, Eigen::Index B, const Scalar* values, Scalar* mixed,
           int threads) const {
    const Eigen::Index N = probs.cols(), n = N - start, R = B * n, d = head_dim_;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
#endif
    for (int h = 0; h < heads_; ++h) {
      const Eigen::Map<const MatrixType> head_values(values + kv_head(h) * d * R, n, d * B);
      Eigen::Map<MatrixType> head_mixed(mixed + h * d * R, n, d * B);
      head_mixed.noalias() = probs.block(h * N + start, start, n, n).template triangularView<Eigen::Lower>() * head_values;
    }
  }

  /// The real output of the heads' mixed values (rows x H*d): heads Wo^T + bo.
  MatrixType output(const MatrixType& heads) const {
    MatrixType out = detail::split_product<Scalar>(heads, w_.wo, true);
    route_bias(out, w_.bo, true);
    return out;
  }

  /// The components' outputs, dst = mixed Wo^T (all heads at once; the propagation's
  /// products, bf16 ones too); rows [bias_begin, + bias_count) receive bo.
  template <typename Mixed, typename Dst>
  void project(const Mixed& mixed, Dst&& dst, Eigen::Index bias_begin, Eigen::Index bias_count,
               const detail::Product<Scalar>& product = {}) const {
    product(mixed, w_.wo, dst);
    if (bias_count > 0) route_bias(dst.middleRows(bias_begin, bias_count), w_.bo, true);
  }

  /// Head h's share of the output, heads[:, h] Wo[:, h]^T (N x D, no bias): head-level components.
  MatrixType head_output(const MatrixType& heads, int h) const {
    return heads.middleCols(h * head_dim_, head_dim_) * w_.wo.middleCols(h * head_dim_, head_dim_).transpose();
  }
  /// The output bias (empty: none); it belongs to the bias component.
  const VectorType& output_bias() const { return w_.bo; }

  /// The reference rule, dense: every row of every component through the attention with the
  /// real pass's probabilities. normed: (M*N) x D, the components after the frozen norm
  /// (component m in rows [m*N, (m+1)*N)).
  void propagate(const Forward& real, const MatrixType& normed, ComponentState<Scalar>& cs,
                 const FrozenNorm<Scalar>& post = {}) const {
    const MatrixType& probs = real.probs;
    const Eigen::Index M = cs.tensor.components(), N = cs.tensor.positions();
    const Eigen::Index bias_rows = cs.bias_component >= 0 ? N : 0, bias_begin = std::max<Eigen::Index>(0, cs.bias_component) * N;
    MatrixType v(M * N, kv_width()), mixed(M * N, q_width());
    values(normed, v, bias_begin, bias_rows);
    mix(probs, 0, M, v.data(), mixed.data(), 1);
    MatrixType update(M * N, w_.wo.rows());
    project(mixed, update, bias_begin, bias_rows);
    for (Eigen::Index m = 0; post && m < M; ++m) post.apply(update.middleRows(m * N, N), 0);
    cs.tensor.stacked() += update;
  }

 private:
  /// Sequence s of f (rows [s*N, (s+1)*N)): RoPE on its queries and keys, causal softmax
  /// per head, then mixing of its values.
  void attend(Forward& f, Eigen::Index s, Eigen::Index N) const {
    const Eigen::Index d = head_dim_;
    rotary_.rotate<Scalar>(f.q.middleRows(s * N, N), heads_, 1);
    rotary_.rotate<Scalar>(f.k.middleRows(s * N, N), kv_heads_, 1);
    const int team = head_team(N);
    detail::for_each_index(heads_, team, team > 1, [&](Eigen::Index h) {
      Eigen::Block<MatrixType> A = f.probs.middleRows((s * heads_ + h) * N, N);
      detail::product(A, f.q.block(s * N, h * d, N, d), false, f.k.block(s * N, kv_head(static_cast<int>(h)) * d, N, d), true,
                      false);
      A *= score_scale_;
      if (softcap_ > Scalar(0)) A = (A.array() / softcap_).tanh().matrix() * softcap_;  // Gemma 2
      causal_softmax_rows(A);
    });
    if (f.v.rows() == N) return mix(f.probs, 0, 1, f.v.data(), f.heads.data(), team);  // one sequence: no copies
    const MatrixType probs = f.probs.middleRows(s * heads_ * N, heads_ * N);
    const MatrixType values = f.v.middleRows(s * N, N);
    MatrixType mixed(N, q_width());
    mix(probs, 0, 1, values.data(), mixed.data(), team);
    f.heads.middleRows(s * N, N) = mixed;
  }

  /// Threads for the per-head work of one sequence of N positions (scores, softmax, mixing
  /// and their reverse, about 4 N^2 d flops per head): heads run whole on one thread each,
  /// single-threaded products inside.
  int head_team(Eigen::Index N) const {
    return detail::threads_for(4.0 * static_cast<double>(N) * static_cast<double>(N) * static_cast<double>(head_dim_) * heads_);
  }

  /// Head h of sequence s, reverse mode: z = A V, A = softmax(S), S = Q K^T c (c the score
  /// scale, 1/sqrt(d) unless the model says otherwise) gives dA = dz V^T, dV += A^T dz,
  /// dS = A o (dA - rowsum(A o dA)) (zero where masked), dQ = dS K c, dK += dS^T Q c. A soft
  /// cap, S = cap tanh(Q K^T c / cap), multiplies dS by 1 - tanh^2 first.
  void backward_head(const Forward& real, const Eigen::Ref<const MatrixType>& dz, Eigen::Index s, Eigen::Index N, int h,
                     MatrixType& dq, MatrixType& dk, MatrixType& dv) const {
    const Eigen::Index d = head_dim_, r = s * N, g = kv_head(h) * d;
    const MatrixType A = real.probs.middleRows((s * heads_ + h) * N, N);
    const MatrixType dz_h = dz.block(r, h * d, N, d);
    MatrixType dS(N, N);
    detail::product(dS, dz_h, false, real.v.block(r, g, N, d), true, false);
    detail::product(dv.block(r, g, N, d), A, true, dz_h, false, true);
    const VectorType weighted = A.cwiseProduct(dS).rowwise().sum();
    dS = (A.array() * (dS.colwise() - weighted).array()).matrix();
    if (softcap_ > Scalar(0)) {
      const MatrixType t = ((real.q.block(r, h * d, N, d) * real.k.block(r, g, N, d).transpose()) * (score_scale_ / softcap_))
                               .array().tanh().matrix();
      dS.array() *= Scalar(1) - t.array().square();
    }
    dS *= score_scale_;
    detail::product(dq.block(r, h * d, N, d), dS, false, real.k.block(r, g, N, d), false, false);
    detail::product(dk.block(r, g, N, d), dS, true, real.q.block(r, h * d, N, d), false, true);
  }

  /// RMSNorm over each of `count` heads of every row: x_h <- x_h r w, r = 1/sqrt(mean(x_h^2) + eps).
  void head_norm(MatrixType& x, int count, const VectorType& gain) const {
    const Eigen::Index d = head_dim_;
    for (Eigen::Index i = 0; i < x.rows(); ++i)
      for (int h = 0; h < count; ++h) {
        const Scalar r = Scalar(1) / std::sqrt(x.row(i).segment(h * d, d).squaredNorm() / static_cast<Scalar>(d) + eps_);
        x.row(i).segment(h * d, d) = (x.row(i).segment(h * d, d).cwiseProduct(gain.transpose()) * r).eval();
      }
  }

  /// Reverse mode of head_norm at the inputs `raw`: grad (wrt the normed heads) becomes the
  /// gradient wrt raw, dx = r g - r^3 x (x . g) / d with g = dy o w.
  void head_norm_backward(const MatrixType& raw, MatrixType& grad, int count, const VectorType& gain) const {
    const Eigen::Index d = head_dim_;
    for (Eigen::Index i = 0; i < raw.rows(); ++i)
      for (int h = 0; h < count; ++h) {
        const Eigen::Matrix<Scalar, 1, Eigen::Dynamic> x = raw.row(i).segment(h * d, d);
        const Eigen::Matrix<Scalar, 1, Eigen::Dynamic> g = grad.row(i).segment(h * d, d).cwiseProduct(gain.transpose());
        const Scalar r = Scalar(1) / std::sqrt(x.squaredNorm() / static_cast<Scalar>(d) + eps_);
        grad.row(i).segment(h * d, d) = r * g - (r * r * r * x.dot(g) / static_cast<Scalar>(d)) * x;
      }
  }

  /// Row-wise softmax over columns j <= i (causal mask); masked entries become exactly 0.
  /// Works column by column (contiguous in memory): the running row maxima and sums are
  /// vectors over the query rows, so every step is a vectorised array operation.
  static void causal_softmax_rows(Eigen::Block<MatrixType>& A) {
    using Column = Eigen::Array<Scalar, Eigen::Dynamic, 1>;
    const Eigen::Index n = A.rows();
    Column peak = Column::Constant(n, -std::numeric_limits<Scalar>::infinity());
    for (Eigen::Index j = 0; j < n; ++j) peak.tail(n - j) = peak.tail(n - j).max(A.col(j).tail(n - j).array());
    Column total = Column::Zero(n);
    for (Eigen::Index j = 0; j < n; ++j) {
      A.col(j).head(j).setZero();
      A.col(j).tail(n - j).array() = (A.col(j).tail(n - j).array() - peak.tail(n - j)).exp();
      total.tail(n - j) += A.col(j).tail(n - j).array();
    }
    for (Eigen::Index j = 0; j < n; ++j) A.col(j).tail(n - j).array() /= total.tail(n - j);
  }

  const LayerWeights<Scalar>& w_;
  Rotary rotary_;
  int heads_, kv_heads_;
  Eigen::Index head_dim_;
  int group_;  // query heads per kv head
  Scalar eps_;  // the per-head norms' epsilon (Qwen3's q/k norm)
  Scalar score_scale_;  // scores = q.k * this (1/sqrt(d); Gemma 2: query_pre_attn_scalar^-1/2)
  Scalar softcap_;      // > 0: scores -> softcap tanh(scores / softcap) (Gemma 2)
};

}  // namespace depass
