// The shared test helpers behave as documented.
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "TestSupport.hpp"

namespace fs = std::filesystem;

TEST_CASE("golden_path points into tests/golden", "[build][support]") {
  const std::string p = depass::test::golden_path("x.json");
  CHECK(fs::path(p).filename() == "x.json");
  CHECK(fs::path(p).parent_path().filename() == "golden");
  CHECK(fs::is_directory(depass::test::source_dir()));
}

TEST_CASE("model_dir honours the DEPASS_MODEL_DIR environment variable", "[build][support]") {
  const char* old = std::getenv("DEPASS_MODEL_DIR");
  const std::string saved = old ? old : "";
  ::setenv("DEPASS_MODEL_DIR", "/nonexistent/depass-models", 1);
  CHECK(depass::test::model_dir() == "/nonexistent/depass-models");
  CHECK(depass::test::model_path("a/b.bin") == "/nonexistent/depass-models/a/b.bin");
  if (old) ::setenv("DEPASS_MODEL_DIR", saved.c_str(), 1); else ::unsetenv("DEPASS_MODEL_DIR");
  CHECK(depass::test::model_dir() == (old ? saved : std::string(DEPASS_MODEL_DIR)));
}

TEST_CASE("models_required follows DEPASS_REQUIRE_MODELS", "[build][support]") {
  // What a missing model does end to end (skip with exit code 77, or fail) is checked by
  // the CTest tests "support:a missing model ..." (tests/support/expect_exit.cmake).
  const char* old = std::getenv("DEPASS_REQUIRE_MODELS");
  const std::string saved = old ? old : "";
  ::setenv("DEPASS_REQUIRE_MODELS", "1", 1);
  CHECK(depass::test::models_required());
  ::setenv("DEPASS_REQUIRE_MODELS", "0", 1);
  CHECK_FALSE(depass::test::models_required());
  ::unsetenv("DEPASS_REQUIRE_MODELS");
  CHECK_FALSE(depass::test::models_required());
  if (old) ::setenv("DEPASS_REQUIRE_MODELS", saved.c_str(), 1);
  CHECK(depass::test::kSkipExitCode == 77);
}

TEST_CASE("TempDir creates files and cleans up", "[build][support]") {
  std::string root;
  {
    depass::test::TempDir dir;
    root = dir.root();
    REQUIRE(fs::is_directory(root));
    const std::string a = dir.write("a.bin", std::string("\x00\x01\x02", 3));
    CHECK(fs::file_size(a) == 3);
    CHECK(depass::test::read_file(a) == std::string("\x00\x01\x02", 3));
    const std::string b = dir.write("sub/b.bin", std::vector<unsigned char>{0xff, 0xfe});
    CHECK(fs::file_size(b) == 2);
    CHECK(dir.path("sub/b.bin") == b);
    depass::test::TempDir other;
    CHECK(other.root() != dir.root());
  }
  CHECK_FALSE(fs::exists(root));
}
