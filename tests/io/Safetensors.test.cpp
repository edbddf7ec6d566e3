// safetensors: element conversion (F16/BF16/F32/F64 to float and double, including the
// awkward values), header validation against hostile inputs, and the real TinyStories file.

#include <cmath>
#include <depass/io/Safetensors.hpp>
#include <filesystem>
#include <limits>

#include "IoTestHelpers.hpp"
#include "TestSupport.hpp"

using namespace depass;
using namespace depass::test;

namespace {

float float_from_bits(std::uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::uint32_t bits_of(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}

/// Exact comparison that also distinguishes -0 from +0 and accepts NaN == NaN.
template <typename T>
bool identical(T loaded, double expected) {
  if (std::isnan(expected)) return std::isnan(loaded);
  return loaded == static_cast<T>(expected) && std::signbit(loaded) == std::signbit(expected);
}

std::string one_tensor(const std::string& entry, const std::string& data) {
  return raw_safetensors("{\"t\":" + entry + "}", data);
}

}  // namespace

TEST_CASE("safetensors: half_to_float decodes every binary16 value", "[io][safetensors]") {
  const double inf = std::numeric_limits<double>::infinity();
  struct Case {
    std::uint16_t bits;
    double value;
  };
  const Case cases[] = {
      {0x0000, 0.0},
      {0x8000, -0.0},
      {0x0001, std::ldexp(1.0, -24)},  // smallest subnormal
      {0x8001, -std::ldexp(1.0, -24)},
      {0x03FF, 1023 * std::ldexp(1.0, -24)},  // largest subnormal
      {0x0400, std::ldexp(1.0, -14)},         // smallest normal
      {0x3C00, 1.0},
      {0x3C01, 1.0 + std::ldexp(1.0, -10)},
      {0xC000, -2.0},
      {0x3555, 0.333251953125},
      {0x7BFF, 65504.0},  // largest finite
      {0xFBFF, -65504.0},
      {0x7C00, inf},
      {0xFC00, -inf},
  };
  for (const Case& c : cases) {
    INFO("half bits 0x" << std::hex << c.bits);
    CHECK(identical(detail::half_to_float(c.bits), c.value));
  }
  // NaNs stay NaN, keep their sign and their payload (shifted into the float mantissa).
  CHECK(std::isnan(detail::half_to_float(0x7E00)));
  CHECK(std::isnan(detail::half_to_float(0x7C01)));  // signalling NaN does not become inf
  CHECK(std::signbit(detail::half_to_float(0xFE00)));
  CHECK(bits_of(detail::half_to_float(0x7E01)) == 0x7FC02000u);

#if defined(__FLT16_MANT_DIG__)
  // Where the compiler has a native binary16 type, compare all 65536 encodings with it.
  int mismatches = 0;
  for (std::uint32_t h = 0; h <= 0xFFFF; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    _Float16 native;
    std::memcpy(&native, &bits, 2);
    const float expected = static_cast<float>(native);
    const float got = detail::half_to_float(bits);
    const bool ok = std::isnan(expected) ? std::isnan(got) : bits_of(got) == bits_of(expected);
    if (!ok && ++mismatches <= 5) FAIL_CHECK("half 0x" << std::hex << h << " -> " << got);
  }
  CHECK(mismatches == 0);
#endif
}

TEST_CASE("safetensors: bf16_to_float is the top half of a float", "[io][safetensors]") {
  CHECK(detail::bf16_to_float(0x3F80) == 1.0f);
  CHECK(detail::bf16_to_float(0xC040) == -3.0f);
  CHECK(detail::bf16_to_float(0x4049) == 3.140625f);
  CHECK(bits_of(detail::bf16_to_float(0x8000)) == 0x80000000u);
  CHECK(detail::bf16_to_float(0x0001) == float_from_bits(0x00010000u));  // subnormal
  CHECK(std::isinf(detail::bf16_to_float(0x7F80)));
  CHECK(std::isnan(detail::bf16_to_float(0x7FC0)));
  for (std::uint32_t b = 0; b <= 0xFFFF; b += 257)
    CHECK(bits_of(detail::bf16_to_float(static_cast<std::uint16_t>(b))) == b << 16);
}

TEMPLATE_TEST_CASE("safetensors: F16, BF16, F32 and F64 tensors convert exactly",
                   "[io][safetensors]", DEPASS_TEST_SCALARS) {
  using T = TestType;
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const float tiny = std::numeric_limits<float>::denorm_min();

  // Values chosen to cover signed zero, subnormals, infinities and NaN in each encoding.
  const std::vector<std::uint16_t> f16 = {0x0000, 0x8000, 0x0001, 0x03FF, 0x3C00, 0xC000,
                                          0x7BFF, 0x7C00, 0xFC00, 0x7E00, 0x3555, 0x8001};
  const std::vector<double> f16_values = {
      0.0,  -0.0, std::ldexp(1.0, -24), 1023 * std::ldexp(1.0, -24), 1.0, -2.0, 65504.0, inf,
      -inf, nan,  0.333251953125,       -std::ldexp(1.0, -24)};
  const std::vector<std::uint16_t> bf16 = {0x3F80, 0xC040, 0x8000, 0x0001, 0x7F80, 0xFF80};
  const std::vector<double> bf16_values = {
      1.0, -3.0, -0.0, static_cast<double>(float_from_bits(0x00010000u)), inf, -inf};
  const std::vector<float> f32 = {0.1f, -0.0f, tiny, -tiny, static_cast<float>(inf), 3.5f};
  const std::vector<double> f64 = {0.1, -0.0, 1e-300, -2.5};

  TempDir dir;
  const std::string path =
      dir.write("conv.safetensors", safetensors_file({{"half", "F16", {3, 4}, u16_bytes(f16)},
                                                      {"brain", "BF16", {6}, u16_bytes(bf16)},
                                                      {"single", "F32", {2, 3}, f32_bytes(f32)},
                                                      {"double", "F64", {4}, f64_bytes(f64)}},
                                                     json{{"format", "pt"}}));
  const auto file = io::SafetensorsFile::open(path);
  CHECK(file.names() == std::vector<std::string>{"brain", "double", "half", "single"});
  CHECK(file.contains("half"));
  CHECK_FALSE(file.contains("__metadata__"));
  CHECK(file.metadata().at("format") == "pt");

  const auto& info = file.info("half");
  CHECK(info.dtype == "F16");
  CHECK(info.shape == std::vector<std::int64_t>{3, 4});
  CHECK(info.element_count == 12);
  CHECK(info.byte_size() == 24);

  const RowMatrix<T> h = file.matrix<T>("half");
  REQUIRE(h.rows() == 3);
  REQUIRE(h.cols() == 4);
  for (int k = 0; k < 12; ++k) {
    INFO("half element " << k);
    CHECK(identical(h(k / 4, k % 4), f16_values[k]));
  }

  const Vector<T> b = file.vector<T>("brain");
  REQUIRE(b.size() == 6);
  for (int k = 0; k < 6; ++k) {
    INFO("bf16 element " << k);
    CHECK(identical(b(k), bf16_values[k]));
  }

  const RowMatrix<T> s = file.matrix<T>("single", 2, 3);
  for (int k = 0; k < 6; ++k) {
    INFO("f32 element " << k);
    CHECK(identical(s(k / 3, k % 3), static_cast<double>(f32[k])));
  }

  const Vector<T> d = file.vector<T>("double", 4);
  for (int k = 0; k < 4; ++k) {
    INFO("f64 element " << k);
    // F64 -> float rounds to nearest (1e-300 underflows to 0); F64 -> double is exact.
    CHECK(identical(d(k), static_cast<double>(static_cast<T>(f64[k]))));
  }
  CHECK(d(0) == static_cast<T>(0.1));
}

TEST_CASE("safetensors: large tensors convert across scratch-buffer chunks", "[io][safetensors]") {
  // 200000 elements > the 65536-element conversion chunk.
  std::vector<std::uint16_t> bits(200000);
  for (std::size_t i = 0; i < bits.size(); ++i)
    bits[i] = static_cast<std::uint16_t>(0x3C00 + i % 1024);
  TempDir dir;
  const std::string path =
      dir.write("big.safetensors", safetensors_file({{"x", "F16", {400, 500}, u16_bytes(bits)}}));
  const auto m = io::SafetensorsFile::open(path).matrix<double>("x");
  bool all = true;
  for (std::size_t i = 0; i < bits.size(); ++i)
    all = all && m(static_cast<Eigen::Index>(i / 500), static_cast<Eigen::Index>(i % 500)) ==
                     1.0 + static_cast<double>(i % 1024) / 1024.0;
  CHECK(all);
}

TEST_CASE("safetensors: scalars, empty tensors and wrong ranks", "[io][safetensors]") {
  TempDir dir;
  const std::string path = dir.write(
      "misc.safetensors", safetensors_file({{"scalar", "F32", {}, f32_bytes({2.0f})},
                                            {"empty", "F32", {0, 5}, ""},
                                            {"vec", "F32", {2}, f32_bytes({1.0f, 2.0f})}}));
  const auto file = io::SafetensorsFile::open(path);
  CHECK(file.info("scalar").element_count == 1);
  const auto empty = file.matrix<float>("empty");
  CHECK(empty.rows() == 0);
  CHECK(empty.cols() == 5);
  CHECK_THAT(format_error([&] { file.matrix<float>("vec"); }),
             Contains("tensor 'vec' has shape [2], expected a 2-D matrix"));
  CHECK_THAT(format_error([&] { file.vector<float>("empty"); }),
             Contains("tensor 'empty' has shape [0, 5], expected a 1-D vector"));
  CHECK_THAT(format_error([&] { file.vector<float>("scalar"); }), Contains("has shape []"));
  CHECK_THAT(format_error([&] { file.vector<float>("vec", 3); }),
             Contains("tensor 'vec' has shape [2], expected [3]"));
  CHECK_THAT(format_error([&] { file.info("nope"); }),
             Contains("misc.safetensors") && Contains("no tensor named 'nope'"));
}

TEST_CASE("safetensors: hostile headers", "[io][safetensors][hostile]") {
  TempDir dir;
  auto open_error = [&](const std::string& bytes) {
    const std::string path = dir.write("bad.safetensors", bytes);
    return format_error([&] { io::SafetensorsFile::open(path); });
  };
  const std::string f32x2 = f32_bytes({1.0f, 2.0f});

  SECTION("file shorter than the length prefix") {
    CHECK_THAT(open_error("abc"), Contains("bad.safetensors") &&
                                      Contains("too small for the 8-byte safetensors header"));
  }
  SECTION("header length beyond the file") {
    std::string bytes;
    append_le<std::uint64_t>(bytes, 1000);
    bytes += "{}";
    CHECK_THAT(open_error(bytes),
               Contains("header length 1000 exceeds the 2 bytes that follow it"));
    bytes.clear();
    append_le<std::uint64_t>(bytes, ~std::uint64_t(0));
    CHECK_THAT(open_error(bytes + "{}"), Contains("exceeds the 2 bytes that follow it"));
  }
  SECTION("header length above the 100 MB limit, even when the file is that large") {
    std::string bytes;
    append_le<std::uint64_t>(bytes, 100000001);
    const std::string path = dir.write("huge.safetensors", bytes);
    std::filesystem::resize_file(path, 8 + 100000001 + 16);  // sparse: costs no disk
    CHECK_THAT(format_error([&] { io::SafetensorsFile::open(path); }),
               Contains("header length 100000001 exceeds the limit of 100000000 bytes"));
  }
  SECTION("header not JSON") {
    CHECK_THAT(open_error(raw_safetensors("{\"t\": [1, 2", "")),
               Contains("bad.safetensors: header: not valid JSON"));
    CHECK_THAT(open_error(raw_safetensors("\xff\xfe garbage", "")), Contains("not valid JSON"));
  }
  SECTION("header JSON but not an object") {
    CHECK_THAT(open_error(raw_safetensors("[1, 2]")), Contains("header must be a JSON object"));
    CHECK_THAT(open_error(raw_safetensors("{\"t\": 3}")),
               Contains("tensor 't': entry must be a JSON object"));
  }
  SECTION("missing or mistyped fields") {
    CHECK_THAT(open_error(one_tensor(R"({"shape":[2],"data_offsets":[0,8]})", f32x2)),
               Contains("tensor 't': missing 'dtype'"));
    CHECK_THAT(open_error(one_tensor(R"({"dtype":"F32","data_offsets":[0,8]})", f32x2)),
               Contains("tensor 't': missing 'shape'"));
    CHECK_THAT(open_error(one_tensor(R"({"dtype":"F32","shape":[2]})", f32x2)),
               Contains("tensor 't': missing 'data_offsets'"));
    CHECK_THAT(open_error(one_tensor(R"({"dtype":5,"shape":[2],"data_offsets":[0,8]})", f32x2)),
               Contains("dtype must be a string"));
    CHECK_THAT(open_error(one_tensor(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})", f32x2)),
               Contains("shape must be an array"));
    CHECK_THAT(
        open_error(one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4,8]})", f32x2)),
        Contains("data_offsets must be an array [begin, end]"));
    CHECK_THAT(
        open_error(one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":["0",8]})", f32x2)),
        Contains("data_offsets begin must be a non-negative integer"));
  }
  SECTION("data_offsets beyond the data") {
    CHECK_THAT(
        open_error(one_tensor(R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})", f32x2)),
        Contains("tensor 't': data_offsets [0, 16] reach beyond the 8-byte data section"));
    CHECK_THAT(open_error(one_tensor(
                   R"({"dtype":"F32","shape":[2],"data_offsets":[0,9223372036854775807]})", f32x2)),
               Contains("reach beyond the 8-byte data section"));
    CHECK_THAT(
        open_error(one_tensor(
            R"({"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,18446744073709551615]})",
            f32x2)),
        Contains("data_offsets begin must be a non-negative integer below 2^63"));
  }
  SECTION("data_offsets end before begin") {
    CHECK_THAT(open_error(one_tensor(R"({"dtype":"F32","shape":[0],"data_offsets":[8,0]})", f32x2)),
               Contains("data_offsets [8, 0] end before they begin"));
  }
  SECTION("byte range not matching shape and dtype") {
    CHECK_THAT(open_error(one_tensor(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})", f32x2)),
               Contains("data_offsets span 8 bytes but shape [3] of dtype F32 needs 12"));
    CHECK_THAT(open_error(one_tensor(R"({"dtype":"F16","shape":[2],"data_offsets":[0,8]})", f32x2)),
               Contains("shape [2] of dtype F16 needs 4"));
  }
  SECTION("negative or non-integer shape") {
    CHECK_THAT(
        open_error(one_tensor(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})", f32x2)),
        Contains("shape dimension must be a non-negative integer below 2^63, got number -2"));
    CHECK_THAT(
        open_error(one_tensor(R"({"dtype":"F32","shape":[2.5],"data_offsets":[0,8]})", f32x2)),
        Contains("shape dimension must be a non-negative integer"));
    CHECK_THAT(
        open_error(one_tensor(R"({"dtype":"F32","shape":[1e30],"data_offsets":[0,8]})", f32x2)),
        Contains("shape dimension must be a non-negative integer"));
  }
  SECTION("huge shapes overflow instead of allocating") {
    CHECK_THAT(
        open_error(one_tensor(
            R"({"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]})",
            f32x2)),
        Contains("has too many elements"));
    // 2^62 elements fit in 64 bits, their 2^64 bytes do not.
    CHECK_THAT(open_error(one_tensor(
                   R"({"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]})", f32x2)),
               Contains("has too many elements"));
    CHECK_THAT(open_error(one_tensor(
                   R"({"dtype":"F32","shape":[1099511627776],"data_offsets":[0,8]})", f32x2)),
               Contains("needs 4398046511104"));
  }
  SECTION("duplicate tensor names") {
    const std::string entry = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
    CHECK_THAT(open_error(raw_safetensors("{\"a\":" + entry + ",\"a\":" + entry + "}", f32x2)),
               Contains("bad.safetensors: header: duplicate key 'a'"));
  }
}

TEST_CASE("safetensors: unsupported dtypes are refused when read", "[io][safetensors][hostile]") {
  TempDir dir;
  const std::string path =
      dir.write("dtypes.safetensors",
                raw_safetensors(
                    R"({"q":{"dtype":"I8","shape":[4],"data_offsets":[0,4]},)"
                    R"("f8":{"dtype":"F8_E4M3","shape":[2,2],"data_offsets":[0,4]},)"
                    R"("odd":{"dtype":"Q4_K","shape":[1099511627776,1024],"data_offsets":[0,4]}})",
                    "abcd"));
  // Opening succeeds: a checkpoint may hold tensors we never need.
  const auto file = io::SafetensorsFile::open(path);
  CHECK_THAT(format_error([&] { file.vector<float>("q"); }),
             Contains("dtypes.safetensors") && Contains("unsupported dtype 'I8' for tensor 'q'"));
  CHECK_THAT(format_error([&] { file.matrix<double>("f8"); }),
             Contains("unsupported dtype 'F8_E4M3' for tensor 'f8'"));
  // An unknown dtype's shape is not bounded by the file; it must fail before allocating.
  CHECK_THAT(format_error([&] { file.matrix<double>("odd"); }),
             Contains("unsupported dtype 'Q4_K' for tensor 'odd'"));
  CHECK_THAT(format_error([&] { file.check("q", {4}); }), Contains("unsupported dtype 'I8'"));
}

TEST_CASE("safetensors: missing files are I/O errors naming the path", "[io][safetensors]") {
  TempDir dir;
  const std::string missing = dir.path("none.safetensors");
  CHECK_THAT(io_error([&] { io::SafetensorsFile::open(missing); }), Contains(missing));
}

TEST_CASE("safetensors: the real TinyStories-656K file", "[io][safetensors]") {
  DEPASS_REQUIRE_MODEL(path, "tinystories-656k/model.safetensors");
  const auto file = io::SafetensorsFile::open(path);
  CHECK(file.names().size() == 20);  // lm_head, 2 x 9 per layer, model.norm
  CHECK(file.contains("lm_head.weight"));
  CHECK_FALSE(file.contains("model.embed_tokens.weight"));
  CHECK(file.metadata().at("model.embed_tokens.weight") == "lm_head.weight");
  const auto& norm = file.info("model.norm.weight");
  CHECK(norm.dtype == "F32");
  CHECK(norm.shape == std::vector<std::int64_t>{128});

  // Independent read: header length, then the offsets as listed by the header (begin of
  // model.norm.weight is 2623488, of lm_head.weight 0).
  const std::uint64_t header = raw_u64_at(path, 0);
  CHECK(header == 2160);
  const std::uint64_t data = 8 + header;
  CHECK(norm.data_begin == 2623488);
  const auto v = file.vector<double>("model.norm.weight");
  CHECK(v(0) == static_cast<double>(raw_f32_at(path, data + 2623488)));
  CHECK(v(127) == static_cast<double>(raw_f32_at(path, data + 2623488 + 4 * 127)));
  const auto lm = file.matrix<float>("lm_head.weight");
  CHECK(lm(0, 0) == raw_f32_at(path, data));
  CHECK(lm(2047, 127) == raw_f32_at(path, data + 4 * (2048 * 128 - 1)));
}
