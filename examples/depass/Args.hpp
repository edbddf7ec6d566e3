#pragma once
// Command-line parsing of the depass tool: --name VALUE / --name=VALUE options, --flags,
// usage errors (exit code 2) and the nearest-option suggestion for unknown options.

#include <algorithm>
#include <initializer_list>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace cli {

/// A command-line mistake: printed with a pointer to --help, exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Levenshtein distance (insertions, deletions, substitutions each cost 1).
inline std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

/// The known option closest to `name` by edit distance, or "" when none is close (at
/// most a third of the name's letters, and at least 2, may differ).
inline std::string nearest_option(const std::string& name, const std::vector<std::string>& known) {
  std::string best;
  std::size_t best_distance = std::max<std::size_t>(2, (name.size() - std::min<std::size_t>(name.size(), 2)) / 3) + 1;
  for (const std::string& k : known) {
    const std::size_t d = edit_distance(name, k);
    if (d < best_distance) {
      best = k;
      best_distance = d;
    }
  }
  return best;
}

/// "unknown option --tempreature (did you mean --temperature?)".
inline std::string unknown_option_message(const std::string& name, const std::vector<std::string>& known) {
  const std::string near = nearest_option(name, known);
  return "unknown option " + name + (near.empty() ? "" : " (did you mean " + near + "?)");
}

/// --name VALUE / --name=VALUE options and --flags. Options may repeat (all() returns
/// every value; get() the last).
class Args {
 public:
  Args(int argc, char** argv, int first, const std::vector<std::string>& flags) : flags_(flags) {
    for (int i = first; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg == "-h") arg = "--help";
      if (arg.rfind("--", 0) != 0 || arg.size() < 3) throw UsageError("unexpected argument '" + arg + "'");
      const std::size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        values_[arg.substr(0, eq)].push_back(arg.substr(eq + 1));
      } else if (is_flag(arg)) {
        values_[arg].push_back("1");
      } else {
        if (i + 1 >= argc) throw UsageError("option " + arg + " needs a value");
        values_[arg].push_back(argv[++i]);
      }
    }
  }
  bool has(const std::string& name) const { return values_.count(name) != 0; }
  std::string get(const std::string& name, const std::string& fallback = "") const {
    auto it = values_.find(name);
    return it == values_.end() ? fallback : it->second.back();
  }
  std::vector<std::string> all(const std::string& name) const {
    auto it = values_.find(name);
    return it == values_.end() ? std::vector<std::string>{} : it->second;
  }
  std::string require(const std::string& name) const {
    if (!has(name)) throw UsageError("missing required option " + name);
    return get(name);
  }
  long integer(const std::string& name, long fallback) const {
    if (!has(name)) return fallback;
    return parse_integer(name, get(name));
  }
  static long parse_integer(const std::string& name, const std::string& text) {
    std::size_t used = 0;
    long value = 0;
    try {
      value = std::stol(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (text.empty() || used != text.size()) throw UsageError("option " + name + " expects an integer, got '" + text + "'");
    return value;
  }
  double number(const std::string& name, double fallback) const {
    if (!has(name)) return fallback;
    const std::string text = get(name);
    std::size_t used = 0;
    double value = 0;
    try {
      value = std::stod(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (text.empty() || used != text.size()) throw UsageError("option " + name + " expects a number, got '" + text + "'");
    return value;
  }
  /// Throws UsageError for an option not in `allowed` (naming the nearest allowed one), or
  /// one repeated when not `repeatable`.
  void allow_only(const std::vector<std::string>& allowed, const std::vector<std::string>& repeatable = {}) const {
    for (const auto& kv : values_) {
      const bool ok = std::find(allowed.begin(), allowed.end(), kv.first) != allowed.end();
      const bool repeat = std::find(repeatable.begin(), repeatable.end(), kv.first) != repeatable.end();
      if (!ok) throw UsageError(unknown_option_message(kv.first, allowed));
      if (kv.second.size() > 1 && !repeat) throw UsageError("option " + kv.first + " is given more than once");
    }
  }
  /// Every option given, by name.
  std::vector<std::string> names() const {
    std::vector<std::string> n;
    for (const auto& kv : values_) n.push_back(kv.first);
    return n;
  }

 private:
  bool is_flag(const std::string& name) const { return std::find(flags_.begin(), flags_.end(), name) != flags_.end(); }
  std::vector<std::string> flags_;
  std::map<std::string, std::vector<std::string>> values_;
};

/// Options that take no value.
inline const std::vector<std::string> kFlags = {"--help",  "--no-bos-sink", "--explain", "--no-progress", "--projection",
                                                "--quiet", "--trace",       "--no-bos",  "--per-step", "--mean-ablation", "--resume",
                                                "--keep-last", "--compare-float"};
/// Options every command understands, by group.
inline const std::vector<std::string> kModelOptions = {"--model", "--tokenizer", "--precision", "--threads"};
inline const std::vector<std::string> kInputOptions = {"--prompt", "--prompt-file", "--ids",           "--position",
                                                       "--target", "--contrast",    "--target-position"};
inline const std::vector<std::string> kSplitOptions = {"--mlp-split", "--temperature", "--no-bos-sink", "--sink-ratio",
                                                       "--chunk-size", "--memory-budget"};
inline const std::vector<std::string> kOutputOptions = {"--format", "--output",      "--json", "--top",
                                                        "--color",  "--no-progress", "--quiet"};

inline std::vector<std::string> join(std::initializer_list<std::vector<std::string>> lists) {
  std::vector<std::string> all;
  for (const auto& l : lists) all.insert(all.end(), l.begin(), l.end());
  return all;
}

}  // namespace cli
