#pragma once
// The result of Model::backward: the gradient of a scalar objective (Objective.hpp) with
// respect to the input embeddings, the residual stream at requested boundaries, the heads'
// mixed values z (before Wo) and the neuron values a of requested layers, for every
// sequence of a recorded Tape (rows [s*N, (s+1)*N) belong to sequence s).

#include <Eigen/Core>
#include <map>
#include <vector>

#include "Weights.hpp"

namespace depass {

/// Which gradients Model::backward keeps besides the embeddings' (the others are computed on
/// the way but dropped: every one of them is S*N rows wide).
struct GradientRequest {
  std::vector<int> boundaries;     // residual stream: b = 2l before layer l's attention, 2l+1 before its MLP, 2L final
  std::vector<int> head_layers;    // layers whose dL/dz (S*N x H*d) is kept
  std::vector<int> neuron_layers;  // layers whose dL/da (S*N x I) is kept

  /// Every boundary and layer of a model with n_layers layers.
  static GradientRequest all(int n_layers) {
    GradientRequest r;
    for (int b = 0; b <= 2 * n_layers; ++b) r.boundaries.push_back(b);
    for (int l = 0; l < n_layers; ++l) {
      r.head_layers.push_back(l);
      r.neuron_layers.push_back(l);
    }
    return r;
  }
};

template <typename Scalar>
struct Gradients {
  Vector<Scalar> values;                   // S: the objective of each sequence
  Matrix<Scalar> embeddings;               // S*N x D: df/dx0
  std::map<int, Matrix<Scalar>> residual;  // boundary -> S*N x D
  std::map<int, Matrix<Scalar>> heads;     // layer -> S*N x H*d (head h: columns h*d..)
  std::map<int, Matrix<Scalar>> neurons;   // layer -> S*N x I
};

}  // namespace depass
