#pragma once
// Rotary position embeddings: each head's dimensions are rotated in pairs by an angle
// proportional to the position. The pairing (adjacent or halves), how many leading
// dimensions turn (GPT-NeoX rotates a part, the rest pass through) and any context-length
// scaling of the frequencies are fixed when the Rotary is built from the Config.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>

#include "../Config.hpp"
#include "../Weights.hpp"

namespace depass {

namespace detail {

/// cos and sin of each rotated pair's angle at positions [0, rows), in double: a model's
/// layers and passes share them instead of computing the same angles again in every call
/// (they took 2% of input x gradient's cycles; docs/performance.md, "One parallel region per step").
struct RotaryTable {
  Eigen::MatrixXd cos, sin;  // positions x (rotated / 2): pair j at position p in (p, j)
};

/// One model's tables, grown on demand and shared by its threads (built for the first
/// Rotary that asks; every Rotary of the model has the same frequencies).
class RotaryTables {
 public:
  template <typename Build>
  std::shared_ptr<const RotaryTable> at_least(Eigen::Index positions, Build&& build) {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (!table_ || table_->cos.rows() < positions)
      table_ = build(std::max(positions, table_ ? 2 * table_->cos.rows() : Eigen::Index(0)));
    return table_;
  }

 private:
  std::mutex mutex_;
  std::shared_ptr<const RotaryTable> table_;
};

}  // namespace detail

class Rotary {
 public:
  /// tables: where the model keeps its cos/sin tables (must outlive the Rotary); none:
  /// the angles are computed in every call.
  explicit Rotary(const Config& cfg, detail::RotaryTables* tables = nullptr)
      : active_(cfg.positions == PositionKind::Rotary), adjacent_(cfg.rope_layout == RopeLayout::AdjacentPairs),
        head_dim_(cfg.head_dim), rotated_(cfg.rotated_dims()), theta_(cfg.rope_theta), scaling_(cfg.rope_scaling),
        tables_(tables) {}

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
    const std::shared_ptr<const detail::RotaryTable> table =
        tables_ ? tables_->at_least(t.rows(), [this](Eigen::Index n) { return build_table(n); }) : build_table(t.rows());
    // Column by column (contiguous: vectorises), the angles cast to Scalar once per call.
    using Column = Eigen::Array<Scalar, Eigen::Dynamic, 1>;
    const Eigen::Index half = rotated_ / 2, n = t.rows();
    const Matrix<Scalar> cosines = table->cos.topRows(n).template cast<Scalar>();
    const Matrix<Scalar> sines = (table->sin.topRows(n) * static_cast<double>(direction)).template cast<Scalar>();
    Column first(n);
    for (int h = 0; h < heads; ++h)
      for (Eigen::Index j = 0; j < half; ++j) {
        const Eigen::Index a = h * head_dim_ + (adjacent_ ? 2 * j : j), b = h * head_dim_ + (adjacent_ ? 2 * j + 1 : j + half);
        Eigen::Map<Column> x0(&t(0, a), n), x1(&t(0, b), n);
        const Eigen::Map<const Column> c(cosines.col(j).data(), n), s(sines.col(j).data(), n);
        first = x0;
        x0 = first * c - x1 * s;
        x1 = first * s + x1 * c;
      }
  }

 private:
  /// The angles of positions [0, positions), in double: late positions lose digits in float.
  std::shared_ptr<const detail::RotaryTable> build_table(Eigen::Index positions) const {
    auto table = std::make_shared<detail::RotaryTable>();
    const Eigen::Index half = rotated_ / 2;
    table->cos.resize(positions, half);
    table->sin.resize(positions, half);
    for (Eigen::Index j = 0; j < half; ++j) {
      const double freq = frequency(j);
      for (Eigen::Index pos = 0; pos < positions; ++pos) {
        const double angle = static_cast<double>(pos) * freq;
        table->cos(pos, j) = std::cos(angle);
        table->sin(pos, j) = std::sin(angle);
      }
    }
    return table;
  }

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
  detail::RotaryTables* tables_;  // the model's shared tables, or none
};

}  // namespace depass
