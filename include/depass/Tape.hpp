#pragma once
// What a recorded forward pass keeps for the backward pass (Model::record, Model::backward):
// every block's input, the norms' scales and normed rows, and what the layers' real
// forward returned (probabilities, mixed values, Q/K/V, gate and up values, neuron values).
// Several sequences of the same length can be recorded at once, stacked as S*N rows
// (sequence s owns rows [s*N, (s+1)*N)): the products run once for all of them.
// A record for one position p (RecordScope::at) runs the last layer's MLP only at row p of
// each sequence and keeps only what the backward pass reads: an objective read at p and its
// gradients are the same, at a fraction of the cost and memory.

#include <Eigen/Core>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "Boundary.hpp"
#include "Weights.hpp"
#include "layers/Attention.hpp"
#include "layers/Mlp.hpp"

namespace depass {

/// One more zeroed column range of an Ablation, in any layer and sequence: columns
/// [begin, begin + count) of z (Site::Attention) or a (Site::Mlp) of layer `layer`, sequence
/// `sequence`. Masking many heads or neurons of several layers at once is a list of these.
struct AblationCut {
  Eigen::Index sequence = 0;
  int layer = 0;
  Site site = Site::Attention;
  Eigen::Index begin = 0;
  Eigen::Index count = 0;
};

/// Zero-ablation applied while recording: in layer `layer`, at `site`, columns
/// [begin, begin + count) of the heads' mixed values z (Site::Attention, head h = columns
/// h*d..) or of the neuron values a (Site::Mlp) are set to zero, per sequence: entry s of
/// `columns` applies to sequence s (count 0: nothing). An empty `columns` ablates nothing
/// there. `cuts` zero further ranges anywhere (each names its sequence, layer and site).
struct Ablation {
  int layer = -1;
  Site site = Site::Attention;
  std::vector<std::pair<Eigen::Index, Eigen::Index>> columns;  // per sequence: (begin, count)
  std::vector<AblationCut> cuts;

  bool empty() const { return columns.empty() && cuts.empty(); }
  /// Whether anything is zeroed at `site` of layer `l`.
  bool touches(int l, Site at) const {
    if (!columns.empty() && layer == l && site == at) return true;
    for (const AblationCut& c : cuts)
      if (c.layer == l && c.site == at && c.count > 0) return true;
    return false;
  }
};

/// What Model::record computes and keeps for a caller. By default: every row of the last
/// layer's MLP, and every block's output, mixed values (heads) and neuron values. at(p),
/// for callers that read nothing but an objective at position p and its gradients:
/// - trimmed: the last layer's MLP runs only at row p of each sequence. Nothing after it
///   mixes rows, so the logits at p, an objective read there and every gradient of it are
///   the same either way; (N-1)/N of the last MLP's products are skipped, forward and
///   backward;
/// - lean: the blocks' outputs (unless a post-norm's backward reads them), heads and neuron
///   values are dropped once added in, since Model::backward reads none of them: a third
///   less memory per recorded row, and less to write.
struct RecordScope {
  bool trimmed = false;
  Eigen::Index position = 0;  // p, when trimmed
  bool lean = false;

  static RecordScope full() { return {}; }
  static RecordScope at(Eigen::Index p) { return {true, p, true}; }
};

template <typename Scalar>
struct LayerTape {
  Matrix<Scalar> attention_input;  // S*N x D: the residual state at boundary 2l
  Vector<Scalar> attention_scale;  // S*N: its norm's row scales
  typename Attention<Scalar>::Forward attention;
  Matrix<Scalar> mlp_input;  // S*N x D: boundary 2l+1 (parallel residual: the layer input, what the MLP reads)
  Matrix<Scalar> parallel_mid;  // parallel residual only, S*N x D: boundary 2l+1, the input plus the attention's update
  Vector<Scalar> mlp_scale;  // S*N; the last layer of a trimmed tape: S (row s: sequence s's position p)
  typename Mlp<Scalar>::Forward mlp;  // S*N rows; the last layer of a trimmed tape: S, as mlp_scale
};

template <typename Scalar>
struct Tape {
  Eigen::Index sequence_length = 0;  // N
  RecordScope scope;                 // trimmed: the last MLP and the final rows hold position p only
  std::vector<LayerTape<Scalar>> layers;
  Matrix<Scalar> final_input;   // S*N x D: boundary 2L (trimmed: S x D, row s = sequence s's position p)
  Vector<Scalar> final_scale;   // S*N (trimmed: S)
  Matrix<Scalar> final_normed;  // S*N x D: what the unembedding reads (trimmed: S x D)

  Eigen::Index sequences() const {
    if (sequence_length < 1) return 0;
    return scope.trimmed ? final_input.rows() : final_input.rows() / sequence_length;
  }
  /// The embeddings (boundary 0) the tape was recorded from.
  const Matrix<Scalar>& embeddings() const { return layers.front().attention_input; }
  /// The residual state at boundary b (0..2L), all sequences. A trimmed tape has boundary 2L
  /// at position p only (final_input): asking for all of it throws.
  const Matrix<Scalar>& residual(int b) const {
    const int L = static_cast<int>(layers.size());
    if (b == 2 * L) {
      if (scope.trimmed)
        throw std::invalid_argument("boundary " + std::to_string(b) + " of a tape trimmed to position " +
                                    std::to_string(scope.position) +
                                    " holds that position only: record with the full scope to read every row");
      return final_input;
    }
    const LayerTape<Scalar>& t = layers[static_cast<std::size_t>(b / 2)];
    if (b % 2 == 0) return t.attention_input;
    return t.parallel_mid.size() ? t.parallel_mid : t.mlp_input;
  }
  /// The row of final_input, final_scale and final_normed holding sequence s's position p;
  /// a trimmed tape holds no other position than its own, and throws for one.
  Eigen::Index final_row(Eigen::Index s, Eigen::Index p) const {
    if (!scope.trimmed) return s * sequence_length + p;
    if (p != scope.position)
      throw std::invalid_argument("position " + std::to_string(p) + " was not recorded: the tape is trimmed to position " +
                                  std::to_string(scope.position) + " (record with the full scope or at this position)");
    return s;
  }
};

}  // namespace depass
