#pragma once
// Library version. Keep in sync with project(depass VERSION ...) in CMakeLists.txt;
// tests/build/Version.test.cpp checks that they agree.

#define DEPASS_VERSION_MAJOR 0
#define DEPASS_VERSION_MINOR 1
#define DEPASS_VERSION_PATCH 0

#define DEPASS_DETAIL_STRINGIFY2(x) #x
#define DEPASS_DETAIL_STRINGIFY(x) DEPASS_DETAIL_STRINGIFY2(x)

/// "MAJOR.MINOR.PATCH" as a string literal.
#define DEPASS_VERSION_STRING                                                \
  DEPASS_DETAIL_STRINGIFY(DEPASS_VERSION_MAJOR)                              \
  "." DEPASS_DETAIL_STRINGIFY(DEPASS_VERSION_MINOR) "." DEPASS_DETAIL_STRINGIFY( \
      DEPASS_VERSION_PATCH)

/// Single integer for comparisons: MAJOR * 10000 + MINOR * 100 + PATCH.
#define DEPASS_VERSION \
  (DEPASS_VERSION_MAJOR * 10000 + DEPASS_VERSION_MINOR * 100 + DEPASS_VERSION_PATCH)

namespace depass {

/// The library version as "MAJOR.MINOR.PATCH".
inline const char* version_string() { return DEPASS_VERSION_STRING; }

}  // namespace depass
