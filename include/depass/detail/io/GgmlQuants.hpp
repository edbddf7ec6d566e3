#pragma once
// Block decoders for ggml's quantised tensor types, written from the block layouts of the
// ggml format description (ggml-common.h). Each decoder turns one block into floats with
// the arithmetic ggml's reference dequantisers use (float products in the same order), so
// a weight comes out exactly as llama.cpp reconstructs it. In every type the products are
// exact in float except Q6_K's (d * scale) * q and Q8_K's d * q, which round once.
//
//   type    elements  bytes  layout (in file order)
//   Q4_0       32      18    f16 d, 16 x (two 4-bit q)                 x = (q - 8) d
//   Q4_1       32      20    f16 d, f16 m, 16 x (two 4-bit q)          x = q d + m
//   Q5_0       32      22    f16 d, u32 high bits, 16 x (two 4-bit)    x = (q - 16) d
//   Q5_1       32      24    f16 d, f16 m, u32 high bits, 16 x         x = q d + m
//   Q8_0       32      34    f16 d, 32 x int8 q                        x = q d
//   IQ4_NL     32      18    f16 d, 16 x (two 4-bit indices)           x = d table[i]
//   Q2_K      256      84    16 x (4-bit scale | 4-bit min), 64 x (four 2-bit q), f16 d, f16 dmin
//   Q3_K      256     110    32 x high bits, 64 x (four 2-bit q), 12 x packed 6-bit scales, f16 d
//   Q4_K      256     144    f16 d, f16 dmin, 12 x packed 6-bit scales/mins, 128 x (two 4-bit q)
//   Q5_K      256     176    f16 d, f16 dmin, 12 x scales/mins, 32 x high bits, 128 x 4-bit q
//   Q6_K      256     210    128 x low 4 bits, 64 x high 2 bits, 16 x int8 scale, f16 d
//   Q8_K      256     292    f32 d, 256 x int8 q, 16 x int16 sums (unused here)
//   IQ4_XS    256     136    f16 d, u16 high scale bits, 4 x low scale bits, 128 x 4-bit indices
//
// In the 32-element types, byte j holds element j in its low nibble and element j + 16 in
// its high nibble. A decoder returns nullptr, or the name of the first scale field that is
// not finite ("d", "dmin", "m"): a NaN or infinite scale poisons the whole block, and the
// loader refuses it naming the tensor and the block.

#include <cmath>
#include <cstdint>
#include <cstring>

#include "Convert.hpp"

namespace depass {
namespace detail {
namespace ggml {

constexpr int kQK = 32;    // elements per block of the simple types
constexpr int kQK_K = 256;  // elements per super-block of the K and IQ4_XS types

/// The 16 non-uniform levels of IQ4_NL and IQ4_XS.
constexpr std::int8_t kIq4nlLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                          1,    13,   25,  38,  53,  69,  89,  113};

inline std::uint8_t byte_at(const unsigned char* p, int i) { return p[i]; }
inline float half_at(const unsigned char* p) {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  return half_to_float(h);
}
inline bool finite(float x) { return std::isfinite(x); }

inline const char* decode_q4_0(const unsigned char* b, float* y) {
  const float d = half_at(b);
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = static_cast<float>((b[2 + j] & 0x0F) - 8) * d;
    y[j + kQK / 2] = static_cast<float>((b[2 + j] >> 4) - 8) * d;
  }
  return finite(d) ? nullptr : "d";
}

inline const char* decode_q4_1(const unsigned char* b, float* y) {
  const float d = half_at(b), m = half_at(b + 2);
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = static_cast<float>(b[4 + j] & 0x0F) * d + m;
    y[j + kQK / 2] = static_cast<float>(b[4 + j] >> 4) * d + m;
  }
  return !finite(d) ? "d" : !finite(m) ? "m" : nullptr;
}

/// Q5_0 / Q5_1 share the quants: bit j of the little-endian u32 is the fifth bit of
/// element j (0..31).
inline int q5_value(const unsigned char* high_bits, const unsigned char* low, int j) {
  std::uint32_t qh;
  std::memcpy(&qh, high_bits, 4);
  const int nibble = j < kQK / 2 ? (low[j] & 0x0F) : (low[j - kQK / 2] >> 4);
  return nibble | static_cast<int>(((qh >> j) & 1u) << 4);
}

inline const char* decode_q5_0(const unsigned char* b, float* y) {
  const float d = half_at(b);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(q5_value(b + 2, b + 6, j) - 16) * d;
  return finite(d) ? nullptr : "d";
}

inline const char* decode_q5_1(const unsigned char* b, float* y) {
  const float d = half_at(b), m = half_at(b + 2);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(q5_value(b + 4, b + 8, j)) * d + m;
  return !finite(d) ? "d" : !finite(m) ? "m" : nullptr;
}

inline const char* decode_q8_0(const unsigned char* b, float* y) {
  const float d = half_at(b);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(static_cast<std::int8_t>(b[2 + j])) * d;
  return finite(d) ? nullptr : "d";
}

inline const char* decode_iq4_nl(const unsigned char* b, float* y) {
  const float d = half_at(b);
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * static_cast<float>(kIq4nlLevels[b[2 + j] & 0x0F]);
    y[j + kQK / 2] = d * static_cast<float>(kIq4nlLevels[b[2 + j] >> 4]);
  }
  return finite(d) ? nullptr : "d";
}

/// Q2_K: 16 sub-blocks of 16. Element e: sub-block s = e / 16; within each half of 128,
/// byte (e % 32) of that half's 32 quant bytes, bits 2 * ((e % 128) / 32).
inline const char* decode_q2_k(const unsigned char* b, float* y) {
  const unsigned char* scales = b;
  const unsigned char* qs = b + 16;
  const float d = half_at(b + 80), dmin = half_at(b + 82);
  for (int e = 0; e < kQK_K; ++e) {
    const int s = e / 16, half = e / 128, shift = 2 * ((e % 128) / 32);
    const float dl = d * static_cast<float>(scales[s] & 0x0F);
    const float ml = dmin * static_cast<float>(scales[s] >> 4);
    const int q = (qs[32 * half + e % 32] >> shift) & 3;
    y[e] = dl * static_cast<float>(q) - ml;
  }
  return !finite(d) ? "d" : !finite(dmin) ? "dmin" : nullptr;
}

/// The 16 signed 6-bit scales of Q3_K: low 4 bits from byte s (s < 8, low nibble) or
/// byte s - 8 (high nibble); high 2 bits from byte 8 + s % 4, bits 2 * (s / 4); minus 32.
inline int q3_k_scale(const unsigned char* packed, int s) {
  const int low = s < 8 ? (packed[s] & 0x0F) : (packed[s - 8] >> 4);
  const int high = (packed[8 + s % 4] >> (2 * (s / 4))) & 3;
  return (low | (high << 4)) - 32;
}

/// Q3_K: like Q2_K's 2-bit quants, minus 4 where the element's bit in hmask is clear
/// (hmask byte e % 32, bit e / 32).
inline const char* decode_q3_k(const unsigned char* b, float* y) {
  const unsigned char* hmask = b;
  const unsigned char* qs = b + 32;
  const unsigned char* scales = b + 96;
  const float d = half_at(b + 108);
  for (int e = 0; e < kQK_K; ++e) {
    const int half = e / 128, shift = 2 * ((e % 128) / 32);
    const float dl = d * static_cast<float>(q3_k_scale(scales, e / 16));
    const int low = (qs[32 * half + e % 32] >> shift) & 3;
    const int q = low - (((hmask[e % 32] >> (e / 32)) & 1) ? 0 : 4);
    y[e] = dl * static_cast<float>(q);
  }
  return finite(d) ? nullptr : "d";
}

/// The 6-bit scale and min of sub-block s (0..7) of Q4_K and Q5_K.
inline void k4_scale_min(const unsigned char* q, int s, int* scale, int* min) {
  if (s < 4) {
    *scale = q[s] & 63;
    *min = q[s + 4] & 63;
  } else {
    *scale = (q[s + 4] & 0x0F) | ((q[s - 4] >> 6) << 4);
    *min = (q[s + 4] >> 4) | ((q[s] >> 6) << 4);
  }
}

/// Q4_K: 8 sub-blocks of 32; sub-block s uses the low (s even) or high (s odd) nibbles of
/// quant bytes 32 * (s / 2) .. + 31.
inline const char* decode_q4_k(const unsigned char* b, float* y) {
  const float d = half_at(b), dmin = half_at(b + 2);
  const unsigned char* scales = b + 4;
  const unsigned char* qs = b + 16;
  for (int s = 0; s < 8; ++s) {
    int sc, mn;
    k4_scale_min(scales, s, &sc, &mn);
    const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(mn);
    for (int l = 0; l < 32; ++l) {
      const int byte = qs[32 * (s / 2) + l];
      const int q = (s % 2 == 0) ? (byte & 0x0F) : (byte >> 4);
      y[32 * s + l] = dl * static_cast<float>(q) - ml;
    }
  }
  return !finite(d) ? "d" : !finite(dmin) ? "dmin" : nullptr;
}

/// Q5_K: Q4_K plus a fifth bit: bit s of high-bit byte l for element l of sub-block s.
inline const char* decode_q5_k(const unsigned char* b, float* y) {
  const float d = half_at(b), dmin = half_at(b + 2);
  const unsigned char* scales = b + 4;
  const unsigned char* qh = b + 16;
  const unsigned char* qs = b + 48;
  for (int s = 0; s < 8; ++s) {
    int sc, mn;
    k4_scale_min(scales, s, &sc, &mn);
    const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(mn);
    for (int l = 0; l < 32; ++l) {
      const int byte = qs[32 * (s / 2) + l];
      const int q = ((s % 2 == 0) ? (byte & 0x0F) : (byte >> 4)) | (((qh[l] >> s) & 1) << 4);
      y[32 * s + l] = dl * static_cast<float>(q) - ml;
    }
  }
  return !finite(d) ? "d" : !finite(dmin) ? "dmin" : nullptr;
}

/// Q6_K: in each half of 128, element 32 * k + l (k = 0..3) takes the low (k < 2) or high
/// (k >= 2) nibble of ql byte l + 32 * (k % 2), and bits 2k..2k+1 of qh byte l; minus 32.
/// Its int8 scale is that of sub-block e / 16.
inline const char* decode_q6_k(const unsigned char* b, float* y) {
  const unsigned char* ql = b;
  const unsigned char* qh = b + 128;
  const unsigned char* scales = b + 192;
  const float d = half_at(b + 208);
  for (int e = 0; e < kQK_K; ++e) {
    const int half = e / 128, k = (e % 128) / 32, l = e % 32;
    const int low_byte = ql[64 * half + l + 32 * (k % 2)];
    const int low = k < 2 ? (low_byte & 0x0F) : (low_byte >> 4);
    const int high = (qh[32 * half + l] >> (2 * k)) & 3;
    const float scale = static_cast<float>(static_cast<std::int8_t>(scales[e / 16]));
    y[e] = d * scale * static_cast<float>((low | (high << 4)) - 32);
  }
  return finite(d) ? nullptr : "d";
}

inline const char* decode_q8_k(const unsigned char* b, float* y) {
  float d;
  std::memcpy(&d, b, 4);
  for (int e = 0; e < kQK_K; ++e) y[e] = d * static_cast<float>(static_cast<std::int8_t>(b[4 + e]));
  return finite(d) ? nullptr : "d";
}

/// IQ4_XS: 8 sub-blocks of 32, each an IQ4_NL block without its own f16 scale: a 6-bit
/// scale (low 4 bits: nibble s % 2 of byte s / 2; high 2 bits: bits 2s of the u16) minus 32.
inline const char* decode_iq4_xs(const unsigned char* b, float* y) {
  const float d = half_at(b);
  std::uint16_t scales_high;
  std::memcpy(&scales_high, b + 2, 2);
  const unsigned char* scales_low = b + 4;
  const unsigned char* qs = b + 8;
  for (int s = 0; s < 8; ++s) {
    const int ls = ((scales_low[s / 2] >> (4 * (s % 2))) & 0x0F) | (((scales_high >> (2 * s)) & 3) << 4);
    const float dl = d * static_cast<float>(ls - 32);
    for (int j = 0; j < 16; ++j) {
      y[32 * s + j] = dl * static_cast<float>(kIq4nlLevels[qs[16 * s + j] & 0x0F]);
      y[32 * s + j + 16] = dl * static_cast<float>(kIq4nlLevels[qs[16 * s + j] >> 4]);
    }
  }
  return finite(d) ? nullptr : "d";
}

using BlockDecoder = const char* (*)(const unsigned char* block, float* out);

/// The decoder of a quantised ggml type number, or nullptr if depass does not decode it.
inline BlockDecoder block_decoder(std::uint32_t type) {
  switch (type) {
    case 2: return decode_q4_0;
    case 3: return decode_q4_1;
    case 6: return decode_q5_0;
    case 7: return decode_q5_1;
    case 8: return decode_q8_0;
    case 10: return decode_q2_k;
    case 11: return decode_q3_k;
    case 12: return decode_q4_k;
    case 13: return decode_q5_k;
    case 14: return decode_q6_k;
    case 15: return decode_q8_k;
    case 20: return decode_iq4_nl;
    case 23: return decode_iq4_xs;
    default: return nullptr;
  }
}

}  // namespace ggml
}  // namespace detail
}  // namespace depass
