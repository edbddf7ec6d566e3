#pragma once
// A small GGUF writer for tests: builds files byte by byte from an independent description
// of the format (not through depass), with hooks to write hostile ones: wrong counts,
// chosen tensor offsets, raw metadata payloads, and the offsets of each section so a test
// can cut the file anywhere.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace depass {
namespace test {

namespace gguf {

// Metadata value types and ggml tensor types, as numbered by ggml.
enum ValueType : std::uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};
enum TensorType : std::uint32_t {
  T_F32 = 0,
  T_F16 = 1,
  T_Q4_0 = 2,
  T_Q4_1 = 3,
  T_Q5_0 = 6,
  T_Q5_1 = 7,
  T_Q8_0 = 8,
  T_Q2_K = 10,
  T_Q3_K = 11,
  T_Q4_K = 12,
  T_Q5_K = 13,
  T_Q6_K = 14,
  T_Q8_K = 15,
  T_IQ2_XXS = 16,
  T_IQ4_NL = 20,
  T_IQ4_XS = 23,
  T_BF16 = 30,
};

template <typename T>
void put(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // test hosts are little-endian, like the format
  out.append(bytes, sizeof(T));
}

inline std::string str(const std::string& s) {
  std::string out;
  put<std::uint64_t>(out, s.size());
  return out + s;
}

/// One key/value: `payload` is everything after the u32 type.
struct Kv {
  std::string key;
  std::uint32_t type;
  std::string payload;
};

template <typename T>
inline Kv scalar(const std::string& key, std::uint32_t type, T value) {
  Kv kv{key, type, {}};
  put(kv.payload, value);
  return kv;
}
inline Kv u32(const std::string& key, std::uint32_t v) { return scalar(key, U32, v); }
inline Kv i32(const std::string& key, std::int32_t v) { return scalar(key, I32, v); }
inline Kv u64(const std::string& key, std::uint64_t v) { return scalar(key, U64, v); }
inline Kv f32(const std::string& key, float v) { return scalar(key, F32, v); }
inline Kv f64(const std::string& key, double v) { return scalar(key, F64, v); }
inline Kv boolean(const std::string& key, bool v) {
  return scalar(key, BOOL, static_cast<std::uint8_t>(v));
}
inline Kv string(const std::string& key, const std::string& v) { return Kv{key, STRING, str(v)}; }

/// Array payload: item type, count, then `items` (already encoded).
inline std::string array_payload(std::uint32_t item_type, std::uint64_t count,
                                 const std::string& items) {
  std::string out;
  put(out, item_type);
  put(out, count);
  return out + items;
}
inline Kv strings(const std::string& key, const std::vector<std::string>& v) {
  std::string items;
  for (const auto& s : v) items += str(s);
  return Kv{key, ARRAY, array_payload(STRING, v.size(), items)};
}
inline Kv f32s(const std::string& key, const std::vector<float>& v) {
  std::string items;
  for (float x : v) put(items, x);
  return Kv{key, ARRAY, array_payload(F32, v.size(), items)};
}
inline Kv i32s(const std::string& key, const std::vector<std::int32_t>& v) {
  std::string items;
  for (std::int32_t x : v) put(items, x);
  return Kv{key, ARRAY, array_payload(I32, v.size(), items)};
}

struct Tensor {
  std::string name;
  std::vector<std::uint64_t> ne;  // ggml order: ne[0] is the row length
  std::uint32_t type = T_F32;
  std::string data;
  std::int64_t offset = -1;  // relative to the data section; -1: next aligned slot
};

/// Where the sections of a built file start and end.
struct Layout {
  std::size_t kv_begin = 0, kv_end = 0, infos_end = 0, data_begin = 0, size = 0;
  std::vector<std::size_t> kv_offsets, info_offsets, tensor_offsets;  // absolute
};

struct File {
  std::uint32_t version = 3;
  std::vector<Kv> kvs;
  std::vector<Tensor> tensors;
  std::uint64_t alignment = 32;    // layout only: write general.alignment yourself
  std::int64_t tensor_count = -1;  // override the written counts
  std::int64_t kv_count = -1;
  std::string magic = "GGUF";

  File& kv(Kv entry) {
    kvs.push_back(std::move(entry));
    return *this;
  }
  File& tensor(Tensor t) {
    tensors.push_back(std::move(t));
    return *this;
  }
  Kv* find_kv(const std::string& key) {
    for (Kv& kv : kvs)
      if (kv.key == key) return &kv;
    return nullptr;
  }
  void erase_kv(const std::string& key) {
    for (std::size_t i = 0; i < kvs.size(); ++i)
      if (kvs[i].key == key) {
        kvs.erase(kvs.begin() + static_cast<std::ptrdiff_t>(i));
        return;
      }
  }
  Tensor* find_tensor(const std::string& name) {
    for (Tensor& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
  void erase_tensor(const std::string& name) {
    for (std::size_t i = 0; i < tensors.size(); ++i)
      if (tensors[i].name == name) {
        tensors.erase(tensors.begin() + static_cast<std::ptrdiff_t>(i));
        return;
      }
  }

  std::string build(Layout* layout = nullptr) const {
    Layout l;
    std::string out = magic;
    put(out, version);
    put<std::uint64_t>(
        out, tensor_count >= 0 ? static_cast<std::uint64_t>(tensor_count) : tensors.size());
    put<std::uint64_t>(out, kv_count >= 0 ? static_cast<std::uint64_t>(kv_count) : kvs.size());
    l.kv_begin = out.size();
    for (const Kv& kv : kvs) {
      l.kv_offsets.push_back(out.size());
      out += str(kv.key);
      put(out, kv.type);
      out += kv.payload;
    }
    l.kv_end = out.size();
    auto pad = [&](std::uint64_t n) { return (alignment - n % alignment) % alignment; };
    std::vector<std::uint64_t> offsets;
    std::uint64_t next = 0;
    for (const Tensor& t : tensors) {
      const std::uint64_t at = t.offset >= 0 ? static_cast<std::uint64_t>(t.offset) : next;
      offsets.push_back(at);
      next = std::max<std::uint64_t>(next, at + t.data.size());
      next += pad(next);
    }
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const Tensor& t = tensors[i];
      l.info_offsets.push_back(out.size());
      out += str(t.name);
      put<std::uint32_t>(out, static_cast<std::uint32_t>(t.ne.size()));
      for (std::uint64_t d : t.ne) put(out, d);
      put(out, t.type);
      put(out, offsets[i]);
    }
    l.infos_end = out.size();
    out.append(pad(out.size()), '\0');
    l.data_begin = out.size();
    std::string data;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const std::size_t at = static_cast<std::size_t>(offsets[i]);
      if (data.size() < at + tensors[i].data.size()) data.resize(at + tensors[i].data.size(), '\0');
      data.replace(at, tensors[i].data.size(), tensors[i].data);
      l.tensor_offsets.push_back(l.data_begin + at);
    }
    out += data;
    l.size = out.size();
    if (layout) *layout = l;
    return out;
  }
};

inline std::string f32_data(const std::vector<float>& values) {
  std::string out;
  for (float v : values) put(out, v);
  return out;
}

// --- half precision and the simplest quantisations, for building test files ---------------

/// IEEE binary16 nearest to f (ties to even), for finite f within the half range.
inline std::uint16_t float_to_half(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const std::uint16_t sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const float a = f < 0 ? -f : f;
  if (a < 6.103515625e-05f) {  // below 2^-14: a subnormal half, a multiple of 2^-24
    const float units = a * 16777216.0f;  // exact (power of two scaling)
    const auto q = static_cast<std::uint32_t>(std::nearbyint(units));  // ties to even
    return static_cast<std::uint16_t>(sign | q);  // q == 1024 is 2^-14, the next normal
  }
  std::uint32_t m = bits & 0x7FFFFFu;
  std::uint32_t e = ((bits >> 23) & 0xFFu) - 127 + 15;
  const std::uint32_t rest = m & 0x1FFFu, half_way = 0x1000u;
  m >>= 13;
  if (rest > half_way || (rest == half_way && (m & 1u))) ++m;
  if (m == 0x400u) {
    m = 0;
    ++e;
  }
  return static_cast<std::uint16_t>(sign | (e << 10) | m);
}

inline float half_to_float_exact(std::uint16_t h) {
  const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
  const float v = e == 0 ? std::ldexp(static_cast<float>(m), -24)
                         : std::ldexp(static_cast<float>(m | 0x400), e - 25);
  return (h & 0x8000) ? -v : v;
}

/// Q8_0 blocks of values (a multiple of 32), as tools/reference/ggml_quants.py quantises:
/// d = f16(max |x| / 127), q = round-half-even(x / d) clipped to [-127, 127].
inline std::string quantize_q8_0(const float* x, std::size_t n) {
  std::string out;
  for (std::size_t b = 0; b < n; b += 32) {
    float amax = 0;
    for (std::size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b + j]));
    const std::uint16_t h = float_to_half(amax / 127.0f);
    const float d = half_to_float_exact(h);
    put(out, h);
    for (std::size_t j = 0; j < 32; ++j) {
      const float q = d != 0 ? std::nearbyint(x[b + j] / d) : 0.0f;
      put(out, static_cast<std::int8_t>(std::max(-127.0f, std::min(127.0f, q))));
    }
  }
  return out;
}

/// Q4_0 blocks: d = f16(signed max-magnitude value / -8), q = round(x / d) + 8 in [0, 15];
/// element j in the low nibble of byte j, element j + 16 in its high nibble.
inline std::string quantize_q4_0(const float* x, std::size_t n) {
  std::string out;
  for (std::size_t b = 0; b < n; b += 32) {
    float peak = 0;
    for (std::size_t j = 0; j < 32; ++j)
      if (std::fabs(x[b + j]) > std::fabs(peak)) peak = x[b + j];
    const std::uint16_t h = float_to_half(peak / -8.0f);
    const float d = half_to_float_exact(h);
    put(out, h);
    auto q = [&](std::size_t j) {
      const float v = d != 0 ? std::nearbyint(x[b + j] / d) + 8 : 8.0f;
      return static_cast<unsigned>(std::max(0.0f, std::min(15.0f, v)));
    };
    for (std::size_t j = 0; j < 16; ++j) put(out, static_cast<std::uint8_t>(q(j) | (q(j + 16) << 4)));
  }
  return out;
}

// --- a tiny llama model -------------------------------------------------------------------

struct Shape {
  int dim = 32, n_layers = 2, n_heads = 4, n_kv_heads = 2, hidden = 64, vocab = 16, context = 32;
  int head_dim() const { return dim / n_heads; }
};

/// Value k of the whole model (counting tensor by tensor in the order they are added):
/// small integers times 1/8, exact in F32, F16 and BF16, so a loaded weight reveals where
/// it was read from.
inline float tiny_value(std::size_t k) { return static_cast<float>(k % 251) / 8.0f - 15.0f; }

/// A complete F32 llama GGUF of the given shape with a 16-token SentencePiece vocabulary.
inline File tiny_llama(const Shape& s = Shape(), bool untied = false) {
  File f;
  f.kv(string("general.architecture", "llama"))
      .kv(string("general.name", "tiny"))
      .kv(u32("llama.context_length", static_cast<std::uint32_t>(s.context)))
      .kv(u32("llama.embedding_length", static_cast<std::uint32_t>(s.dim)))
      .kv(u32("llama.block_count", static_cast<std::uint32_t>(s.n_layers)))
      .kv(u32("llama.feed_forward_length", static_cast<std::uint32_t>(s.hidden)))
      .kv(u32("llama.attention.head_count", static_cast<std::uint32_t>(s.n_heads)))
      .kv(u32("llama.attention.head_count_kv", static_cast<std::uint32_t>(s.n_kv_heads)))
      .kv(u32("llama.rope.dimension_count", static_cast<std::uint32_t>(s.head_dim())))
      .kv(f32("llama.attention.layer_norm_rms_epsilon", 1e-5f))
      .kv(string("tokenizer.ggml.model", "llama"));
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  for (int i = 3; i < s.vocab; ++i) tokens.push_back("t" + std::to_string(i));
  f.kv(strings("tokenizer.ggml.tokens", tokens))
      .kv(f32s("tokenizer.ggml.scores", std::vector<float>(tokens.size(), 0.0f)));

  std::size_t k = 0;
  auto add = [&](const std::string& name, std::vector<std::uint64_t> ne) {
    std::size_t n = 1;
    for (auto d : ne) n *= static_cast<std::size_t>(d);
    std::vector<float> values(n);
    for (auto& v : values) v = tiny_value(k++);
    f.tensor(Tensor{name, std::move(ne), T_F32, f32_data(values), -1});
  };
  const auto D = static_cast<std::uint64_t>(s.dim), I = static_cast<std::uint64_t>(s.hidden),
             V = static_cast<std::uint64_t>(s.vocab),
             Q = static_cast<std::uint64_t>(s.n_heads * s.head_dim()),
             K = static_cast<std::uint64_t>(s.n_kv_heads * s.head_dim());
  add("token_embd.weight", {D, V});
  for (int l = 0; l < s.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", {D});
    add(p + "attn_q.weight", {D, Q});
    add(p + "attn_k.weight", {D, K});
    add(p + "attn_v.weight", {D, K});
    add(p + "attn_output.weight", {Q, D});
    add(p + "ffn_norm.weight", {D});
    add(p + "ffn_gate.weight", {D, I});
    add(p + "ffn_up.weight", {D, I});
    add(p + "ffn_down.weight", {I, D});
  }
  add("output_norm.weight", {D});
  if (untied) add("output.weight", {D, V});
  return f;
}

}  // namespace gguf
}  // namespace test
}  // namespace depass
