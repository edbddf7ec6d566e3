#pragma once
// Points of the residual stream where a decomposition can start or end.

#include <string>

namespace depass {

/// Which block of a layer a boundary sits in front of.
enum class Site { Attention, Mlp };

/// A point of the residual stream: before the attention or the MLP of a layer, or the
/// output (after the last layer, where the final norm and the unembedding follow).
struct Boundary {
  int layer = 0;
  Site site = Site::Attention;
  bool is_output = false;

  static Boundary before_attention(int layer) { return Boundary{layer, Site::Attention, false}; }
  static Boundary before_mlp(int layer) { return Boundary{layer, Site::Mlp, false}; }
  static Boundary output() { return Boundary{-1, Site::Attention, true}; }

  /// Number of blocks in front of this boundary: 2*layer (+1 before an MLP); 2L at the output.
  int index(int n_layers) const {
    return is_output ? 2 * n_layers : 2 * layer + (site == Site::Mlp ? 1 : 0);
  }
  static Boundary from_index(int index, int n_layers) {
    if (index >= 2 * n_layers) return output();
    return Boundary{index / 2, index % 2 ? Site::Mlp : Site::Attention, false};
  }
  std::string to_string() const {
    if (is_output) return "output";
    return std::string(site == Site::Mlp ? "before mlp " : "before attention ") + std::to_string(layer);
  }
};

}  // namespace depass
