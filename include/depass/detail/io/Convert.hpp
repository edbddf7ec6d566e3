#pragma once
// Element conversions from on-disk floating-point encodings to Scalar. Half precision is
// decoded by hand (no compiler _Float16 / F16C dependence) so that subnormals, infinities,
// NaN payloads and signed zeros come out exactly as the IEEE formats define them.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "../File.hpp"
#include "BinaryFile.hpp"

namespace depass {
namespace detail {

inline float float_from_bits(std::uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

/// IEEE 754 binary16 -> binary32. Every half value is exactly representable as a float.
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1Fu;
  const std::uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24. The product is exact in float, and building it
    // arithmetically avoids renormalising the mantissa bit by bit.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 0x1F)  // infinity (mantissa 0) or NaN (payload kept in the top bits)
    return float_from_bits(sign | 0x7F800000u | (mantissa << 13));
  return float_from_bits(sign | ((exponent - 15 + 127) << 23) | (mantissa << 13));
}

/// bfloat16 is the top half of a binary32, so widening is a shift.
inline float bf16_to_float(std::uint16_t b) {
  return float_from_bits(static_cast<std::uint32_t>(b) << 16);
}

/// Floating-point encodings that loaders can convert. All are read little-endian, which
/// is what every supported format stores and what the (x86/ARM) hosts we target use.
enum class ElementType { F16, BF16, F32, F64 };

inline std::size_t element_size(ElementType type) {
  switch (type) {
    case ElementType::F16:
    case ElementType::BF16:
      return 2;
    case ElementType::F32:
      return 4;
    case ElementType::F64:
      return 8;
  }
  return 0;
}

/// Converts count elements starting at bytes (no alignment assumed) into out.
template <typename Scalar>
void convert_elements(const char* bytes, ElementType type, std::size_t count, Scalar* out) {
  switch (type) {
    case ElementType::F16:
      for (std::size_t i = 0; i < count; ++i) {
        std::uint16_t h;
        std::memcpy(&h, bytes + 2 * i, 2);
        out[i] = static_cast<Scalar>(half_to_float(h));
      }
      break;
    case ElementType::BF16:
      for (std::size_t i = 0; i < count; ++i) {
        std::uint16_t b;
        std::memcpy(&b, bytes + 2 * i, 2);
        out[i] = static_cast<Scalar>(bf16_to_float(b));
      }
      break;
    case ElementType::F32:
      for (std::size_t i = 0; i < count; ++i) {
        float f;
        std::memcpy(&f, bytes + 4 * i, 4);
        out[i] = static_cast<Scalar>(f);
      }
      break;
    case ElementType::F64:
      // double -> float rounds to nearest; that is the only lossy conversion here.
      for (std::size_t i = 0; i < count; ++i) {
        double d;
        std::memcpy(&d, bytes + 8 * i, 8);
        out[i] = static_cast<Scalar>(d);
      }
      break;
  }
}

/// Reads count elements of the given type at offset of file into out, converting to
/// Scalar. Matching encodings are read in place; others go through a bounded scratch
/// buffer so that converting a large tensor never needs a second full-size copy.
template <typename Scalar>
void read_elements(BinaryFile& file, std::uint64_t offset, ElementType type, std::size_t count,
                   Scalar* out, const std::string& what) {
  const std::size_t width = element_size(type);
  const bool same = (type == ElementType::F32 && std::is_same<Scalar, float>::value) ||
                    (type == ElementType::F64 && std::is_same<Scalar, double>::value);
  if (same) {
    file.read(offset, checked_mul(count, width, what), out, what);
    return;
  }
  constexpr std::size_t chunk = std::size_t(1) << 16;
  std::vector<char> scratch(std::min(count, chunk) * width);
  for (std::size_t done = 0; done < count;) {
    const std::size_t n = std::min(chunk, count - done);
    file.read(offset + done * width, n * width, scratch.data(), what);
    convert_elements(scratch.data(), type, n, out + done);
    done += n;
  }
}

}  // namespace detail
}  // namespace depass
