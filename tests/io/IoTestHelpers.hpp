#pragma once
// Builders for crafted checkpoint files and helpers that assert on specific error types.
// The builders write bytes directly (not through depass), so loader tests check the
// loaders against an independent description of each format.

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <depass/Error.hpp>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace depass {
namespace test {

using nlohmann::json;

/// Bytes from hex text as the golden files write them ("0aff" -> "\x0a\xff").
inline std::string from_hex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

// --- error assertions --------------------------------------------------------------------

/// The message of the depass::FormatError that f throws; fails the test otherwise.
inline std::string format_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const FormatError& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("expected depass::FormatError, got another exception: " << e.what());
  }
  FAIL("expected depass::FormatError, nothing was thrown");
  return {};
}

/// The message of a std::runtime_error that is *not* a FormatError (missing or unreadable
/// files); fails the test otherwise.
inline std::string io_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const FormatError& e) {
    FAIL("expected a plain std::runtime_error, got depass::FormatError: " << e.what());
  } catch (const std::runtime_error& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("expected std::runtime_error, got another exception: " << e.what());
  }
  FAIL("expected std::runtime_error, nothing was thrown");
  return {};
}

using Catch::Matchers::Contains;

// --- little-endian bytes ---------------------------------------------------------------------

template <typename T>
void append_le(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // the test hosts are little-endian, like the formats
  out.append(bytes, sizeof(T));
}

inline std::string f32_bytes(const std::vector<float>& values) {
  std::string out;
  for (float v : values) append_le(out, v);
  return out;
}
inline std::string f64_bytes(const std::vector<double>& values) {
  std::string out;
  for (double v : values) append_le(out, v);
  return out;
}
inline std::string u16_bytes(const std::vector<std::uint16_t>& values) {
  std::string out;
  for (std::uint16_t v : values) append_le(out, v);
  return out;
}

// --- safetensors -----------------------------------------------------------------------------

/// 8-byte header length, header text, data: for hand-written (possibly hostile) headers.
inline std::string raw_safetensors(const std::string& header, const std::string& data = "") {
  std::string out;
  append_le<std::uint64_t>(out, header.size());
  return out + header + data;
}

struct StTensor {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::string bytes;
};

/// A well-formed safetensors file holding the tensors back to back in the given order.
inline std::string safetensors_file(const std::vector<StTensor>& tensors,
                                    const json& metadata = nullptr) {
  json header = json::object();
  std::string data;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  if (!metadata.is_null()) header["__metadata__"] = metadata;
  return raw_safetensors(header.dump(), data);
}

// --- llama2.c ------------------------------------------------------------------------------------

struct Llama2cShape {
  int dim = 8, hidden_dim = 12, n_layers = 2, n_heads = 2, n_kv_heads = 1, vocab_size = 10,
      seq_len = 4;
};

/// Number of f32 values after the header (including freq_cis and, if vocab_size < 0, wcls).
inline std::size_t llama2c_float_count(const Llama2cShape& s) {
  const std::size_t D = s.dim, I = s.hidden_dim, L = s.n_layers,
                    V = static_cast<std::size_t>(s.vocab_size < 0 ? -s.vocab_size : s.vocab_size);
  const std::size_t hd = D / s.n_heads, Q = s.n_heads * hd, K = s.n_kv_heads * hd;
  std::size_t n = V * D + L * D + L * Q * D + 2 * L * K * D + L * D * Q + L * D + 3 * L * I * D +
                  D + 2 * s.seq_len * (hd / 2);
  if (s.vocab_size < 0) n += V * D;
  return n;
}

/// The 28-byte header alone.
inline std::string llama2c_header(const Llama2cShape& s) {
  std::string out;
  for (int v : {s.dim, s.hidden_dim, s.n_layers, s.n_heads, s.n_kv_heads, s.vocab_size, s.seq_len})
    append_le<std::int32_t>(out, v);
  return out;
}

/// A complete file whose k-th float (counting from the first after the header) is k, so
/// every loaded weight reveals the position it was read from.
inline std::string llama2c_file(const Llama2cShape& s) {
  std::string out = llama2c_header(s);
  const std::size_t n = llama2c_float_count(s);
  for (std::size_t k = 0; k < n; ++k) append_le(out, static_cast<float>(k));
  return out;
}

// --- raw reads of real files (independent of the loaders) -------------------------------------

inline float raw_f32_at(const std::string& path, std::uint64_t offset) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  in.seekg(static_cast<std::streamoff>(offset));
  float value = 0;
  in.read(reinterpret_cast<char*>(&value), sizeof value);
  REQUIRE(in);
  return value;
}

inline std::uint64_t raw_u64_at(const std::string& path, std::uint64_t offset) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  in.seekg(static_cast<std::streamoff>(offset));
  std::uint64_t value = 0;
  in.read(reinterpret_cast<char*>(&value), sizeof value);
  REQUIRE(in);
  return value;
}

}  // namespace test
}  // namespace depass
