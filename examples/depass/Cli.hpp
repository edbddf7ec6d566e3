#pragma once
// Shared pieces of the depass command-line tool: option parsing, model/tokenizer loading,
// input/position/target resolution, the progress bar and output dispatch (text, JSON,
// CSV, NPY, HTML). Commands live in the other files of this folder.

#include <depass/depass.hpp>
#include <depass/output/Output.hpp>
#include <depass/Version.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace cli {

using nlohmann::json;

/// A command-line mistake: printed with a pointer to --help, exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

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
    const std::string text = get(name);
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
  /// Throws UsageError for an option not in `allowed` (or repeated when not `repeatable`).
  void allow_only(const std::vector<std::string>& allowed, const std::vector<std::string>& repeatable = {}) const {
    for (const auto& kv : values_) {
      bool ok = false, repeat = false;
      for (const auto& a : allowed) ok = ok || a == kv.first;
      for (const auto& a : repeatable) repeat = repeat || a == kv.first;
      if (!ok) throw UsageError("unknown option " + kv.first);
      if (kv.second.size() > 1 && !repeat) throw UsageError("option " + kv.first + " is given more than once");
    }
  }

 private:
  bool is_flag(const std::string& name) const {
    for (const auto& f : flags_)
      if (f == name) return true;
    return false;
  }
  std::vector<std::string> flags_;
  std::map<std::string, std::vector<std::string>> values_;
};

/// Options every command understands, by group.
inline const std::vector<std::string> kFlags = {"--help", "--no-bos-sink", "--explain", "--no-progress", "--projection"};
inline const std::vector<std::string> kModelOptions = {"--model", "--tokenizer", "--precision", "--threads"};
inline const std::vector<std::string> kInputOptions = {"--prompt", "--ids", "--position", "--target"};
inline const std::vector<std::string> kSplitOptions = {"--mlp-split", "--temperature", "--no-bos-sink", "--chunk-size"};
inline const std::vector<std::string> kOutputOptions = {"--format", "--output", "--json", "--top", "--color", "--no-progress"};

inline std::vector<std::string> join(std::initializer_list<std::vector<std::string>> lists) {
  std::vector<std::string> all;
  for (const auto& l : lists) all.insert(all.end(), l.begin(), l.end());
  return all;
}

inline bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

inline std::string directory_of(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

inline std::string extension_of(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  const std::size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = path.substr(dot + 1);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

template <typename Scalar>
struct Loaded {
  std::string path;
  depass::io::Format format = depass::io::Format::Unknown;
  std::unique_ptr<depass::Model<Scalar>> model;
  std::optional<depass::Tokenizer> tokenizer;
  std::string tokenizer_path;
  std::string tokenizer_kind;
};

/// The model of --model and its tokenizer (--tokenizer, or found next to the checkpoint).
/// Without need_tokenizer a missing tokenizer is not an error.
template <typename Scalar>
Loaded<Scalar> load(const Args& args, bool need_tokenizer = true) {
  Loaded<Scalar> l;
  l.path = args.require("--model");
  l.format = depass::io::detect_format(l.path);
  l.model = std::make_unique<depass::Model<Scalar>>(depass::io::load_checkpoint<Scalar>(l.path));
  const int vocab = l.model->config().vocab_size;
  if (args.has("--tokenizer")) {
    const std::string tok = args.get("--tokenizer");
    if (!file_exists(tok)) throw std::runtime_error("cannot open tokenizer '" + tok + "': no such file");
    l.tokenizer_path = tok;
    if (extension_of(tok) == "gguf") {
      l.tokenizer = depass::Tokenizer::from_gguf(tok);
      l.tokenizer_kind = "gguf";
    } else if (l.format == depass::io::Format::HuggingFace || tok.find(".json") != std::string::npos) {
      l.tokenizer = depass::Tokenizer::from_huggingface(tok);
      l.tokenizer_kind = "huggingface";
    } else {
      l.tokenizer = depass::Tokenizer::from_llama2c(tok, vocab);
      l.tokenizer_kind = "llama2.c";
    }
  } else if (l.format == depass::io::Format::GGUF) {
    l.tokenizer = depass::Tokenizer::from_gguf(l.path);  // GGUF files carry their tokenizer
    l.tokenizer_path = l.path;
    l.tokenizer_kind = "gguf";
  } else if (l.format == depass::io::Format::HuggingFace) {
    l.tokenizer = depass::Tokenizer::from_huggingface(l.path);
    l.tokenizer_path = l.path + "/tokenizer.json";
    l.tokenizer_kind = "huggingface";
  } else {
    const std::string dir = directory_of(l.path);
    for (const std::string& name : {"tok" + std::to_string(vocab) + ".bin", std::string("tokenizer.bin")}) {
      if (file_exists(dir + "/" + name)) {
        l.tokenizer = depass::Tokenizer::from_llama2c(dir + "/" + name, vocab);
        l.tokenizer_path = dir + "/" + name;
        l.tokenizer_kind = "llama2.c";
        break;
      }
    }
  }
  if (l.tokenizer && l.tokenizer->vocab_size() != vocab && l.tokenizer_kind == "huggingface" &&
      l.tokenizer->vocab_size() > vocab)
    throw std::runtime_error("tokenizer has " + std::to_string(l.tokenizer->vocab_size()) +
                             " tokens, more than the model's vocabulary of " + std::to_string(vocab));
  if (!l.tokenizer && need_tokenizer)
    throw UsageError("no tokenizer found next to " + l.path + "; pass --tokenizer PATH");
  return l;
}

inline std::vector<int> parse_int_list(const std::string& option, const std::string& text) {
  std::vector<int> ids;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    std::size_t used = 0;
    long value = -1;
    try {
      value = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || value < 0 || value > 1L << 30)
      throw UsageError(option + ": '" + item + "' is not a non-negative integer");
    ids.push_back(static_cast<int>(value));
  }
  if (ids.empty()) throw UsageError(option + " is empty");
  return ids;
}

/// Token ids of --prompt (BOS prepended) or --ids, checked against the model.
template <typename Scalar>
std::vector<int> input_ids(const Args& args, const Loaded<Scalar>& l) {
  if (args.has("--prompt") == args.has("--ids")) throw UsageError("give exactly one of --prompt and --ids");
  std::vector<int> ids;
  if (args.has("--ids")) {
    ids = parse_int_list("--ids", args.get("--ids"));
    for (std::size_t i = 0; i < ids.size(); ++i)
      if (ids[i] >= l.model->config().vocab_size)
        throw UsageError("--ids: token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                         " is unknown (the vocabulary has ids 0.." + std::to_string(l.model->config().vocab_size - 1) + ")");
  } else {
    ids = l.tokenizer->encode(args.get("--prompt"), true);
    if (ids.empty()) throw UsageError("--prompt encodes to no tokens");
  }
  l.model->check_tokens(ids);
  return ids;
}

/// --position (negative counts from the end; default -1) as an index into the sequence.
inline long resolve_position(const Args& args, long n) {
  long position = args.integer("--position", -1);
  if (position < -n || position >= n)
    throw UsageError("--position " + std::to_string(position) + " is out of range: the sequence has " + std::to_string(n) +
                     " tokens (allowed " + std::to_string(-n) + ".." + std::to_string(n - 1) + ")");
  return position < 0 ? position + n : position;
}

/// Layer given by `option` (negative counts from the end), checked against the model.
inline int resolve_layer(const Args& args, const std::string& option, int n_layers, long fallback) {
  long layer = args.integer(option, fallback);
  if (layer < -n_layers || layer >= n_layers)
    throw UsageError(option + " " + std::to_string(layer) + " is out of range: the model has " + std::to_string(n_layers) +
                     " layers (allowed 0.." + std::to_string(n_layers - 1) + ", or -1 for the last)");
  return static_cast<int>(layer < 0 ? layer + n_layers : layer);
}

inline depass::Site parse_site(const std::string& text) {
  if (text == "attention" || text == "attn") return depass::Site::Attention;
  if (text == "mlp") return depass::Site::Mlp;
  throw UsageError("--site '" + text + "' is unknown (allowed: attention, mlp)");
}

inline const char* site_name(depass::Site s) { return s == depass::Site::Mlp ? "mlp" : "attention"; }

inline depass::DecomposeOptions decompose_options(const Args& args) {
  depass::DecomposeOptions options;
  const std::string split = args.get("--mlp-split", "softmax");
  if (split != "softmax" && split != "argmax" && split != "proportional")
    throw UsageError("--mlp-split '" + split + "' is unknown (allowed: softmax, argmax, proportional)");
  options.split = depass::parse_mlp_split(split);
  options.temperature = args.number("--temperature", 0.1);
  if (!(options.temperature > 0) || !std::isfinite(options.temperature))
    throw UsageError("--temperature must be a finite number > 0, got '" + args.get("--temperature") + "'");
  options.bos_sink = !args.has("--no-bos-sink");
  const long chunk = args.integer("--chunk-size", 0);
  if (chunk < 0) throw UsageError("--chunk-size must be >= 0, got " + std::to_string(chunk));
  options.chunk_size = chunk;
  return options;
}

/// Probability of `target` under the softmax of `logits`.
template <typename Vec>
double probability(const Vec& logits, int target) {
  const double peak = static_cast<double>(logits.maxCoeff());
  double partition = 0;
  for (Eigen::Index i = 0; i < logits.size(); ++i) partition += std::exp(static_cast<double>(logits(i)) - peak);
  return std::exp(static_cast<double>(logits(target)) - peak) / partition;
}

/// --target ID, or the model's top prediction, checked against the vocabulary.
template <typename Vec>
int resolve_target(const Args& args, const Vec& logits) {
  Eigen::Index top = 0;
  logits.maxCoeff(&top);
  const long target = args.integer("--target", static_cast<long>(top));
  if (target < 0 || target >= logits.size())
    throw UsageError("--target " + std::to_string(target) + " is not a token id of this model (allowed 0.." +
                     std::to_string(logits.size() - 1) + ")");
  return static_cast<int>(target);
}

template <typename Scalar>
std::string piece(const Loaded<Scalar>& l, int id) {
  if (!l.tokenizer || id >= l.tokenizer->vocab_size()) return "<" + std::to_string(id) + ">";
  return l.tokenizer->piece(id);
}

template <typename Scalar>
json tokens_json(const Loaded<Scalar>& l, const std::vector<int>& ids) {
  json t = json::array();
  for (int id : ids) t.push_back(depass::output::token_json(id, piece(l, id)));
  return t;
}

template <typename Scalar>
json target_json(const Loaded<Scalar>& l, int target, double logit, double prob) {
  json t = depass::output::token_json(target, piece(l, target));
  t["logit"] = logit;
  t["prob"] = prob;
  return t;
}

/// Fields every attribution document starts with.
template <typename Scalar>
json document(const char* schema, const Args& args, const depass::DecomposeOptions& options) {
  json doc;
  doc["schema"] = schema;
  doc["depass_version"] = depass::version_string();
  doc["model"] = args.get("--model");
  doc["precision"] = std::is_same<Scalar, float>::value ? "float" : "double";
  doc["mlp_split"] = depass::to_string(options.split);
  doc["temperature"] = options.temperature;
  doc["bos_sink"] = options.bos_sink;
  if (options.chunk_size > 0) doc["chunk_size"] = options.chunk_size;
  return doc;
}

template <typename Scalar>
double max_residual(const depass::Decomposition<Scalar>& d) {
  double r = 0;
  for (const depass::BoundaryCheck& c : d.completeness()) r = std::max(r, c.residual_max_abs);
  return r;
}

/// Progress over (decomposition runs) x (layers), driven by the engine hook's layer_out
/// events. Shown on stderr only when it is a terminal and --no-progress is absent.
template <typename Scalar>
class Progress {
 public:
  Progress(const Args& args, const std::string& label, long total)
      : bar_(std::cerr, label, total, !args.has("--no-progress") && isatty(fileno(stderr))) {}
  depass::Hook<Scalar> hook() {
    depass::output::ProgressBar* bar = &bar_;
    return [bar](const depass::HookEvent<Scalar>& e) {
      if (std::string(e.name) == "layer_out") bar->advance();
    };
  }
  void finish() { bar_.finish(); }

 private:
  depass::output::ProgressBar bar_;
};

inline depass::output::ColorMode stdout_color(const Args& args) {
  const std::string c = args.get("--color", "auto");
  if (c == "never") return depass::output::ColorMode::None;
  if (c == "always")
    return depass::output::detect_color_mode(true, nullptr, std::getenv("COLORTERM"), nullptr) ==
                   depass::output::ColorMode::TrueColor
               ? depass::output::ColorMode::TrueColor
               : depass::output::ColorMode::Ansi256;
  if (c != "auto") throw UsageError("--color must be auto, always or never, got '" + c + "'");
  return depass::output::detect_color_mode(isatty(fileno(stdout)) != 0, std::getenv("NO_COLOR"), std::getenv("COLORTERM"),
                                           std::getenv("TERM"));
}

/// The output format: --format, else from the extension of --output, else text.
inline std::string output_format(const Args& args) {
  static const std::vector<std::string> known = {"text", "json", "csv", "npy", "html"};
  if (args.has("--format")) {
    const std::string f = args.get("--format");
    for (const auto& k : known)
      if (k == f) return f;
    throw UsageError("--format '" + f + "' is unknown (allowed: text, json, csv, npy, html)");
  }
  if (!args.has("--output")) return "text";
  const std::string ext = extension_of(args.get("--output"));
  if (ext == "json") return "json";
  if (ext == "csv") return "csv";
  if (ext == "npy") return "npy";
  if (ext == "html" || ext == "htm") return "html";
  if (ext == "txt") return "text";
  throw UsageError("cannot tell the format of --output '" + args.get("--output") +
                   "' from its extension (.json, .csv, .npy, .html, .txt); add --format");
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file) throw std::runtime_error("cannot write '" + path + "'");
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  file.close();
  if (!file) throw std::runtime_error("error while writing '" + path + "'");
}

inline std::size_t top_rows(const Args& args, long fallback = 10) {
  const long top = args.integer("--top", fallback);
  if (top < 0) throw UsageError("--top must be >= 0, got " + std::to_string(top));
  return static_cast<std::size_t>(top);
}

/// Validates the output options before any work is done (so that a bad --format fails fast).
inline void check_output_options(const Args& args) {
  output_format(args);
  stdout_color(args);
  top_rows(args);
  if (args.has("--components") && extension_of(args.get("--components")) != "npy")
    throw UsageError("--components writes a .npy file; its name must end in .npy, got '" + args.get("--components") + "'");
}

/// Writes `doc` as chosen by --format / --output (stdout when no --output), plus --json.
/// With --output, the text view still goes to stdout (a note on stderr names the file).
inline void emit(const Args& args, const json& doc) {
  const std::string format = output_format(args);
  depass::output::TerminalOptions term;
  term.top = top_rows(args);
  std::string bytes;
  if (format == "json") bytes = depass::output::to_json_text(doc);
  else if (format == "csv") bytes = depass::output::to_csv_text(doc);
  else if (format == "npy") bytes = depass::output::npy_bytes(depass::output::scores_array(doc));
  else if (format == "html") {
    depass::output::HtmlOptions html;
    html.top = term.top;
    bytes = depass::output::render_html(doc, html);
  }
  if (args.has("--json")) write_file(args.get("--json"), depass::output::to_json_text(doc));
  if (args.has("--output")) {
    if (format == "text") bytes = depass::output::render_terminal(doc, term);  // plain: no colour in files
    write_file(args.get("--output"), bytes);
    if (format != "text") {
      term.color = stdout_color(args);
      std::cout << depass::output::render_terminal(doc, term);
    }
    std::cerr << "depass: wrote " << args.get("--output") << " (" << format << ")\n";
    return;
  }
  if (format == "text") {
    term.color = stdout_color(args);
    std::cout << depass::output::render_terminal(doc, term);
  } else {
    if (format == "npy" && isatty(fileno(stdout)))
      throw UsageError("--format npy is binary; give --output FILE.npy or redirect stdout");
    std::cout.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  std::cout.flush();
}

}  // namespace cli
