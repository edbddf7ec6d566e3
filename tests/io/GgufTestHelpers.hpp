#pragma once
// GGUF test files written to a temporary directory, and the error a load of a hostile one
// gives: shared by the GGUF loader tests (Gguf.test.cpp, GgufFamilies.test.cpp).

#include <depass/io/Gguf.hpp>
#include <string>

#include "GgufWriter.hpp"
#include "IoTestHelpers.hpp"
#include "TestSupport.hpp"

namespace depass {
namespace test {
namespace gguf {

/// Writes `f` into `dir` as `name`; returns its path.
inline std::string write(TempDir& dir, const File& f, const std::string& name = "m.gguf") {
  return dir.write(name, f.build());
}

/// The message of the FormatError that loading these bytes as a GGUF file throws; checks
/// that it names the file.
inline std::string load_error_bytes(const std::string& bytes) {
  TempDir dir;
  const std::string path = dir.write("m.gguf", bytes);
  const std::string message = format_error([&] { io::load_gguf<float>(path); });
  CHECK_THAT(message, Catch::Matchers::Contains(path));
  return message;
}

/// The same for the file `f`.
inline std::string load_error(const File& f) { return load_error_bytes(f.build()); }

}  // namespace gguf
}  // namespace test
}  // namespace depass
