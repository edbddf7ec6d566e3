#pragma once
// The legacy (v0) llama2.c checkpoint: a 28-byte header of seven int32 followed by f32
// arrays whose sizes follow from the header alone. Shared by the loader and by format
// detection, which asks whether a file's first 28 bytes look like such a header.

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../Config.hpp"
#include "../../Error.hpp"
#include "../File.hpp"
#include "BinaryFile.hpp"

namespace depass {
namespace detail {

constexpr std::size_t llama2c_header_size = 7 * sizeof(std::int32_t);

struct Llama2cHeader {
  Config config;
  bool shared_classifier = true;  // vocab_size > 0: the classifier is the embedding
};

/// Decodes and validates the header; FormatError naming the path and the bad field.
inline Llama2cHeader parse_llama2c_header(const char* bytes, const std::string& path) {
  ByteReader reader(bytes, llama2c_header_size, path);
  std::int32_t v[7];
  for (auto& value : v) value = reader.read<std::int32_t>("llama2.c header");
  const std::int32_t dim = v[0], hidden_dim = v[1], n_layers = v[2], n_heads = v[3],
                     n_kv_heads = v[4], vocab = v[5], seq_len = v[6];

  // The newer llama2.c export versions start with the magic "ak42" and a version number.
  if (std::memcmp(bytes, "ak42", 4) == 0)
    throw FormatError(path +
                      ": llama2.c versioned export ('ak42' magic) is not supported; only "
                      "the legacy header-plus-f32 format is");

  Llama2cHeader header;
  Config& cfg = header.config;
  cfg.architecture = "llama";
  cfg.dim = dim;
  cfg.hidden_dim = hidden_dim;
  cfg.n_layers = n_layers;
  cfg.n_heads = n_heads;
  cfg.n_kv_heads = n_kv_heads;
  // A negative vocab_size flags a separate classifier; widen first so INT32_MIN negates.
  const std::int64_t vocab_abs = vocab < 0 ? -static_cast<std::int64_t>(vocab) : vocab;
  header.shared_classifier = vocab > 0;
  if (vocab_abs > (std::int64_t(1) << 30))
    throw FormatError(path + ": implausible llama2.c header: vocab_size = " +
                      std::to_string(vocab) + " is out of range");
  cfg.vocab_size = static_cast<int>(vocab_abs);
  cfg.max_seq_len = seq_len;
  cfg.norm_eps = 1e-5;
  cfg.rope_theta = 10000.0;
  cfg.rope_layout = RopeLayout::AdjacentPairs;
  cfg.tied_embeddings = header.shared_classifier;

  // Divisibility first: an odd quotient would otherwise surface as a confusing
  // "head_dim must be even" from validate(). n_heads <= 0 is left to validate().
  if (dim > 0 && n_heads > 0 && dim % n_heads != 0)
    throw FormatError(path + ": implausible llama2.c header: n_heads (" + std::to_string(n_heads) +
                      ") does not divide dim (" + std::to_string(dim) + ")");
  cfg.head_dim = n_heads > 0 ? dim / n_heads : 0;
  try {
    cfg.validate();
  } catch (const std::invalid_argument& e) {
    throw FormatError(path + ": implausible llama2.c header: " + e.what());
  }
  return header;
}

/// One f32 array of the file, in file order.
struct Llama2cArray {
  std::string name;
  std::string shape;         // for messages, e.g. "[5, 64, 64]"
  std::uint64_t offset = 0;  // bytes from the start of the file
  std::uint64_t count = 0;   // f32 elements
  std::uint64_t end() const { return offset + count * sizeof(float); }
};

/// Every array the header implies, with its offset. Sizes use checked arithmetic even
/// though validate() bounds the fields, so a relaxed bound later cannot silently overflow.
inline std::vector<Llama2cArray> llama2c_layout(const Llama2cHeader& header,
                                                const std::string& path) {
  const Config& c = header.config;
  // All positive: parse_llama2c_header ran validate().
  auto u = [](int value) { return static_cast<std::uint64_t>(value); };
  const std::uint64_t D = u(c.dim), I = u(c.hidden_dim), L = u(c.n_layers), V = u(c.vocab_size),
                      Q = u(c.q_width()), K = u(c.kv_width()), S = u(c.max_seq_len),
                      half = u(c.head_dim / 2);
  std::vector<Llama2cArray> arrays;
  std::uint64_t offset = llama2c_header_size;
  auto add = [&](const char* name, std::vector<std::uint64_t> dims) {
    Llama2cArray a;
    a.name = name;
    a.count = 1;
    a.shape = "[";
    for (std::size_t i = 0; i < dims.size(); ++i) {
      a.count = checked_mul(a.count, dims[i], path + ": array '" + name + "'");
      a.shape += (i ? ", " : "") + std::to_string(dims[i]);
    }
    a.shape += "]";
    a.offset = offset;
    offset =
        checked_add(offset, checked_mul(a.count, sizeof(float), path + ": array '" + name + "'"),
                    path + ": array '" + name + "'");
    arrays.push_back(std::move(a));
  };
  add("token_embedding", {V, D});
  add("rms_att", {L, D});
  add("wq", {L, Q, D});
  add("wk", {L, K, D});
  add("wv", {L, K, D});
  add("wo", {L, D, Q});
  add("rms_ffn", {L, D});
  add("w1", {L, I, D});
  add("w2", {L, D, I});
  add("w3", {L, I, D});
  add("rms_final", {D});
  add("freq_cis_real", {S, half});  // precomputed RoPE tables: recomputed, never read
  add("freq_cis_imag", {S, half});
  if (!header.shared_classifier) add("wcls", {V, D});
  return arrays;
}

/// Checks that the file is exactly as long as the header implies, naming the first
/// array that does not fit (truncation) or the surplus (trailing bytes).
inline void check_llama2c_size(const std::vector<Llama2cArray>& arrays, std::uint64_t file_size,
                               const std::string& path) {
  for (const auto& a : arrays)
    if (a.end() > file_size)
      throw FormatError(path + ": truncated: array '" + a.name + "' (f32 " + a.shape +
                        ") needs bytes [" + std::to_string(a.offset) + ", " +
                        std::to_string(a.end()) + ") but the file has " +
                        std::to_string(file_size) + " bytes");
  const std::uint64_t expected = arrays.back().end();
  if (file_size > expected)
    throw FormatError(path + ": " + std::to_string(file_size - expected) +
                      " trailing bytes after the last array '" + arrays.back().name +
                      "' (the header implies " + std::to_string(expected) +
                      " bytes, the file has " + std::to_string(file_size) + ")");
}

/// Whether the file's first bytes form a plausible llama2.c header (used by detection).
inline bool looks_like_llama2c(const char* bytes, std::size_t size) {
  if (size < llama2c_header_size) return false;
  try {
    parse_llama2c_header(bytes, "");
    return true;
  } catch (const FormatError&) {
    return false;
  }
}

}  // namespace detail
}  // namespace depass
