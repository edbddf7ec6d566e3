#pragma once
// The precision of the component propagation's large products (DecomposeOptions::
// gemm_precision). Native: the Scalar type throughout. Bf16: the inputs of the weight
// products (normed components, mixed heads, neuron shares) and the weights are rounded to
// bfloat16, the products accumulate in float (oneDNN: AMX, AVX-512 BF16, or its slower
// paths elsewhere); the component tensor, the attention mixing, the MLP split, the real
// forward pass and every frozen coefficient stay float. The components then sum to the real
// state only up to bf16 rounding: Decomposition::completeness() reports by how much.

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

}  // namespace depass
