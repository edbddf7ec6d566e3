#pragma once
// The MLP split of layers/NeuronSplit.hpp (split_neuron, the specification) for one
// position and every neuron at once, written on Eigen's packet primitives: Eigen 3.4 does
// not vectorise select() or comparisons in array expressions, and this loop touches every
// (member, position, neuron) entry of a pass. Tests check it against split_neuron.

#include <Eigen/Core>
#include <limits>
#include <vector>

#include "../layers/NeuronSplit.hpp"

namespace depass {
namespace detail {

template <typename Scalar>
struct SplitKernel {
  using Packet = typename Eigen::internal::packet_traits<Scalar>::type;
  static constexpr Eigen::Index kPacket = Eigen::internal::unpacket_traits<Packet>::size;
  /// Neurons per step: kChunk packets, kept in registers across the passes over the members.
  static constexpr Eigen::Index kChunk = 4;
  static constexpr Eigen::Index kStep = kPacket * kChunk;

  /// Neuron rows are padded to a multiple of kStep (the padding is never read back).
  static Eigen::Index padded(Eigen::Index I) { return (I + kStep - 1) / kStep * kStep; }

  /// rows[i] holds member i's gate contributions to every neuron (padded_i entries) and is
  /// overwritten by its share of the neuron's output act[k]. Neurons nobody drives go to
  /// bias_slot; returns true if one had no bias slot to go to.
  static bool split_position(const SplitRule& rule, const std::vector<Scalar*>& rows, Eigen::Index bias_slot,
                             const Scalar* act, Eigen::Index I, Eigen::Index padded_i) {
    bool orphan = false;
    for (Eigen::Index k = 0; k < padded_i; k += kStep) orphan = split_chunk(rule, rows, bias_slot, act, I, k) || orphan;
    return orphan;
  }

  /// The path rule (split_neuron_path) at one position: g_rows[i] (member i's gate
  /// contributions, padded_i entries) is overwritten by its shares; u_rows[i] holds its up
  /// contributions (empty list: a GELU MLP). Padding entries are zero and stay zero.
  static void split_position_path(MlpKind kind, const std::vector<Scalar*>& g_rows, const std::vector<Scalar*>& u_rows,
                                  Eigen::Index padded_i) {
    using Array = Eigen::Array<Scalar, Eigen::Dynamic, 1>;
    using Map = Eigen::Map<Array>;
    const bool gated = !u_rows.empty();
    // Per-thread buffers: this runs once per position of every tile, so no allocation here.
    thread_local Array G, U, cg, cu;
    G.setZero(padded_i);
    U.setZero(padded_i);
    cg.resize(padded_i);
    cu.resize(padded_i);
    for (std::size_t i = 0; i < g_rows.size(); ++i) {
      G += Map(g_rows[i], padded_i);
      if (gated) U += Map(u_rows[i], padded_i);
    }
    for (Eigen::Index k = 0; k < padded_i; ++k) path_coefficients(kind, G[k], U[k], cg[k], cu[k]);
    for (std::size_t i = 0; i < g_rows.size(); ++i) {
      Map g(g_rows[i], padded_i);
      if (gated) g = cg * g + cu * Map(u_rows[i], padded_i);
      else g *= cg;
    }
  }

 private:
  /// One chunk's running statistics, per packet of neurons.
  struct Chunk {
    Packet a[kChunk], peak[kChunk], best[kChunk], total[kChunk], magnitude[kChunk], driven[kChunk], orphan[kChunk];
  };

  static Packet eligible(const Packet& v) {
    namespace ei = Eigen::internal;
    const Packet zero = ei::pset1<Packet>(Scalar(0));
    return ei::pandnot(ei::ptrue(zero), ei::pcmp_eq(v, zero));
  }

  /// Neurons [k, k + kStep): statistics, then the shares. A chunk stays in registers, so
  /// its rows are read from cache after the first pass.
  static bool split_chunk(const SplitRule& rule, const std::vector<Scalar*>& rows, Eigen::Index bias_slot,
                          const Scalar* act, Eigen::Index I, Eigen::Index k) {
    Chunk c = statistics(rule, rows, act, k);
    const bool orphan = bias_slot < 0 && undriven(c, I, k);
    if (rule.split == MlpSplit::Argmax) argmax_shares(c, rows, bias_slot, k);
    else exp_shares(rule, c, rows, bias_slot, k);
    return orphan;
  }

  /// Pass 1: the largest eligible contribution (and, for argmax, whose: strictly greater,
  /// so on ties the lowest member keeps the neuron); sums for the proportional rule.
  static Chunk statistics(const SplitRule& rule, const std::vector<Scalar*>& rows, const Scalar* act, Eigen::Index k) {
    namespace ei = Eigen::internal;
    const Packet zero = ei::pset1<Packet>(Scalar(0));
    const Packet neg_inf = ei::pset1<Packet>(-std::numeric_limits<Scalar>::infinity());
    Chunk c;
    for (Eigen::Index q = 0; q < kChunk; ++q) {
      c.a[q] = ei::ploadu<Packet>(act + k + q * kPacket);
      c.peak[q] = neg_inf;
      c.best[q] = ei::pset1<Packet>(Scalar(-1));
      c.total[q] = c.magnitude[q] = zero;
    }
    for (std::size_t i = 0; i < rows.size(); ++i) {
      for (Eigen::Index q = 0; q < kChunk; ++q) {
        const Packet v = ei::ploadu<Packet>(rows[i] + k + q * kPacket);
        const Packet better = ei::pand(eligible(v), ei::pcmp_lt(c.peak[q], v));
        c.peak[q] = ei::pselect(better, v, c.peak[q]);
        if (rule.split == MlpSplit::Argmax)
          c.best[q] = ei::pselect(better, ei::pset1<Packet>(static_cast<Scalar>(i)), c.best[q]);
        if (rule.split == MlpSplit::Proportional) {
          c.total[q] = ei::padd(c.total[q], v);
          c.magnitude[q] = ei::padd(c.magnitude[q], ei::pabs(v));
        }
      }
    }
    for (Eigen::Index q = 0; q < kChunk; ++q) {
      c.driven[q] = ei::pandnot(ei::ptrue(zero), ei::pcmp_eq(c.peak[q], neg_inf));
      c.orphan[q] = ei::pandnot(c.a[q], c.driven[q]);  // neurons no member drives: to the bias
    }
    return c;
  }

  /// Whether a real neuron (index < I) of the chunk is driven by no member.
  static bool undriven(const Chunk& c, Eigen::Index I, Eigen::Index k) {
    Scalar lanes[kStep];
    for (Eigen::Index q = 0; q < kChunk; ++q) Eigen::internal::pstoreu(lanes + q * kPacket, c.driven[q]);
    for (Eigen::Index l = 0; l < kStep && k + l < I; ++l)
      if (!(lanes[l] != Scalar(0))) return true;  // all-ones is a NaN: != 0 holds
    return false;
  }

  static void argmax_shares(const Chunk& c, const std::vector<Scalar*>& rows, Eigen::Index bias_slot, Eigen::Index k) {
    namespace ei = Eigen::internal;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const Packet index = ei::pset1<Packet>(static_cast<Scalar>(i));
      for (Eigen::Index q = 0; q < kChunk; ++q) {
        Packet out = ei::pand(ei::pcmp_eq(c.best[q], index), c.a[q]);
        if (static_cast<Eigen::Index>(i) == bias_slot) out = ei::padd(out, c.orphan[q]);
        ei::pstoreu(rows[i] + k + q * kPacket, out);
      }
    }
  }

  /// Softmax weights exp((g - peak) / T) summed (pass 2), then the shares (pass 3); the
  /// proportional rule takes g / total where the contributions do not nearly cancel.
  static void exp_shares(const SplitRule& rule, const Chunk& c, const std::vector<Scalar*>& rows,
                         Eigen::Index bias_slot, Eigen::Index k) {
    namespace ei = Eigen::internal;
    const bool softmax = rule.split == MlpSplit::Softmax;
    const Packet inv_t = ei::pset1<Packet>(Scalar(1) / static_cast<Scalar>(rule.temperature));
    Packet sum[kChunk], coef[kChunk], signed_share[kChunk];
    for (Eigen::Index q = 0; q < kChunk; ++q) sum[q] = ei::pset1<Packet>(Scalar(0));
    for (std::size_t i = 0; i < rows.size(); ++i)
      for (Eigen::Index q = 0; q < kChunk; ++q) {
        Scalar* at = rows[i] + k + q * kPacket;
        const Packet v = ei::ploadu<Packet>(at);
        const Packet e = ei::pand(eligible(v), ei::pexp(ei::pmul(ei::psub(v, c.peak[q]), inv_t)));
        sum[q] = ei::padd(sum[q], e);
        if (softmax) ei::pstoreu(at, e);
      }
    const Packet ratio = ei::pset1<Packet>(static_cast<Scalar>(kProportionalCancelRatio));
    for (Eigen::Index q = 0; q < kChunk; ++q) {
      coef[q] = ei::pand(c.driven[q], ei::pdiv(c.a[q], sum[q]));
      signed_share[q] = ei::pcmp_lt(ei::pmul(ratio, c.magnitude[q]), ei::pabs(c.total[q]));
    }
    for (std::size_t i = 0; i < rows.size(); ++i)
      for (Eigen::Index q = 0; q < kChunk; ++q) {
        Scalar* at = rows[i] + k + q * kPacket;
        const Packet v = ei::ploadu<Packet>(at);
        Packet out = ei::pmul(v, coef[q]);  // softmax: v already holds the weight e
        if (!softmax) {
          const Packet e = ei::pexp(ei::pmul(ei::psub(v, c.peak[q]), inv_t));
          out = ei::pand(eligible(v), ei::pselect(signed_share[q], ei::pmul(ei::pdiv(v, c.total[q]), c.a[q]),
                                                  ei::pmul(e, coef[q])));
        }
        if (static_cast<Eigen::Index>(i) == bias_slot) out = ei::padd(out, c.orphan[q]);
        ei::pstoreu(at, out);
      }
  }
};

}  // namespace detail
}  // namespace depass
