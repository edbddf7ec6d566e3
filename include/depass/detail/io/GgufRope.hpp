#pragma once
// Llama 3 RoPE scaling from a GGUF file's `rope_freqs.weight`.
//
// llama.cpp's converter does not store the llama3 parameters (factor, low/high frequency
// factors, original context) as metadata: it stores one divisor per rotary pair, and
// llama.cpp rotates pair j by pos * theta^(-2j/d) / divisor_j. The divisors follow from the
// parameters: 1 for short wavelengths (kept), `factor` for long ones (slowed), and
// 1 / ((1 - s)/factor + s) in the band between, where the blend s is linear in the pair's
// base frequency. depass represents llama3 scaling by its parameters (RopeScaling::Llama3,
// applied in Model::rope_frequency), so the loader recovers parameters that reproduce every
// stored divisor (to float32 rounding: the table is float32) and refuses a table that no
// llama3 parameters reproduce.
//
// The parameters are not unique: scaling (original context, low, high) by one number
// changes nothing, and the band's edges are free between pairs. Only the frequencies of
// the head's pairs matter, and those are reproduced.

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../../Config.hpp"
#include "../../Error.hpp"

namespace depass {
namespace detail {

/// The divisor llama3 scaling applies to a pair of base frequency `base` (the rule of
/// Model::rope_frequency, as base / frequency).
inline double llama3_divisor(const RopeScaling& rs, double base) {
  const double pi = 3.14159265358979323846;
  const double wavelength = 2 * pi / base;
  if (wavelength < rs.original_max_position / rs.high_freq_factor) return 1.0;
  if (wavelength > rs.original_max_position / rs.low_freq_factor) return rs.factor;
  const double smooth = (rs.original_max_position / wavelength - rs.low_freq_factor) /
                        (rs.high_freq_factor - rs.low_freq_factor);
  return 1.0 / ((1 - smooth) / rs.factor + smooth);
}

/// The edges of llama3's blended band, as inverse wavelengths: pairs with u < u0 are
/// slowed, u > u1 kept, and in between the blend is s(u) = (u - u0) / (u1 - u0), where the
/// divisor is 1 / ((1 - s)/factor + s). `band` lists the blended pairs; u_kept is the
/// smallest u of a kept pair (infinity if none), u_slowed the largest of a slowed one.
inline void llama3_band_edges(const std::vector<double>& u, const std::vector<double>& divisors,
                              double factor, const std::vector<std::size_t>& band, double u_kept,
                              double u_slowed, double* u0, double* u1) {
  auto blend = [&](std::size_t j) { return (1 / divisors[j] - 1 / factor) / (1 - 1 / factor); };
  if (band.size() >= 2) {  // least-squares line through the band
    double su = 0, ss = 0, suu = 0, sus = 0;
    for (std::size_t j : band) {
      su += u[j];
      ss += blend(j);
      suu += u[j] * u[j];
      sus += u[j] * blend(j);
    }
    const double n = static_cast<double>(band.size());
    const double slope = (n * sus - su * ss) / (n * suu - su * su);
    const double intercept = (ss - slope * su) / n;
    *u0 = -intercept / slope;  // a slope <= 0 gives edges the caller refuses
    *u1 = (1 - intercept) / slope;
  } else if (band.size() == 1) {  // one point: the widest band that keeps the others outside
    const double ub = u[band[0]], s = blend(band[0]);
    const double width = 0.5 * std::min(s > 0 ? (ub - u_slowed) / s : 1e300,
                                        s < 1 && std::isfinite(u_kept) ? (u_kept - ub) / (1 - s) : 1e300);
    *u0 = ub - s * width;
    *u1 = ub + (1 - s) * width;
  } else {  // no band: edges anywhere between the last slowed and the first kept pair
    *u0 = std::isfinite(u_kept) ? u_slowed + (u_kept - u_slowed) / 3 : 1.5 * u_slowed;
    *u1 = std::isfinite(u_kept) ? u_slowed + 2 * (u_kept - u_slowed) / 3 : 3 * u_slowed;
  }
}

/// RopeScaling reproducing `divisors` (one per pair of a head_dim-wide head with base
/// theta): None when every divisor is 1, else Llama3. FormatError (prefixed with `where`)
/// naming the problem when the table is not of the llama3 form.
inline RopeScaling rope_scaling_from_divisors(const std::vector<double>& divisors, double theta,
                                              int head_dim, const std::string& where) {
  auto fail = [&](const std::string& problem) {
    throw FormatError(where + ": tensor 'rope_freqs.weight' " + problem);
  };
  const double pi = 3.14159265358979323846, tol = 1e-6;
  std::vector<double> u;  // 1 / wavelength of each pair
  for (std::size_t j = 0; j < divisors.size(); ++j) {
    if (!std::isfinite(divisors[j]) || !(divisors[j] >= 1 - tol))
      fail("holds " + std::to_string(divisors[j]) + " at [" + std::to_string(j) +
           "]; llama3 frequency divisors are finite and at least 1");
    u.push_back(std::pow(theta, -2.0 * static_cast<double>(j) / head_dim) / (2 * pi));
  }
  const double factor = *std::max_element(divisors.begin(), divisors.end());
  RopeScaling rs;
  if (factor <= 1 + tol) return rs;  // every pair kept: no scaling
  // Pairs in order of falling frequency: kept (1), blended, slowed (factor).
  double u_kept = std::numeric_limits<double>::infinity(), u_slowed = 0;
  std::vector<std::size_t> band;
  int stage = 0;
  for (std::size_t j = 0; j < divisors.size(); ++j) {
    const int kind = divisors[j] <= 1 + tol ? 0 : divisors[j] >= factor * (1 - tol) ? 2 : 1;
    if (kind < stage)
      fail("is not of the llama3 form: its divisors must rise from 1 to a constant factor as "
           "the frequency falls (pair " + std::to_string(j) + ")");
    stage = kind;
    if (kind == 0) u_kept = std::min(u_kept, u[j]);
    if (kind == 1) band.push_back(j);
    if (kind == 2) u_slowed = std::max(u_slowed, u[j]);
  }
  if (u_slowed == 0)
    fail("is not of the llama3 form: no pair carries the full slow-down factor");
  double u0 = 0, u1 = 0;
  llama3_band_edges(u, divisors, factor, band, u_kept, u_slowed, &u0, &u1);
  if (!(u0 > 0) || !(u1 > u0)) fail("is not of the llama3 form: no consistent frequency band");
  // low_freq_factor = k, original context = k / u0, high_freq_factor = k u1 / u0, with k
  // making the context at least 1 (only the ratios matter).
  const double k = std::max(1.0, u0);
  rs.type = RopeScaling::Type::Llama3;
  rs.factor = factor;
  rs.low_freq_factor = k;
  rs.original_max_position = k / u0;
  rs.high_freq_factor = k * u1 / u0;
  for (std::size_t j = 0; j < divisors.size(); ++j) {
    const double d = llama3_divisor(rs, 2 * pi * u[j]);
    if (std::abs(d - divisors[j]) > 1e-5 * divisors[j])
      fail("is not of the llama3 form: pair " + std::to_string(j) + " has divisor " +
           std::to_string(divisors[j]) + " where the closest llama3 scaling gives " + std::to_string(d));
  }
  return rs;
}

}  // namespace detail
}  // namespace depass
