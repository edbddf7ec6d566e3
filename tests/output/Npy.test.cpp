// depass::output NPY: the bytes we write are NumPy format 1.0 exactly as NumPy lays them
// out (header parsed here byte by byte, no Python needed); reading validates every part of
// the header and the data size; Fortran order is reordered; score arrays of documents
// have the documented shapes.

#include <catch2/catch.hpp>
#include <depass/Error.hpp>
#include <depass/output/Npy.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "support/TestSupport.hpp"

using namespace depass::output;

namespace {

/// The header dict of a v1.0 file, checking magic, version, length and alignment.
std::string header_of(const std::string& bytes) {
  REQUIRE(bytes.size() >= 10);
  CHECK(bytes.compare(0, 6, "\x93NUMPY", 6) == 0);
  CHECK(bytes[6] == 1);
  CHECK(bytes[7] == 0);
  const std::size_t len = static_cast<unsigned char>(bytes[8]) | (static_cast<std::size_t>(static_cast<unsigned char>(bytes[9])) << 8);
  CHECK((10 + len) % 64 == 0);  // NumPy aligns the data to 64 bytes
  REQUIRE(bytes.size() >= 10 + len);
  const std::string h = bytes.substr(10, len);
  CHECK(h.back() == '\n');
  return h;
}

std::string with_header(const std::string& dict, const std::string& data) {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(h.size() & 0xff);
  out += static_cast<char>(h.size() >> 8);
  return out + h + data;
}

std::string doubles(const std::vector<double>& v) {
  std::string s(v.size() * 8, '\0');
  std::memcpy(&s[0], v.data(), s.size());  // little-endian host (x86-64, aarch64)
  return s;
}

}  // namespace

TEST_CASE("npy: written headers are NumPy's format 1.0 dicts", "[output][npy]") {
  const NpyArray a = NpyArray::from({2, 3}, {1, 2, 3, 4, 5, 6});
  const std::string bytes = npy_bytes(a);
  const std::string h = header_of(bytes);
  CHECK(h.rfind("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 0) == 0);
  CHECK(bytes.size() == 128 + 6 * 8);
  double third = 0;
  std::memcpy(&third, bytes.data() + 128 + 2 * 8, 8);
  CHECK(third == 3.0);

  CHECK(header_of(npy_bytes(NpyArray::from({5}, {1, 2, 3, 4, 5}, NpyType::Float32))).find("'descr': '<f4'") != std::string::npos);
  CHECK(header_of(npy_bytes(NpyArray::from({5}, {1, 2, 3, 4, 5}))).find("'shape': (5,)") != std::string::npos);
  CHECK(header_of(npy_bytes(NpyArray::from({}, {7}))).find("'shape': ()") != std::string::npos);
  CHECK(header_of(npy_bytes(NpyArray::from({2, 0}, {}))).find("'shape': (2, 0)") != std::string::npos);
  CHECK_THROWS_AS(NpyArray::from({2, 2}, {1, 2, 3}), std::invalid_argument);
}

TEST_CASE("npy: round trips for float64, float32, int64 and files", "[output][npy]") {
  const std::vector<double> v = {0.1, -2.5, 1e300, std::numeric_limits<double>::denorm_min(), -0.0, 42};
  const NpyArray back = parse_npy(npy_bytes(NpyArray::from({3, 2}, v)));
  CHECK(back.shape == std::vector<std::size_t>{3, 2});
  CHECK(back.type == NpyType::Float64);
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(back.data[i] == v[i]);

  const NpyArray f = parse_npy(npy_bytes(NpyArray::from({2}, {0.1, 3.0}, NpyType::Float32)));
  CHECK(f.type == NpyType::Float32);
  CHECK(f.data[0] == static_cast<double>(0.1f));
  const NpyArray i = parse_npy(npy_bytes(NpyArray::from({3}, {-5, 0, 1e15}, NpyType::Int64)));
  CHECK(i.data == std::vector<double>{-5, 0, 1e15});

  depass::test::TempDir dir;
  Eigen::MatrixXd m(3, 4);
  m.setRandom();
  save_npy(dir.path("m.npy"), NpyArray::from_matrix(m));
  const Eigen::MatrixXd r = to_matrix<double>(load_npy(dir.path("m.npy")));
  CHECK(r == m);
  CHECK_THROWS_AS(to_matrix<double>(NpyArray::from({4}, {1, 2, 3, 4})), depass::FormatError);
  CHECK_THROWS_WITH(load_npy(dir.path("absent.npy")), Catch::Contains("no such file"));
}

TEST_CASE("npy: fortran_order True is reordered to C order", "[output][npy]") {
  // NumPy writes np.asfortranarray([[1,2,3],[4,5,6]]) column by column: 1 4 2 5 3 6.
  const std::string bytes =
      with_header("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", doubles({1, 4, 2, 5, 3, 6}));
  const NpyArray a = parse_npy(bytes);
  CHECK(a.data == std::vector<double>{1, 2, 3, 4, 5, 6});
  // 3-D: shape (2, 2, 2) in Fortran order.
  const std::string b3 = with_header("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2, 2), }",
                                     doubles({0, 4, 2, 6, 1, 5, 3, 7}));
  CHECK(parse_npy(b3).data == std::vector<double>{0, 1, 2, 3, 4, 5, 6, 7});
}

TEST_CASE("npy: malformed files are refused with clear messages", "[output][npy]") {
  const std::string good = npy_bytes(NpyArray::from({2, 2}, {1, 2, 3, 4}));
  auto fails = [](const std::string& bytes, const std::string& message) {
    INFO(message);
    CHECK_THROWS_AS(parse_npy(bytes, "x.npy"), depass::FormatError);
    CHECK_THROWS_WITH(parse_npy(bytes, "x.npy"), Catch::Contains(message) && Catch::Contains("x.npy"));
  };
  fails("", "missing the \\x93NUMPY magic");
  fails("PK\x03\x04 this is a zip", "missing the \\x93NUMPY magic");
  std::string v9 = good;
  v9[6] = 9;
  fails(v9, "unsupported .npy format version 9.0");
  fails(good.substr(0, 40), "header of 118 bytes is longer than the file");
  fails(good.substr(0, good.size() - 1), "truncated data: shape (2, 2) of <f8 needs 32 bytes, the file has 31");
  fails(good + "x", "trailing data");
  fails(with_header("{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }", doubles({1})), "unsupported dtype '>f8'");
  fails(with_header("{'descr': '<f2', 'fortran_order': False, 'shape': (1,), }", "ab"), "unsupported dtype '<f2'");
  fails(with_header("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }", doubles({1})), "expected a quoted string");
  fails(with_header("{'descr': '<f8', 'fortran_order': Maybe, 'shape': (1,), }", doubles({1})), "fortran_order must be True or False");
  fails(with_header("{'descr': '<f8', 'shape': (1,), }", doubles({1})), "must have the keys");
  fails(with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }", doubles({1})), "non-negative integers");
  fails(with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'extra': 1, }", doubles({1})), "unexpected key 'extra'");
  fails(with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", ""), "is too large");
  fails(with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (1,)", doubles({1})), "expected");
  // Version 2.0 (4-byte header length) is read too.
  std::string v2 = "\x93NUMPY\x02";
  v2 += '\0';
  const std::string dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }           \n";
  for (int b = 0; b < 4; ++b) v2 += static_cast<char>((dict.size() >> (8 * b)) & 0xff);
  CHECK(parse_npy(v2 + dict + doubles({3, 4})).data == std::vector<double>{3, 4});
}

TEST_CASE("npy: score arrays of documents have the documented shapes", "[output][npy]") {
  nlohmann::json tokens = {{"schema", "depass.tokens/1"}, {"scores", {1.0, 2.0, 3.0}}};
  CHECK(scores_array(tokens).shape == std::vector<std::size_t>{3});
  nlohmann::json heads = {{"schema", "depass.heads/1"}, {"n_heads", 2}, {"layers", {{{"heads", {1.0, 2.0}}}, {{"heads", {3.0, 4.0}}}, {{"heads", {5.0, 6.0}}}}}};
  const NpyArray h = scores_array(heads);
  CHECK(h.shape == std::vector<std::size_t>{3, 2});
  CHECK(h.data[3] == 4.0);
  nlohmann::json modules = {{"schema", "depass.modules/1"},
                            {"modules", {{{"score", 1.0}}, {{"score", 2.0}}, {{"score", 3.0}}, {{"score", 4.0}}}}};
  CHECK(scores_array(modules).shape == std::vector<std::size_t>{2, 2});
  nlohmann::json gen = {{"schema", "depass.generate/1"}, {"steps", {{{"scores", {1.0, 2.0}}}, {{"scores", {1.0, 2.0, 3.0}}}}}};
  const NpyArray g = scores_array(gen);
  CHECK(g.shape == std::vector<std::size_t>{2, 3});
  CHECK(std::isnan(g.data[2]));
  CHECK(g.data[5] == 3.0);
  CHECK_THROWS_WITH(scores_array({{"schema", "depass.info/1"}}), Catch::Contains("no score array"));
}

TEST_CASE("npy: a component tensor streams as M x N x D in C order", "[output][npy]") {
  depass::ComponentTensor<float> C(3, 2, 4);
  for (Eigen::Index m = 0; m < 3; ++m)
    for (Eigen::Index n = 0; n < 2; ++n)
      for (Eigen::Index d = 0; d < 4; ++d) C.component(m)(n, d) = static_cast<float>(100 * m + 10 * n + d);
  std::ostringstream out;
  write_components_npy(out, C);
  const NpyArray a = parse_npy(out.str());
  CHECK(a.shape == std::vector<std::size_t>{3, 2, 4});
  for (std::size_t m = 0; m < 3; ++m)
    for (std::size_t n = 0; n < 2; ++n)
      for (std::size_t d = 0; d < 4; ++d) CHECK(a.data[(m * 2 + n) * 4 + d] == static_cast<double>(100 * m + 10 * n + d));
}
