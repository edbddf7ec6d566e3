#pragma once
// Skipping a test case so that CTest sees it (used by DEPASS_REQUIRE_MODEL in
// TestSupport.hpp and by the shared main in catch_main.cpp). Kept apart from
// TestSupport.hpp because catch_main.cpp is compiled without the tests' path definitions.

#include <cstdlib>
#include <iostream>
#include <string>

namespace depass::test {

/// Exit code of a test process that skipped a test case (CTest: SKIP_RETURN_CODE).
constexpr int kSkipExitCode = 77;

/// True when DEPASS_REQUIRE_MODELS is "1": the suite must be complete, so a missing model
/// is a failure rather than a skip (make test and CI set it).
inline bool models_required() {
  const char* env = std::getenv("DEPASS_REQUIRE_MODELS");
  return env != nullptr && std::string(env) == "1";
}

/// Number of test cases of this process that skipped (see catch_main.cpp).
inline int& skipped_test_cases() {
  static int count = 0;
  return count;
}

/// Records that the running test case skips, with the reason on stderr.
inline void skip_test_case(const std::string& reason) {
  ++skipped_test_cases();
  std::cerr << "SKIPPED: " << reason << std::endl;
}

}  // namespace depass::test
