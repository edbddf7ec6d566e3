#pragma once
// Shared pieces of the libFuzzer harnesses (tests/fuzz/*.fuzz.cpp).
//
// Every loader reads files, so a harness writes the fuzz input to a scratch file (or
// several, split at kSplit) and calls the loader on it. The only acceptable failure is a
// depass::FormatError: that is how a loader refuses a malformed file. Anything else is a
// finding and aborts, so libFuzzer saves the input: a crash or a sanitizer report, another
// exception type (std::bad_alloc from a giant allocation, std::length_error, an
// nlohmann::json exception, a plain std::runtime_error or std::invalid_argument for bad
// *content*), a hang (-timeout) or an allocation above -malloc_limit_mb.

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <depass/Error.hpp>
#include <depass/Tokenizer.hpp>
#include <depass/detail/tokenizer/Utf8.hpp>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <typeinfo>
#include <vector>

namespace depass {
namespace fuzz {

/// Separates the files of a multi-file input (HF directory: config.json, weights, index).
inline const std::string kSplit = "\n#@depass-fuzz-next-file@#\n";

/// A directory private to this process (libFuzzer may run several jobs side by side),
/// removed at exit.
inline const std::string& scratch_dir() {
  // Leaked on purpose: the atexit handler below runs after static destructors would.
  static const std::string* dir = [] {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::path base = fs::temp_directory_path(ec);
    if (std::getenv("TMPDIR") == nullptr && fs::is_directory("/dev/shm", ec))
      base = "/dev/shm";  // tmpfs: most executions write a file, keep that cheap
    const fs::path d = base / ("depass-fuzz-" + std::to_string(::getpid()));
    fs::create_directories(d);
    auto* path = new std::string(d.string());
    std::atexit([] {
      std::error_code ignored;
      fs::remove_all(*dir, ignored);
    });
    return path;
  }();
  return *dir;
}

/// Path of `name` in the scratch directory.
inline std::string scratch_path(const std::string& name) {
  return (std::filesystem::path(scratch_dir()) / name).string();
}

/// Writes bytes to the scratch file `name` and returns its path.
inline std::string write_file(const std::string& name, const std::string& bytes) {
  const std::string path = scratch_path(name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    std::fprintf(stderr, "fuzz harness: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

inline void remove_file(const std::string& name) {
  std::error_code ignored;
  std::filesystem::remove(scratch_path(name), ignored);
}

/// The input cut at kSplit into at most max_parts pieces (the last keeps any further
/// separators).
inline std::vector<std::string> split(const std::uint8_t* data, std::size_t size,
                                      std::size_t max_parts) {
  const std::string all(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (parts.size() + 1 < max_parts) {
    const std::size_t hit = all.find(kSplit, start);
    if (hit == std::string::npos) break;
    parts.push_back(all.substr(start, hit - start));
    start = hit + kSplit.size();
  }
  parts.push_back(all.substr(start));
  return parts;
}

[[noreturn]] inline void finding(const char* what, const char* detail) {
  std::fprintf(stderr, "\n==depass-fuzz== FINDING: %s: %s\n", what, detail);
  std::fflush(stderr);
  std::abort();
}

/// Runs f. A depass::FormatError is the expected way to refuse a malformed file; any other
/// exception is a finding.
template <typename F>
void expect_only_format_errors(F&& f) {
  try {
    f();
  } catch (const FormatError& e) {
    // The loader refused the file: fine. DEPASS_FUZZ_VERBOSE=1 shows why (seed checks).
    static const bool verbose = std::getenv("DEPASS_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "FormatError: %s\n", e.what());
  } catch (const std::exception& e) {
    const std::string type = typeid(e).name();
    finding(("unexpected exception " + type).c_str(), e.what());
  } catch (...) {
    finding("unexpected exception", "(not a std::exception)");
  }
}

/// Runs f, for which every exception is a finding (using a successfully loaded object).
template <typename F>
void expect_no_exception(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    const std::string type = typeid(e).name();
    finding(("exception after a successful load: " + type).c_str(), e.what());
  } catch (...) {
    finding("exception after a successful load", "(not a std::exception)");
  }
}

/// Exercises a loaded tokenizer: encodes fixed texts and a (sanitized) slice of the input,
/// decodes the ids, and asks for every piece. Nothing here may throw; decoded text must be
/// valid UTF-8 (Tokenizer::decode promises it).
inline void exercise(const Tokenizer& tok, const std::uint8_t* data, std::size_t size) {
  std::vector<std::string> texts = {"",
                                    " ",
                                    "Once upon a time, there was a little girl named Lily.",
                                    "  two  spaces\tand\ttabs\nnewline ",
                                    "h\xC3\xA9llo w\xC3\xB6rld \xE2\x9C\x93 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80",
                                    "<s></s><unk><|endoftext|>"};
  const std::size_t n = size < 64 ? size : 64;
  texts.push_back(detail::utf8::sanitize(std::string(reinterpret_cast<const char*>(data), n)));
  for (const std::string& text : texts) {
    for (bool bos : {false, true}) {
      const std::vector<int> ids = tok.encode(text, bos);
      for (int id : ids)
        if (id < 0 || id >= tok.vocab_size()) finding("encode", "produced an out-of-range id");
      const std::string back = tok.decode(ids);
      if (!detail::utf8::is_valid(back)) finding("decode", "returned invalid UTF-8");
      int prev = -1;
      for (int id : ids) {
        (void)tok.token_text(prev, id);
        prev = id;
      }
    }
  }
  const int limit = tok.vocab_size() < 4096 ? tok.vocab_size() : 4096;
  for (int id = 0; id < limit; ++id) (void)tok.piece(id);
  std::vector<int> all;
  for (int id = 0; id < limit; ++id) all.push_back(id);
  if (!detail::utf8::is_valid(tok.decode(all))) finding("decode", "returned invalid UTF-8");
}

}  // namespace fuzz
}  // namespace depass
