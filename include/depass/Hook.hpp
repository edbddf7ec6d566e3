#pragma once
// Hooks: one callback that sees every named sub-step of the forward pass, with its layer:
//   embed, attn_norm, attn_probs, attn_heads, attn_out, attn_resid,
//   ffn_norm, ffn_gate, ffn_up, ffn_act, ffn_out, layer_out, final_norm, logits,
// and, in a decomposed pass, the components on the residual-stream events (start,
// attn_resid, layer_out). Each layer type emits its own sub-steps (layers/*.hpp).

#include <Eigen/Core>
#include <functional>

#include "ComponentTensor.hpp"
#include "Weights.hpp"

namespace depass {

/// What a hook sees after a named sub-step.
template <typename Scalar>
struct HookEvent {
  const char* name;  // see the list above
  int layer;         // block index, -1 before the first block and after the last
  Eigen::Ref<const Matrix<Scalar>> value;      // the tensor just computed
  const ComponentTensor<Scalar>* components;  // set on residual-stream events of a decomposed pass
  /// Residual-stream events (start, attn_resid, layer_out): the boundary reached, as
  /// Boundary::index counts it (blocks run so far: 2 * layer, + 1 before an MLP); else -1.
  int boundary = -1;
};

template <typename Scalar>
using Hook = std::function<void(const HookEvent<Scalar>&)>;

namespace detail {

/// A layer's view of the hook: emits the layer's sub-steps under its index.
template <typename Scalar>
struct Tap {
  const Hook<Scalar>* hook = nullptr;
  int layer = -1;

  void operator()(const char* name, const Eigen::Ref<const Matrix<Scalar>>& value) const {
    if (hook && *hook) (*hook)(HookEvent<Scalar>{name, layer, value, nullptr, -1});
  }
  /// A residual-stream event: the state (and the components, in a decomposed pass).
  void residual(const char* name, const Eigen::Ref<const Matrix<Scalar>>& state,
                const ComponentTensor<Scalar>* components, int boundary) const {
    if (hook && *hook) (*hook)(HookEvent<Scalar>{name, layer, state, components, boundary});
  }
};

}  // namespace detail
}  // namespace depass
