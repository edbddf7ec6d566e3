#pragma once
// Rotary position embeddings: each head's dimensions are rotated in pairs by an angle
// proportional to the position. The pairing (adjacent or halves), how many leading
// dimensions turn (GPT-NeoX rotates a part, the rest pass through) and any context-length
// scaling of the frequencies are fixed when the Rotary is built from the Config.

#include <Eigen/Core>
#include <cmath>

#include "../Config.hpp"
#include "../Weights.hpp"

namespace depass {

class Rotary {
 public:
  explicit Rotary(const Config& cfg)
      : active_(cfg.positions == PositionKind::Rotary), adjacent_(cfg.rope_layout == RopeLayout::AdjacentPairs),
        head_dim_(cfg.head_dim), rotated_(cfg.rotated_dims()), theta_(cfg.rope_theta), scaling_(cfg.rope_scaling) {}

  /// Whether the model rotates at all (learned absolute positions do not).
  bool active() const { return active_; }

  /// Rotary frequency of pair j, after any context-length scaling (the exponent's scale is
  /// the rotated width, as GPT-NeoX's partial rotary computes it).
  double frequency(Eigen::Index j) const {
    const double base = std::pow(theta_, -2.0 * static_cast<double>(j) / static_cast<double>(rotated_));
    switch (scaling_.type) {
      case RopeScaling::Type::None: return base;
      case RopeScaling::Type::Linear: return base / scaling_.factor;
      case RopeScaling::Type::Llama3: return llama3_frequency(base);
    }
    return base;
  }

  /// Rotates each head's pairs of t (n x heads*d), row i by the angles of position i.
  template <typename Scalar>
  void apply(Matrix<Scalar>& t, int heads) const {
    rotate<Scalar>(t, heads, 1);
  }

  /// Rotates by +angle (direction 1, the forward rotation) or -angle (direction -1, its
  /// transpose: the backward pass). t holds one sequence: row i is position i.
  template <typename Scalar>
  void rotate(Eigen::Ref<Matrix<Scalar>> t, int heads, int direction) const {
    if (!active_) return;
    const Eigen::Index half = rotated_ / 2;
    for (Eigen::Index j = 0; j < half; ++j) {
      // Angles in double: late positions lose digits in float.
      const double freq = frequency(j);
      const Eigen::Index a0 = adjacent_ ? 2 * j : j, b0 = adjacent_ ? 2 * j + 1 : j + half;
      for (Eigen::Index pos = 0; pos < t.rows(); ++pos) {
        const double angle = static_cast<double>(pos) * freq;
        const Scalar c = static_cast<Scalar>(std::cos(angle)), s = static_cast<Scalar>(direction * std::sin(angle));
        for (int h = 0; h < heads; ++h) {
          const Eigen::Index a = h * head_dim_ + a0, b = h * head_dim_ + b0;
          const Scalar x0 = t(pos, a), x1 = t(pos, b);
          t(pos, a) = x0 * c - x1 * s;
          t(pos, b) = x0 * s + x1 * c;
        }
      }
    }
  }

 private:
  /// Llama 3: long wavelengths are slowed by `factor`, short ones kept, the band between blended.
  double llama3_frequency(double base) const {
    const double pi = 3.14159265358979323846;
    const double wavelength = 2 * pi / base;
    const double low_freq_wavelength = scaling_.original_max_position / scaling_.low_freq_factor;
    const double high_freq_wavelength = scaling_.original_max_position / scaling_.high_freq_factor;
    if (wavelength < high_freq_wavelength) return base;
    if (wavelength > low_freq_wavelength) return base / scaling_.factor;
    const double smooth = (scaling_.original_max_position / wavelength - scaling_.low_freq_factor) /
                          (scaling_.high_freq_factor - scaling_.low_freq_factor);
    return (1 - smooth) * base / scaling_.factor + smooth * base;
  }

  bool active_;
  bool adjacent_;      // pairs (2j, 2j+1); else (j, j + d/2)
  Eigen::Index head_dim_;
  Eigen::Index rotated_;  // leading dimensions of each head that turn
  double theta_;
  RopeScaling scaling_;
};

}  // namespace depass
