#pragma once
#include <stdexcept>
#include <string>

namespace depass {

/// A file exists but its contents are malformed, inconsistent or unsupported.
/// Bad function arguments throw std::invalid_argument instead; missing/unreadable
/// files throw std::runtime_error (FormatError derives from it, so callers that do
/// not care about the distinction can catch std::runtime_error).
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace depass
