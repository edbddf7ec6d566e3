#pragma once
// llama2.c checkpoints, the three layouts of llama2.c's export.py. Shared by the loader
// and by format detection, which asks whether a file's first bytes look like a header.
//
//   v0 (legacy, run.c):  7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
//                        vocab_size, seq_len; vocab_size < 0 flags a separate classifier),
//                        then f32 arrays: token embedding, per-layer kinds stacked over
//                        layers (rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3), rms_final,
//                        the RoPE tables freq_cis_real/imag (never read), [wcls].
//   v1 (f32) and v2 (int8): a 256-byte header: u32 magic 0x616b3432 ("ak42" read as a
//                        little-endian number, so the bytes are "24ka"), int32 version, the
//                        7 int32 above (vocab_size > 0), u8 shared_classifier, and in v2 an
//                        int32 group_size at byte 37; zero padding.
//     v1 data:  rms_att, rms_ffn, rms_final, token embedding, wq, wk, wv, wo, w1, w2, w3,
//               [wcls], all f32, no RoPE tables.
//     v2 data:  rms_att, rms_ffn, rms_final as f32; then token embedding, wq.., w3, [wcls],
//               each tensor (each layer's separately) as int8 values followed by one f32
//               scale per group of group_size consecutive values: w = q * scale
//               (runq.c's "Q8_0"). export.py halves group_size until it divides dim.

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

constexpr std::size_t llama2c_header_size = 7 * sizeof(std::int32_t);  // v0
constexpr std::size_t llama2c_versioned_header_size = 256;             // v1, v2
constexpr std::uint32_t llama2c_magic = 0x616b3432;

struct Llama2cHeader {
  Config config;
  bool shared_classifier = true;  // the classifier is the token embedding
  int version = 0;                // 0 (legacy), 1 or 2
  int group_size = 0;             // v2: values per f32 scale
  std::uint64_t data_offset = llama2c_header_size;
};

inline bool llama2c_versioned(const char* bytes, std::size_t size) {
  std::uint32_t magic = 0;
  if (size >= 4) std::memcpy(&magic, bytes, 4);
  return size >= 4 && magic == llama2c_magic;
}

/// The Config of the 7 header ints (vocab_size already made positive).
inline Config llama2c_config(const std::int32_t v[7], std::int32_t vocab, const std::string& path) {
  const std::int32_t dim = v[0], n_heads = v[3];
  Config cfg;
  cfg.architecture = "llama";
  cfg.dim = dim;
  cfg.hidden_dim = v[1];
  cfg.n_layers = v[2];
  cfg.n_heads = n_heads;
  cfg.n_kv_heads = v[4];
  cfg.vocab_size = vocab;
  cfg.max_seq_len = v[6];
  cfg.norm_eps = 1e-5;
  cfg.rope_theta = 10000.0;
  cfg.rope_layout = RopeLayout::AdjacentPairs;
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
  return cfg;
}

/// The legacy (v0) header: 28 bytes.
inline Llama2cHeader parse_llama2c_v0_header(const char* bytes, const std::string& path) {
  ByteReader reader(bytes, llama2c_header_size, path);
  std::int32_t v[7];
  for (auto& value : v) value = reader.read<std::int32_t>("llama2.c header");
  const std::int32_t vocab = v[5];
  // A negative vocab_size flags a separate classifier; widen first so INT32_MIN negates.
  const std::int64_t vocab_abs = vocab < 0 ? -static_cast<std::int64_t>(vocab) : vocab;
  if (vocab_abs > (std::int64_t(1) << 30))
    throw FormatError(path + ": implausible llama2.c header: vocab_size = " +
                      std::to_string(vocab) + " is out of range");
  Llama2cHeader header;
  header.shared_classifier = vocab > 0;
  header.config = llama2c_config(v, static_cast<std::int32_t>(vocab_abs), path);
  header.config.tied_embeddings = header.shared_classifier;
  return header;
}

/// The v1/v2 header: the first 41 bytes of the 256 (the rest is padding).
inline Llama2cHeader parse_llama2c_versioned_header(const char* bytes, std::size_t size,
                                                    const std::string& path) {
  if (size < llama2c_versioned_header_size)
    throw FormatError(path + ": truncated: " + std::to_string(size) +
                      "-byte file is too short for the 256-byte header of a versioned llama2.c "
                      "export ('ak42' magic)");
  ByteReader reader(bytes + 4, llama2c_versioned_header_size - 4, path);
  const auto version = reader.read<std::int32_t>("llama2.c version");
  if (version != 1 && version != 2)
    throw FormatError(path + ": llama2.c export version " + std::to_string(version) +
                      " is not supported (supported: 1 = float32, 2 = int8 with grouped scales, "
                      "and the legacy headerless format)");
  std::int32_t v[7];
  for (auto& value : v) value = reader.read<std::int32_t>("llama2.c header");
  if (v[5] <= 0)
    throw FormatError(path + ": implausible llama2.c header: vocab_size = " + std::to_string(v[5]) +
                      " must be positive in a versioned export (the shared-classifier flag is "
                      "byte 36)");
  const auto shared = reader.read<std::uint8_t>("llama2.c shared_classifier flag");
  if (shared > 1)
    throw FormatError(path + ": llama2.c shared_classifier flag (byte 36) is " +
                      std::to_string(shared) + ", expected 0 or 1");
  Llama2cHeader header;
  header.version = version;
  header.shared_classifier = shared == 1;
  header.data_offset = llama2c_versioned_header_size;
  header.config = llama2c_config(v, v[5], path);
  header.config.tied_embeddings = header.shared_classifier;
  if (version == 2) {
    header.group_size = reader.read<std::int32_t>("llama2.c group_size");
    if (header.group_size <= 0 || header.config.dim % header.group_size != 0)
      throw FormatError(path + ": llama2.c v2 group_size " + std::to_string(header.group_size) +
                        " must be positive and divide dim (" + std::to_string(header.config.dim) +
                        "), as export.py makes it");
  }
  return header;
}

/// Decodes and validates the header of any version; FormatError naming the path and the
/// bad field. `size` is how many bytes `bytes` holds (at most the header is read).
inline Llama2cHeader parse_llama2c_header(const char* bytes, std::size_t size,
                                          const std::string& path) {
  if (llama2c_versioned(bytes, size)) return parse_llama2c_versioned_header(bytes, size, path);
  if (size < llama2c_header_size)
    throw FormatError(path + ": truncated: " + std::to_string(size) +
                      "-byte file is too short for the 28-byte llama2.c header");
  return parse_llama2c_v0_header(bytes, path);
}

/// One array of the file, in file order: `slices` consecutive slices (one per layer for the
/// per-layer kinds), each `count` values. F32 slices are 4 bytes a value; Int8 slices (v2)
/// are `count` int8 values followed by count / group_size f32 scales.
struct Llama2cArray {
  enum class Encoding { F32, Int8 };
  std::string name;
  std::string shape;         // for messages, e.g. "[5, 64, 64]"
  std::uint64_t offset = 0;  // bytes from the start of the file
  bool layered = false;      // one slice per layer
  std::uint64_t slices = 1;
  std::uint64_t count = 0;   // values per slice
  Encoding encoding = Encoding::F32;
  std::uint64_t group_size = 0;  // Int8
  std::uint64_t slice_bytes() const {
    return encoding == Encoding::F32 ? count * 4 : count + count / group_size * 4;
  }
  std::uint64_t end() const { return offset + slices * slice_bytes(); }
  std::string encoding_name() const {
    return encoding == Encoding::F32
               ? "f32"
               : "int8 + f32 scale per " + std::to_string(group_size) + " values";
  }
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
  std::uint64_t offset = header.data_offset;
  const bool int8 = header.version == 2;
  // `layered`: one slice per layer, dims are those of a slice.
  auto add = [&](const char* name, bool layered, std::vector<std::uint64_t> dims, bool matrix) {
    const std::string what = path + ": array '" + name + "'";
    Llama2cArray a;
    a.name = name;
    a.layered = layered;
    a.slices = layered ? L : 1;
    a.count = 1;
    a.shape = "[";
    if (layered) a.shape += std::to_string(L) + ", ";
    for (std::size_t i = 0; i < dims.size(); ++i) {
      a.count = checked_mul(a.count, dims[i], what);
      a.shape += (i ? ", " : "") + std::to_string(dims[i]);
    }
    a.shape += "]";
    if (int8 && matrix) {
      a.encoding = Llama2cArray::Encoding::Int8;
      a.group_size = static_cast<std::uint64_t>(header.group_size);
    }
    checked_mul(checked_mul(a.count, 4, what), a.slices, what);
    a.offset = offset;
    offset = checked_add(offset, a.slices * a.slice_bytes(), what);
    arrays.push_back(std::move(a));
  };
  if (header.version == 0) {
    add("token_embedding", false, {V, D}, true);
    add("rms_att", true, {D}, false);
    add("wq", true, {Q, D}, true);
    add("wk", true, {K, D}, true);
    add("wv", true, {K, D}, true);
    add("wo", true, {D, Q}, true);
    add("rms_ffn", true, {D}, false);
    add("w1", true, {I, D}, true);
    add("w2", true, {D, I}, true);
    add("w3", true, {I, D}, true);
    add("rms_final", false, {D}, false);
    add("freq_cis_real", false, {S, half}, false);  // precomputed RoPE tables: never read
    add("freq_cis_imag", false, {S, half}, false);
  } else {
    add("rms_att", true, {D}, false);
    add("rms_ffn", true, {D}, false);
    add("rms_final", false, {D}, false);
    add("token_embedding", false, {V, D}, true);
    add("wq", true, {Q, D}, true);
    add("wk", true, {K, D}, true);
    add("wv", true, {K, D}, true);
    add("wo", true, {D, Q}, true);
    add("w1", true, {I, D}, true);
    add("w2", true, {D, I}, true);
    add("w3", true, {I, D}, true);
  }
  if (!header.shared_classifier) add("wcls", false, {V, D}, true);
  return arrays;
}

/// Checks that the file is exactly as long as the header implies, naming the first
/// array that does not fit (truncation) or the surplus (trailing bytes).
inline void check_llama2c_size(const std::vector<Llama2cArray>& arrays, std::uint64_t file_size,
                               const std::string& path) {
  for (const auto& a : arrays)
    if (a.end() > file_size)
      throw FormatError(path + ": truncated: array '" + a.name + "' (" + a.encoding_name() + " " + a.shape +
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

/// Whether the file's first bytes form a plausible llama2.c header of any version (used by
/// detection). A versioned magic alone is enough: loading then says what is wrong.
inline bool looks_like_llama2c(const char* bytes, std::size_t size) {
  if (llama2c_versioned(bytes, size)) return true;
  if (size < llama2c_header_size) return false;
  try {
    parse_llama2c_v0_header(bytes, "");
    return true;
  } catch (const FormatError&) {
    return false;
  }
}

}  // namespace detail
}  // namespace depass
