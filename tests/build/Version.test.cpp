// The header version and the CMake project version must agree.
#include <depass/Version.hpp>

#include <string>

#include "TestSupport.hpp"

#ifndef DEPASS_PROJECT_VERSION
#error "tests/CMakeLists.txt passes DEPASS_PROJECT_VERSION"
#endif

TEST_CASE("Version.hpp matches the CMake project version", "[build]") {
  const std::string cmake_version = DEPASS_PROJECT_VERSION;
  CHECK(std::string(depass::version_string()) == cmake_version);
  CHECK(std::string(DEPASS_VERSION_STRING) == cmake_version);
  CHECK(DEPASS_VERSION_MAJOR == DEPASS_PROJECT_VERSION_MAJOR);
  CHECK(DEPASS_VERSION_MINOR == DEPASS_PROJECT_VERSION_MINOR);
  CHECK(DEPASS_VERSION_PATCH == DEPASS_PROJECT_VERSION_PATCH);
  CHECK(DEPASS_VERSION ==
        DEPASS_VERSION_MAJOR * 10000 + DEPASS_VERSION_MINOR * 100 + DEPASS_VERSION_PATCH);
}
