#pragma once
// The components riding along a forward pass: what they are (the tensor, which component
// receives the biases, the attention sink, where each can be non-zero), the split rule,
// and how the engine runs. The engine's buffers live in `workspace` (detail, opaque).

#include <Eigen/Core>
#include <algorithm>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "ComponentTensor.hpp"
#include "GemmPrecision.hpp"
#include "detail/Bf16Gemm.hpp"
#include "Shards.hpp"
#include "Weights.hpp"
#include "layers/AttentionSinks.hpp"
#include "layers/NeuronSplit.hpp"

namespace depass {

/// How the propagation runs (the numbers it gives do not depend on it beyond rounding;
/// gemm_precision sets how much rounding).
struct EngineOptions {
  /// Packed rows (component x position) per work item of the blocked engine, at most (a
  /// short prompt uses fewer, detail::tile_rows): each thread's scratch holds about this many
  /// rows of width D + I. Tests shrink it to make many items.
  Eigen::Index work_rows = 4096;
  /// Propagate with each layer's dense reference rule (every row, whole (M*N) x I buffers)
  /// instead of the blocked engine: slower; the engine is tested against it.
  bool reference = false;
  /// Leave sum_m C[m] after each block (the completeness check reads it; the blocked engine
  /// sums the rows it just wrote, cheaper than summing C again).
  bool track_sum = false;
  /// The large products' precision (GemmPrecision.hpp); Bf16 needs Scalar = float and
  /// oneDNN, and the blocked engine (not `reference`).
  GemmPrecision gemm_precision = GemmPrecision::Native;
};

namespace detail {

/// Packed rows per work item (MLP tile, attention group): work_rows, but no more than 1/32
/// of all live rows (and no fewer than 1024), so that a short prompt's per-thread scratch
/// stays small next to its component tensor (llama-random, N = 256: 2 x 32 MiB -> 2 x 8 MiB,
/// same speed); long prompts keep work_rows (2048-row MLP tiles measured 8% slower at N = 512).
inline Eigen::Index tile_rows(Eigen::Index work_rows, double live_rows) {
  const double cap = std::max(1024.0, live_rows / 32.0);
  return cap < static_cast<double>(work_rows) ? static_cast<Eigen::Index>(cap) : work_rows;
}

/// The engine's buffers, reused by every block of a pass (allocating per block would
/// page-fault fresh memory each time).
template <typename Scalar>
struct Workspace {
  std::vector<Vector<Scalar>> scratch;          // one per thread
  std::vector<RowMatrix<Scalar>> partial_sums;  // one per thread, N x D
  RowMatrix<Scalar> sum;                        // sum_m C[m] after the last block
  bool sum_current = false;                     // `sum` belongs to the last block
  std::shared_ptr<Bf16Gemm> bf16;               // GemmPrecision::Bf16: its products and bf16 weights
};

}  // namespace detail

template <typename Scalar>
struct ComponentState {
  ComponentTensor<Scalar> tensor;    // M x N x D
  Eigen::Index bias_component = -1;  // receives biases, norm offsets and neurons nobody drives
  /// The attention sinks of the next MLP split, each driving neurons only at its own
  /// position; with sink_policy.from_attention(), Model::run_block renews them after each
  /// attention from its probabilities.
  std::vector<Sink> sinks;
  SinkPolicy sink_policy;
  /// Per component, the first position that can be non-zero (rows before it are zero and
  /// stay zero: token m never reaches positions < m under the causal mask). Empty: all 0.
  /// The engine skips the zero rows, which halves the work of a token-level run.
  std::vector<Eigen::Index> first_position;
  SplitRule split;
  EngineOptions engine;
  /// A sharded run (Shards.hpp): the processes this one's components are combined with,
  /// and each local component's index in the whole run (the argmax split breaks ties by
  /// it). Null: every component is here. The bias component is rank 0's.
  ShardGroup* shards = nullptr;
  std::vector<Eigen::Index> global_index;
  detail::Workspace<Scalar> workspace;
  /// What the block being propagated reads, when not `tensor` (it always adds to `tensor`): a
  /// parallel-residual model's MLP reads the components at the layer input (detail::BlockInput).
  const ComponentTensor<Scalar>* block_input = nullptr;

  Eigen::Index first(Eigen::Index m) const {
    return first_position.empty() ? 0 : std::max<Eigen::Index>(0, first_position[static_cast<std::size_t>(m)]);
  }
  bool is_bias(Eigen::Index m) const { return m == bias_component; }
  const ComponentTensor<Scalar>& input() const { return block_input ? *block_input : tensor; }
  Eigen::Index global(Eigen::Index m) const {
    return global_index.empty() ? m : global_index[static_cast<std::size_t>(m)];
  }
  /// Another process of a sharded run holds the bias component.
  bool bias_elsewhere() const { return shards && shards->rank() != 0; }
  /// sum_m C[m] (N x D) after the last block, when the engine left it; else null.
  const RowMatrix<Scalar>* component_sum() const { return workspace.sum_current ? &workspace.sum : nullptr; }
};

namespace detail {

/// GemmPrecision::Bf16 runs on float models only.
template <typename Scalar>
void require_bf16_scalar() {
  if (!std::is_same<Scalar, float>::value)
    throw std::invalid_argument("gemm_precision = bf16 runs on float models only (this one is double)");
}

/// The products of a pass's propagation: bf16 when the engine asks for it (made on first
/// use, before any parallel region), else Scalar.
template <typename Scalar>
Product<Scalar> products(ComponentState<Scalar>& cs) {
  if (cs.engine.gemm_precision != GemmPrecision::Bf16) return {};
  require_bf16_scalar<Scalar>();
  if (!cs.workspace.bf16) cs.workspace.bf16 = std::make_shared<Bf16Gemm>();
  return Product<Scalar>{cs.workspace.bf16.get()};
}

/// Points a state's block_input at `input` for one block's propagation (null: the tensor).
template <typename Scalar>
class BlockInput {
 public:
  BlockInput(ComponentState<Scalar>& cs, const ComponentTensor<Scalar>* input) : cs_(cs) { cs_.block_input = input; }
  ~BlockInput() { cs_.block_input = nullptr; }
  BlockInput(const BlockInput&) = delete;
  BlockInput& operator=(const BlockInput&) = delete;

 private:
  ComponentState<Scalar>& cs_;
};

}  // namespace detail

/// Biases belong to no input: a layer's bias term is added only to the rows of the bias
/// component (`owner_is_bias`). `bias` empty: the layer has none.
template <typename Rows, typename Bias>
void route_bias(Rows&& rows, const Bias& bias, bool owner_is_bias) {
  if (owner_is_bias && bias.size()) rows.rowwise() += bias.transpose();
}

}  // namespace depass
