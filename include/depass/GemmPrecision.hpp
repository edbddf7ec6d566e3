#pragma once
// The precision of the component propagation's large products (DecomposeOptions::
// gemm_precision). Native: the Scalar type throughout. Bf16: the inputs of the weight
// products (normed components, mixed heads, neuron shares) and the weights are rounded to
// bfloat16, the products accumulate in float (oneDNN: AMX, AVX-512 BF16, or its slower
// paths elsewhere); the component tensor, the attention mixing, the MLP split, the real
// forward pass and every frozen coefficient stay float. The components then sum to the real
// state only up to bf16 rounding: Decomposition::completeness() reports by how much.

#include <atomic>
#include <stdexcept>
#include <string>

namespace depass {

enum class GemmPrecision { Native, Bf16 };

/// Whether this build can run GemmPrecision::Bf16: compiled against oneDNN (link
/// depass::bf16, which defines DEPASS_WITH_ONEDNN).
inline bool bf16_available() {
#ifdef DEPASS_WITH_ONEDNN
  return true;
#else
  return false;
#endif
}

/// Why Bf16 cannot run in this build (empty when it can).
inline std::string bf16_unavailable_reason() {
  if (bf16_available()) return {};
  return "the bf16 mode needs oneDNN: this program was built without it (install libdnnl-dev, e.g. with `make deps`, "
         "reconfigure, and link depass::bf16)";
}

inline const char* to_string(GemmPrecision p) { return p == GemmPrecision::Bf16 ? "bf16" : "native"; }

/// Who computes the float products: the real and backward passes' (the layers' projections
/// and their gradients, attention's per-head products: what gradients, IG, occlusion and the
/// forward pass compute) and DePass's weight products (values, output projection, gate/up,
/// down). Same float arithmetic either way, summed in a different order.
/// OneDnn: oneDNN's matmul, ~1.5x Eigen's GEMM on AVX-512 CPUs (docs/performance.md,
/// "oneDNN for the float products"); only in builds linking depass::bf16. Eigen otherwise.
/// Double products are always Eigen's.
enum class FloatGemm { Eigen, OneDnn };

inline const char* to_string(FloatGemm g) { return g == FloatGemm::OneDnn ? "onednn" : "eigen"; }

namespace detail {
inline std::atomic<int>& float_gemm_setting() {
  static std::atomic<int> setting{bf16_available() ? static_cast<int>(FloatGemm::OneDnn) : static_cast<int>(FloatGemm::Eigen)};
  return setting;
}
}  // namespace detail

/// The current choice (default: OneDnn when this build has oneDNN, else Eigen).
inline FloatGemm float_gemm() { return static_cast<FloatGemm>(detail::float_gemm_setting().load()); }

/// Chooses who computes the float products, for every pass started afterwards. Throws
/// std::invalid_argument for OneDnn in a build without oneDNN.
inline void set_float_gemm(FloatGemm g) {
  if (g == FloatGemm::OneDnn && !bf16_available())
    throw std::invalid_argument("set_float_gemm: FloatGemm::OneDnn needs oneDNN: this program was built without it "
                                "(install libdnnl-dev, reconfigure, and link depass::bf16)");
  detail::float_gemm_setting() = static_cast<int>(g);
}

}  // namespace depass
