#pragma once
// Shared pieces of the depass command-line tool: model/tokenizer loading, the split and
// chunking options, the progress bar and output dispatch (text, JSON, CSV, NPY, HTML).
// Inputs, positions and targets are in Inputs.hpp; commands live in the .cpp files.

#include <depass/depass.hpp>
#include <depass/output/Output.hpp>
#include <depass/Version.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "Args.hpp"
#include "Mpi.hpp"

namespace cli {

using nlohmann::json;

inline bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

inline std::string extension_of(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  const std::size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = path.substr(dot + 1);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

using depass::io::FoundTokenizer;

template <typename Scalar>
struct Loaded {
  std::string path;
  depass::io::Format format = depass::io::Format::Unknown;
  std::unique_ptr<depass::Model<Scalar>> model;
  std::optional<depass::Tokenizer> tokenizer;
  std::string tokenizer_path;
  std::string tokenizer_kind;

  /// The tokenizer, or a UsageError saying what needed it.
  const depass::Tokenizer& require_tokenizer(const std::string& what) const {
    if (!tokenizer)
      throw UsageError(what + " needs a tokenizer, and none was found next to " + path +
                       "; pass --tokenizer PATH (or give --ids and numeric targets)");
    return *tokenizer;
  }
};

/// The model of --model and its tokenizer, if one is found. Commands ask for the
/// tokenizer only where they need it (text input or targets), so --ids works without.
template <typename Scalar>
Loaded<Scalar> load(const Args& args) {
  Loaded<Scalar> l;
  l.path = args.require("--model");
  depass::io::LoadedModel<Scalar> loaded = depass::io::load_model<Scalar>(l.path, args.get("--tokenizer"));
  l.format = loaded.format;
  l.model = std::make_unique<depass::Model<Scalar>>(std::move(loaded.model));
  l.tokenizer = std::move(loaded.tokenizer);
  l.tokenizer_path = std::move(loaded.tokenizer_path);
  l.tokenizer_kind = std::move(loaded.tokenizer_kind);
  return l;
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

/// "200M", "1.5G", "65536": bytes, with K, M, G, T meaning powers of 1024 (an optional
/// trailing "B" or "iB" is accepted: 200MB, 200MiB).
inline std::size_t parse_bytes(const std::string& option, const std::string& text) {
  const std::size_t digits = text.find_first_not_of("0123456789.");
  const std::string number = text.substr(0, digits);
  std::string unit = digits == std::string::npos ? "" : text.substr(digits);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double scale = 0;
  for (const auto& [suffix, factor] : std::vector<std::pair<std::string, double>>{
           {"", 1}, {"B", 1}, {"K", 1024.0}, {"M", 1048576.0}, {"G", 1073741824.0}, {"T", 1099511627776.0}}) {
    if (unit == suffix || (suffix.size() == 1 && suffix != "B" && (unit == suffix + "B" || unit == suffix + "IB")))
      scale = factor;
  }
  const bool well_formed = !number.empty() && number != "." && number.find('.') == number.rfind('.');
  const double bytes = well_formed ? std::stod(number) * scale : 0;
  if (!well_formed || scale == 0 || !(bytes >= 1) || bytes > 9.0e18)
    throw UsageError(option + " expects a size in bytes such as 65536, 512K, 200M or 2G, got '" + text + "'");
  return static_cast<std::size_t>(bytes);
}

/// True when the options may split the components into chunks.
inline bool may_chunk(const depass::DecomposeOptions& options) {
  return options.chunk_size > 0 || options.memory_budget_bytes > 0;
}

inline depass::DecomposeOptions decompose_options(const Args& args) {
  depass::DecomposeOptions options;
  const std::string split = args.get("--mlp-split", "softmax");
  try {
    options.split = depass::parse_mlp_split(split);
  } catch (const std::invalid_argument&) {
    throw UsageError("--mlp-split '" + split + "' is unknown (allowed: " + depass::mlp_split_names() + ")");
  }
  if (args.has("--temperature") && (options.split == depass::MlpSplit::Argmax || options.split == depass::MlpSplit::Path))
    throw UsageError("--temperature applies to the softmax and proportional splits, not to --mlp-split " + split);
  options.temperature = args.number("--temperature", 0.1);
  if (!(options.temperature > 0) || !std::isfinite(options.temperature))
    throw UsageError("--temperature must be a finite number > 0, got '" + args.get("--temperature") + "'");
  options.bos_sink = !args.has("--no-bos-sink");
  if (args.has("--sink-ratio")) {
    options.sink_ratio = args.number("--sink-ratio", 0);
    if (!(options.sink_ratio > 0) || !std::isfinite(options.sink_ratio))
      throw UsageError("--sink-ratio must be a finite number > 0, got '" + args.get("--sink-ratio") +
                       "' (leave it out for the BOS sink alone)");
  }
  if (args.has("--chunk-size") && args.has("--memory-budget"))
    throw UsageError("give --chunk-size or --memory-budget, not both");
  if (args.has("--chunk-size")) {
    const long chunk = args.integer("--chunk-size", 0);
    if (chunk < 1)
      throw UsageError("--chunk-size must be >= 1, got " + std::to_string(chunk) + " (leave it out to run unchunked)");
    options.chunk_size = chunk;
  }
  if (args.has("--memory-budget")) options.memory_budget_bytes = parse_bytes("--memory-budget", args.get("--memory-budget"));
  if (args.get("--precision", "") == "bf16") {
    if (!depass::bf16_available()) throw UsageError("--precision bf16: " + depass::bf16_unavailable_reason());
    options.gemm_precision = depass::GemmPrecision::Bf16;
  }
  if (args.has("--compare-float") && options.gemm_precision != depass::GemmPrecision::Bf16)
    throw UsageError("--compare-float compares a --precision bf16 run with a float one: give --precision bf16");
  options.shards = MpiJob::get().shards();  // under mpirun: the ranks share the components
  options.shards_share_result = true;       // and every rank reads the result out alike
  if (options.shards && may_chunk(options))
    throw UsageError("--chunk-size and --memory-budget do not apply under mpirun (" + std::to_string(MpiJob::get().ranks()) +
                     " ranks): the ranks share the components instead, each holding about 1/" +
                     std::to_string(MpiJob::get().ranks()) + " of them");
  return options;
}

/// Asks the engine to keep component rows only at `positions` (the ones read out), so that
/// a long or chunked run does not hold N x D per component in its result. Callers leave it
/// out when --components writes every position.
inline void keep_only(depass::DecomposeOptions& options, const std::vector<long>& positions) {
  options.keep_positions = positions;
}

/// Decomposer::run, with a --memory-budget too small for the run reported as a usage error.
template <typename Scalar>
depass::Decomposition<Scalar> decompose_run(const depass::Model<Scalar>& model, const std::vector<int>& ids,
                                            const depass::Initialisation<Scalar>& init, const depass::DecomposeOptions& options,
                                            const depass::Hook<Scalar>& hook) {
  try {
    return depass::Decomposer<Scalar>(model).run(ids, init, options, hook);
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    const std::string prefix = "memory_budget_bytes = ";
    if (what.rfind(prefix, 0) != 0) throw;
    throw UsageError("--memory-budget: " + what.substr(prefix.size()) + " (give a larger budget)");
  }
}

/// Probability of `target` under the softmax of `logits`.
template <typename Vec>
double probability(const Vec& logits, int target) {
  const double peak = static_cast<double>(logits.maxCoeff());
  double partition = 0;
  for (Eigen::Index i = 0; i < logits.size(); ++i) partition += std::exp(static_cast<double>(logits(i)) - peak);
  return std::exp(static_cast<double>(logits(target)) - peak) / partition;
}

/// Text of a token for display and documents: the tokenizer's piece, except that the BOS
/// piece loses its surrounding whitespace (llama2.c's "\n<s>\n" is shown as <s>).
inline std::string display_piece(const depass::Tokenizer& tok, int id) {
  std::string p = tok.piece(id);
  if (id == tok.bos_id()) {
    const std::size_t a = p.find_first_not_of(" \t\r\n"), b = p.find_last_not_of(" \t\r\n");
    if (a != std::string::npos) p = p.substr(a, b - a + 1);
  }
  return p;
}

/// display_piece, or `<id>` without a tokenizer.
template <typename Scalar>
std::string piece(const Loaded<Scalar>& l, int id) {
  if (!l.tokenizer || id < 0 || id >= l.tokenizer->vocab_size()) return "<" + std::to_string(id) + ">";
  return display_piece(*l.tokenizer, id);
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
  const bool bf16 = options.gemm_precision == depass::GemmPrecision::Bf16;
  doc["precision"] = bf16 ? "bf16" : std::is_same<Scalar, float>::value ? "float" : "double";
  doc["mlp_split"] = depass::to_string(options.split);
  doc["temperature"] = options.temperature;
  doc["bos_sink"] = options.bos_sink;
  if (options.sink_ratio > 0) doc["sink_ratio"] = options.sink_ratio;
  if (options.chunk_size > 0) doc["chunk_size"] = options.chunk_size;
  if (options.memory_budget_bytes > 0) doc["memory_budget_bytes"] = options.memory_budget_bytes;
  return doc;
}

template <typename Scalar>
double max_residual(const depass::Decomposition<Scalar>& d) {
  double r = 0;
  for (const depass::BoundaryCheck& c : d.completeness()) r = std::max(r, c.residual_max_abs);
  return r;
}

/// "bf16_vs_float": how a bf16 run's scores agree with a float run's over the same items.
inline json agreement_json(const Eigen::VectorXd& bf16, const Eigen::VectorXd& reference) {
  const depass::ScoreAgreement a = depass::score_agreement(bf16, reference, 10);
  return {{"max_abs_error", a.max_abs_error},  {"max_abs_float_score", a.max_abs_reference},
          {"relative_error", a.relative_error()}, {"top_k", a.top_k},
          {"top_k_overlap", a.top_k_overlap},   {"spearman", a.spearman}};
}

/// The completeness check at every boundary: max |sum_m C[m] - x| and max |x|.
template <typename Scalar>
json completeness_json(const depass::Decomposition<Scalar>& d) {
  json checks = json::array();
  for (const depass::BoundaryCheck& c : d.completeness())
    checks.push_back({{"boundary", c.boundary.to_string()}, {"final_normed", c.final_normed},
                      {"residual_max_abs", c.residual_max_abs}, {"state_max_abs", c.state_max_abs}});
  return checks;
}

inline bool progress_enabled(const Args& args) { return !args.has("--no-progress") && isatty(fileno(stderr)); }

/// Progress over (decomposition runs) x (layers), driven by the engine hook's layer_out
/// events. Shown on stderr only when it is a terminal and --no-progress is absent; a
/// disabled Progress (batch items, which have their own bar) hands out an empty hook.
template <typename Scalar>
class Progress {
 public:
  Progress(const Args& args, const std::string& label, long total, bool enabled = true)
      : bar_(std::cerr, label, total, enabled && progress_enabled(args)), enabled_(enabled) {}
  depass::Hook<Scalar> hook() {
    if (!enabled_) return {};
    depass::output::ProgressBar* bar = &bar_;
    return [bar](const depass::HookEvent<Scalar>& e) {
      if (std::string(e.name) == "layer_out") bar->advance();
    };
  }
  void finish() { bar_.finish(); }

 private:
  depass::output::ProgressBar bar_;
  bool enabled_;
};

/// Both hooks, in order (either may be empty).
template <typename Scalar>
depass::Hook<Scalar> both(depass::Hook<Scalar> a, depass::Hook<Scalar> b) {
  if (!a) return b;
  if (!b) return a;
  return [a, b](const depass::HookEvent<Scalar>& e) {
    a(e);
    b(e);
  };
}

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

/// The output format: --format, else from the extension of --output, else text (json
/// for --batch, whose output is JSON lines).
inline std::string output_format(const Args& args) {
  static const std::vector<std::string> known = {"text", "json", "csv", "npy", "html"};
  if (args.has("--format")) {
    const std::string f = args.get("--format");
    for (const auto& k : known)
      if (k == f) return f;
    if (f == "jsonl") return "json";
    throw UsageError("--format '" + f + "' is unknown (allowed: text, json, csv, npy, html)");
  }
  if (args.has("--batch")) return "json";
  if (!args.has("--output")) return "text";
  const std::string ext = extension_of(args.get("--output"));
  if (ext == "json" || ext == "jsonl") return "json";
  if (ext == "csv") return "csv";
  if (ext == "npy") return "npy";
  if (ext == "html" || ext == "htm") return "html";
  if (ext == "txt") return "text";
  throw UsageError("cannot tell the format of --output '" + args.get("--output") +
                   "' from its extension (.json, .csv, .npy, .html, .txt); add --format");
}

inline void write_file(const std::string& path, const std::string& bytes) {
  if (!MpiJob::get().writes()) return;  // under mpirun rank 0 writes
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

/// Options that name a file the command writes.
inline const std::vector<std::string> kOutputFileOptions = {"--output", "--json", "--components", "--logits", "--trace-npy"};

/// Refuses two outputs to the same file (compared after resolving ".", ".." and symlinks).
inline void check_distinct_outputs(const Args& args) {
  namespace fs = std::filesystem;
  std::vector<std::pair<std::string, std::string>> seen;  // (resolved path, option)
  for (const std::string& option : kOutputFileOptions) {
    if (!args.has(option)) continue;
    std::error_code ec;
    fs::path p = fs::weakly_canonical(fs::absolute(args.get(option), ec), ec);
    if (ec) p = fs::path(args.get(option)).lexically_normal();
    for (const auto& [other, other_option] : seen)
      if (other == p.string())
        throw UsageError(other_option + " and " + option + " both write '" + args.get(option) +
                         "'; give each output its own file");
    seen.emplace_back(p.string(), option);
  }
}

/// True when some output goes to a file (not stdout).
inline bool writes_files(const Args& args) {
  for (const std::string& option : kOutputFileOptions)
    if (args.has(option)) return true;
  return false;
}

/// Validates the output options before any work is done (so that a bad --format fails fast).
inline void check_output_options(const Args& args) {
  output_format(args);
  stdout_color(args);
  top_rows(args);
  for (const char* option : {"--components", "--trace-npy"})
    if (args.has(option) && extension_of(args.get(option)) != "npy")
      throw UsageError(std::string(option) + " writes a .npy file; its name must end in .npy, got '" + args.get(option) + "'");
  check_distinct_outputs(args);
  if (args.has("--quiet") && !writes_files(args) && output_format(args) == "text")
    throw UsageError("--quiet silences the text view, and nothing else would be written: add --output FILE or --json FILE");
}

inline depass::output::TerminalOptions terminal_options(const Args& args) {
  depass::output::TerminalOptions term;
  term.top = top_rows(args);
  if (args.has("--top")) term.step_top = term.top;  // generate --explain lists 3 per step unless asked
  return term;
}

/// `doc` in the format of --format / --output (text: plain, no colour).
inline std::string render(const Args& args, const json& doc, const std::string& format) {
  if (format == "json") return depass::output::to_json_text(doc);
  if (format == "csv") return depass::output::to_csv_text(doc);
  if (format == "npy") return depass::output::npy_bytes(depass::output::scores_array(doc));
  if (format == "html") {
    depass::output::HtmlOptions html;
    html.top = top_rows(args);
    return depass::output::render_html(doc, html);
  }
  return depass::output::render_terminal(doc, terminal_options(args));
}

/// A note on stderr about a file written (not with --quiet).
inline void note_written(const Args& args, const std::string& path, const std::string& what) {
  if (!args.has("--quiet")) std::cerr << "depass: wrote " << path << " (" << what << ")\n";
}

/// Writes `doc` as chosen by --format / --output (stdout when no --output), plus --json.
/// With --output or --json, the text view still goes to stdout (a note on stderr names
/// each file) unless --quiet.
inline void emit(const Args& args, const json& doc) {
  const std::string format = output_format(args);
  const bool quiet = args.has("--quiet");
  if (args.has("--json")) {
    write_file(args.get("--json"), depass::output::to_json_text(doc));
    note_written(args, args.get("--json"), "json");
  }
  depass::output::TerminalOptions term = terminal_options(args);
  if (args.has("--output")) {
    write_file(args.get("--output"), render(args, doc, format));
    if (format != "text" && !quiet) {
      term.color = stdout_color(args);
      std::cout << depass::output::render_terminal(doc, term);
    }
    note_written(args, args.get("--output"), format);
  } else if (format == "text") {
    if (!quiet) {
      term.color = stdout_color(args);
      std::cout << depass::output::render_terminal(doc, term);
    }
  } else {
    if (format == "npy" && isatty(fileno(stdout)))
      throw UsageError("--format npy is binary; give --output FILE.npy or redirect stdout");
    const std::string bytes = render(args, doc, format);
    std::cout.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  std::cout.flush();
}

}  // namespace cli
