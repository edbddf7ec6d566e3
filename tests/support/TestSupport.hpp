#pragma once
// Helpers shared by all depass tests: where the models and golden files live, skipping
// tests whose model is not present, and scratch directories for crafted files.
//
//   #include "TestSupport.hpp"
//
//   TEST_CASE("loads stories260K") {
//     DEPASS_REQUIRE_MODEL(path, "stories260K/stories260K.bin");  // std::string path
//     ...
//   }
//
// A missing model skips the test case: the test process (support/catch_main.cpp) then
// exits with kSkipExitCode, which CTest reports as "Skipped" (SKIP_RETURN_CODE), never as
// passed. With DEPASS_REQUIRE_MODELS=1 (make test, CI) the suite is meant to be complete
// and a missing model fails the test instead.

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <depass/Threads.hpp>

#include "TestSkip.hpp"

// The Scalar types of every TEMPLATE_TEST_CASE. The sanitizer build defines
// DEPASS_TEST_DOUBLE_ONLY: float runs the same templates (only Eigen's packet width
// differs), and compiling each engine test once instead of twice is what keeps
// `make sanitize` within CI's time (docs/robustness.md). The Release suite tests both.
#ifdef DEPASS_TEST_DOUBLE_ONLY
#define DEPASS_TEST_SCALARS double
#else
#define DEPASS_TEST_SCALARS float, double
#endif

// Normally set by tests/CMakeLists.txt; the fallbacks keep the header usable elsewhere.
#ifndef DEPASS_SOURCE_DIR
#define DEPASS_SOURCE_DIR "."
#endif
#ifndef DEPASS_GOLDEN_DIR
#define DEPASS_GOLDEN_DIR DEPASS_SOURCE_DIR "/tests/golden"
#endif
#ifndef DEPASS_MODEL_DIR
#define DEPASS_MODEL_DIR DEPASS_SOURCE_DIR "/models"
#endif

namespace depass::test {

/// The library's thread setting for a scope (tests run on one thread unless they say).
class ThreadCount {
 public:
  explicit ThreadCount(int count) : before_(threads()) { set_threads(count); }
  ~ThreadCount() { set_threads(before_); }
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;

 private:
  int before_;
};

/// Root of the depass source tree.
inline std::string source_dir() { return DEPASS_SOURCE_DIR; }

/// Directory holding the test models (stories260K/, tinystories-656k/). The environment
/// variable DEPASS_MODEL_DIR, when set and non-empty, overrides the compiled default.
inline std::string model_dir() {
  const char* env = std::getenv("DEPASS_MODEL_DIR");
  if (env != nullptr && *env != '\0') return env;
  return DEPASS_MODEL_DIR;
}

/// Full path of a model file, e.g. model_path("stories260K/tok512.bin").
inline std::string model_path(const std::string& relative) {
  return (std::filesystem::path(model_dir()) / relative).string();
}

/// Directory holding the golden files (tests/golden).
inline std::string golden_dir() { return DEPASS_GOLDEN_DIR; }

/// Full path of a golden file, e.g. golden_path("stories260K_logits.json").
inline std::string golden_path(const std::string& name) {
  return (std::filesystem::path(golden_dir()) / name).string();
}

/// True if path names an existing regular file (following symlinks).
inline bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

/// Whole file as bytes; throws std::runtime_error if it cannot be read.
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw std::runtime_error("cannot read " + path);
  return bytes;
}

/// A fresh, uniquely named directory under the system temporary directory, removed with
/// everything in it when the TempDir is destroyed. For tests that craft hostile files.
class TempDir {
 public:
  TempDir() {
    namespace fs = std::filesystem;
    const fs::path base = fs::temp_directory_path();
    std::random_device rd;
    std::mt19937_64 rng((static_cast<unsigned long long>(rd()) << 32) ^ rd());
    for (int attempt = 0; attempt < 100; ++attempt) {
      const fs::path candidate = base / ("depass-test-" + std::to_string(rng()));
      std::error_code ec;
      if (fs::create_directory(candidate, ec) && !ec) {
        root_ = candidate.string();
        return;
      }
    }
    throw std::runtime_error("TempDir: cannot create a directory under " + base.string());
  }
  ~TempDir() {
    if (root_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);  // best effort; never throw from a destructor
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  TempDir(TempDir&& other) noexcept : root_(std::exchange(other.root_, std::string())) {}
  TempDir& operator=(TempDir&& other) noexcept {
    if (this != &other) {
      TempDir dying(std::move(*this));
      root_ = std::exchange(other.root_, std::string());
    }
    return *this;
  }

  /// The directory itself.
  const std::string& root() const { return root_; }

  /// Path of `name` inside the directory (not created).
  std::string path(const std::string& name) const {
    return (std::filesystem::path(root_) / name).string();
  }

  /// Writes `bytes` to `name` (creating parent directories) and returns its full path.
  std::string write(const std::string& name, const std::string& bytes) const {
    return write_raw(name, bytes.data(), bytes.size());
  }
  std::string write(const std::string& name, const std::vector<char>& bytes) const {
    return write_raw(name, bytes.data(), bytes.size());
  }
  std::string write(const std::string& name, const std::vector<unsigned char>& bytes) const {
    return write_raw(name, reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  std::string write(const std::string& name, const char* text) const {
    return write(name, std::string(text));
  }

 private:
  std::string write_raw(const std::string& name, const char* data, std::size_t size) const {
    const std::filesystem::path full = std::filesystem::path(root_) / name;
    if (full.has_parent_path()) std::filesystem::create_directories(full.parent_path());
    std::ofstream out(full, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("TempDir: cannot create " + full.string());
    out.write(data, static_cast<std::streamsize>(size));
    out.close();
    if (!out) throw std::runtime_error("TempDir: cannot write " + full.string());
    return full.string();
  }

  std::string root_;
};

}  // namespace depass::test

/// Declares `std::string var` holding the full path of a model file (relative to
/// model_dir()). If the file is missing: with DEPASS_REQUIRE_MODELS=1 the test case fails;
/// otherwise it returns, and the test process reports it as skipped (exit code 77).
#define DEPASS_REQUIRE_MODEL(var, relative)                                                       \
  std::string var = ::depass::test::model_path(relative);                                         \
  if (!::depass::test::file_exists(var)) {                                                        \
    if (::depass::test::models_required())                                                        \
      FAIL("model file " << var << " not found, and DEPASS_REQUIRE_MODELS=1 says the suite must " \
                         "be complete; run `make models` or set DEPASS_MODEL_DIR");               \
    ::depass::test::skip_test_case("model file " + var +                                          \
                                   " not found; run `make models` or set DEPASS_MODEL_DIR");      \
    WARN("skipping: model file " << var << " not found; run `make models` or set DEPASS_MODEL_DIR"); \
    return;                                                                                       \
  }                                                                                               \
  static_cast<void>(0)
