#pragma once
// Running a command once (the command line's input) or over a JSON-lines batch
// (--batch FILE.jsonl, or - for stdin): the model is loaded once, each line is one
// request, results stream out as JSON lines in input order. A bad line becomes an error
// object at its place (and a message on stderr); the other lines still run; the exit
// status is 1 if any line failed.
//
// A line is an object with "prompt" (text, BOS prepended) or "ids" (token ids), and
// optionally "target", "contrast" (an id, or a string read by the --target rule) and
// "position" (an integer, negative from the end). --position, --target, --contrast and
// --target-position on the command line are defaults for lines that leave them out.
// Blank lines are skipped (but counted, so line numbers are those of the file).

#include <optional>
#include <string>
#include <vector>

#include "Inputs.hpp"

namespace cli {

struct BatchLine {
  long number = 0;  // 1-based line number in the input
  std::string text;
};

/// What a command runs on: one request, or the lines of a batch.
struct Inputs {
  std::optional<Request> single;
  std::vector<BatchLine> batch;
};

/// Options that make no sense with --batch (one file, or the input itself).
inline void check_batch_options(const Args& args) {
  for (const char* option : {"--prompt", "--prompt-file", "--ids", "--json", "--components", "--trace-npy", "--logits"})
    if (args.has(option))
      throw UsageError(std::string(option) + " does not apply with --batch (each line gives its input; results go to " +
                       "stdout or --output as JSON lines)");
  if (args.has("--format") && output_format(args) != "json")
    throw UsageError("--batch writes JSON lines; --format must be json (or jsonl), got '" + args.get("--format") + "'");
  if (args.has("--output") && output_format(args) != "json")
    throw UsageError("--batch writes JSON lines; give --output a .jsonl or .json name (or add --format jsonl)");
}

/// The command line's request, or the batch's lines (read before the model loads, so
/// that a missing file fails fast).
inline Inputs read_inputs(const Args& args) {
  Inputs in;
  if (!args.has("--batch")) {
    in.single = request_from_args(args);
    return in;
  }
  check_batch_options(args);
  request_defaults(args);  // validates --target-position
  std::istringstream lines(read_input("--batch", args.get("--batch")));
  std::string line;
  for (long number = 1; std::getline(lines, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    in.batch.push_back(BatchLine{number, line});
  }
  return in;
}

/// The request of one batch line (UsageError naming the problem).
inline Request request_from_line(const std::string& text, const Request& defaults) {
  json object;
  try {
    object = json::parse(text);
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    const std::size_t bracket = what.find("] ");
    throw UsageError("invalid JSON: " + (bracket == std::string::npos ? what : what.substr(bracket + 2)));
  }
  if (!object.is_object()) throw UsageError("expected a JSON object such as {\"prompt\": \"...\"}, got " + object.dump());
  Request r = defaults;
  r.prefix = "field ";
  static const std::vector<std::string> known = {"prompt", "ids", "target", "contrast", "position"};
  for (auto it = object.begin(); it != object.end(); ++it)
    if (std::find(known.begin(), known.end(), it.key()) == known.end()) {
      const std::string near = nearest_option(it.key(), known);
      throw UsageError("unknown field \"" + it.key() + "\"" + (near.empty() ? "" : " (did you mean \"" + near + "\"?)") +
                       "; allowed: prompt, ids, target, contrast, position");
    }
  if (object.contains("prompt") == object.contains("ids"))
    throw UsageError("give exactly one of \"prompt\" and \"ids\"");
  if (object.contains("prompt")) {
    if (!object["prompt"].is_string()) throw UsageError("field prompt must be a string");
    r.prompt = object["prompt"].get<std::string>();
  } else {
    const json& ids = object["ids"];
    if (!ids.is_array()) throw UsageError("field ids must be an array of token ids");
    std::vector<int> v;
    for (const json& id : ids) {
      if (!id.is_number_integer() || id.get<long long>() < 0 || id.get<long long>() > (1LL << 30))
        throw UsageError("field ids: " + id.dump() + " is not a token id");
      v.push_back(id.get<int>());
    }
    r.ids = v;
  }
  for (const char* key : {"target", "contrast"}) {
    if (!object.contains(key)) continue;
    const json& v = object[key];
    std::string spec;
    if (v.is_number_integer()) spec = "id:" + std::to_string(v.get<long long>());
    else if (v.is_string()) spec = v.get<std::string>();
    else throw UsageError(std::string("field ") + key + " must be a token id or a string, got " + v.dump());
    (std::string(key) == "target" ? r.target : r.contrast) = spec;
  }
  if (object.contains("position")) {
    if (!object["position"].is_number_integer()) throw UsageError("field position must be an integer");
    r.position = object["position"].get<long>();
  }
  return r;
}

/// The answer to one batch line as a JSON line; a failure becomes an error record.
template <typename Answer>
std::string answer_line(const BatchLine& line, const Request& defaults, Answer& answer) {
  json result;
  try {
    result = answer(request_from_line(line.text, defaults));
  } catch (const std::exception& e) {
    result = {{"schema", depass::output::schema::kError}, {"error", e.what()}};
  }
  result["line"] = line.number;
  return result.dump(-1, ' ', false, json::error_handler_t::replace);
}

/// Runs `answer(request)` on every batch line, streaming one JSON line per input line.
/// Under mpirun the ranks take the lines in turn (rank r the r-th of each round), and rank
/// 0 writes every round's answers in input order.
template <typename Answer>
int run_batch(const Args& args, const std::string& command, const std::vector<BatchLine>& lines, Answer answer) {
  MpiJob& job = MpiJob::get();
  const Request defaults = request_defaults(args);
  std::ofstream file;
  const bool to_file = args.has("--output") && job.writes();
  if (to_file) {
    file.open(args.get("--output"), std::ios::binary | std::ios::trunc);
    if (!file) throw std::runtime_error("cannot write '" + args.get("--output") + "'");
  }
  std::ostream& out = to_file ? static_cast<std::ostream&>(file) : std::cout;
  depass::output::ProgressBar bar(std::cerr, command, static_cast<long>(lines.size()), progress_enabled(args), "items");
  long failed = 0;
  const std::size_t ranks = static_cast<std::size_t>(job.ranks());
  for (std::size_t first = 0; first < lines.size(); first += ranks) {
    const std::size_t mine = first + static_cast<std::size_t>(job.rank());
    for (const std::string& text : job.gather(mine < lines.size() ? answer_line(lines[mine], defaults, answer) : "")) {
      if (text.empty()) continue;  // a rank past the last line
      const json result = json::parse(text);
      if (result.value("schema", "") == depass::output::schema::kError) {
        ++failed;
        bar.suspend();  // the message on a line of its own; the bar is redrawn after it
        std::cerr << "depass " << command << ": line " << result["line"].get<long>() << ": "
                  << result["error"].get<std::string>() << "\n";
      }
      out << text << "\n";
      out.flush();
      bar.advance();
    }
  }
  bar.finish();
  if (to_file) {
    file.close();
    if (!file) throw std::runtime_error("error while writing '" + args.get("--output") + "'");
    note_written(args, args.get("--output"), "JSON lines");
  }
  if (failed) std::cerr << "depass " << command << ": " << failed << " of " << lines.size() << " batch lines failed\n";
  return failed ? 1 : 0;
}

/// One run on the command line's input (with a progress bar over `layers` layer steps),
/// or the batch.
template <typename Scalar, typename Answer>
int run_inputs(const Args& args, const std::string& command, const Inputs& in, long layers, Answer answer) {
  if (!in.single) return run_batch(args, command, in.batch, [&](const Request& r) { return answer(r, depass::Hook<Scalar>{}); });
  Progress<Scalar> progress(args, command, layers);
  const json doc = answer(*in.single, progress.hook());
  progress.finish();
  emit(args, doc);
  return 0;
}

}  // namespace cli
