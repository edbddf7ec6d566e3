// depass: command-line front end.
//   depass generate --model PATH [--tokenizer PATH] --prompt TEXT [--max-new N]
//   depass tokens   --model PATH [--tokenizer PATH] (--prompt TEXT | --ids 1,2,3) ... --json FILE
// Run `depass --help` or `depass COMMAND --help` for the options.

#include <depass/depass.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

/// Thrown for command-line mistakes: printed with a hint to use --help.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const char* kMainHelp =
    "depass: exact attributions for transformer language models (DePass)\n"
    "\n"
    "usage: depass COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  generate   greedy text generation\n"
    "  tokens     attribute a prediction to the input tokens\n"
    "\n"
    "--model accepts a llama2.c checkpoint (.bin, with --tokenizer) or a Hugging Face\n"
    "model directory (config.json + model.safetensors + tokenizer.json); the format is\n"
    "detected from the file. Run `depass COMMAND --help` for a command's options.\n";

const char* kGenerateHelp =
    "usage: depass generate --model PATH [--tokenizer PATH] --prompt TEXT [--max-new N]\n"
    "                       [--precision float|double]\n"
    "\n"
    "Greedy (temperature 0) continuation of the prompt, printed as it is produced.\n"
    "  --model PATH       llama2.c .bin checkpoint or Hugging Face model directory\n"
    "  --tokenizer PATH   llama2.c tokenizer (tok*.bin); default: tok<vocab>.bin or\n"
    "                     tokenizer.bin next to the checkpoint\n"
    "  --prompt TEXT      the prompt (a BOS token is prepended)\n"
    "  --max-new N        tokens to generate (default 256); stops early at end of text\n"
    "  --precision P      float (default) or double\n"
    "\n"
    "example:\n"
    "  depass generate --model models/stories260K/stories260K.bin \\\n"
    "      --tokenizer models/stories260K/tok512.bin --prompt \"Once upon a time\"\n";

const char* kTokensHelp =
    "usage: depass tokens --model PATH [--tokenizer PATH] (--prompt TEXT | --ids 1,2,3)\n"
    "                     [--position -1] [--target ID] [--mlp-split softmax|argmax|proportional]\n"
    "                     [--temperature 0.1] [--no-bos-sink] [--precision float|double]\n"
    "                     [--json FILE] [--top K]\n"
    "\n"
    "Token-level DePass: how much each input token contributes to the logit of the target\n"
    "token at one position. The scores plus the bias score sum to the real logit.\n"
    "  --prompt TEXT        text to tokenize (a BOS token is prepended)\n"
    "  --ids LIST           token ids instead of text, comma separated\n"
    "  --position P         position to explain; negative counts from the end (default -1)\n"
    "  --target ID          token whose logit is explained (default: the model's top prediction)\n"
    "  --mlp-split RULE     how MLP neurons are split among tokens (default softmax)\n"
    "  --temperature T      softmax split temperature (default 0.1)\n"
    "  --no-bos-sink        let the first token receive MLP output at later positions\n"
    "  --precision P        float or double (default double)\n"
    "  --json FILE          write the result as JSON (schema in the README)\n"
    "  --top K              rows in the printed ranking (default 10)\n"
    "\n"
    "example:\n"
    "  depass tokens --model models/stories260K/stories260K.bin \\\n"
    "      --tokenizer models/stories260K/tok512.bin --prompt \"Once upon a time\" --json out.json\n";

class Args {
 public:
  Args(int argc, char** argv, int first) {
    for (int i = first; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg.rfind("--", 0) != 0) throw UsageError("unexpected argument '" + arg + "'");
      const std::size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        values_[arg.substr(0, eq)] = arg.substr(eq + 1);
      } else if (flag(arg)) {
        values_[arg] = "1";
      } else {
        if (i + 1 >= argc) throw UsageError("option " + arg + " needs a value");
        values_[arg] = argv[++i];
      }
    }
  }
  static bool flag(const std::string& name) {
    return name == "--help" || name == "-h" || name == "--no-bos-sink";
  }
  bool has(const std::string& name) const { return values_.count(name) != 0; }
  std::string get(const std::string& name, const std::string& fallback = "") const {
    auto it = values_.find(name);
    return it == values_.end() ? fallback : it->second;
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
    if (used != text.size() || text.empty())
      throw UsageError("option " + name + " expects an integer, got '" + text + "'");
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
    if (used != text.size() || text.empty())
      throw UsageError("option " + name + " expects a number, got '" + text + "'");
    return value;
  }
  void allow_only(const std::vector<std::string>& allowed) const {
    for (const auto& kv : values_) {
      bool ok = false;
      for (const auto& a : allowed) ok = ok || a == kv.first;
      if (!ok) throw UsageError("unknown option " + kv.first);
    }
  }

 private:
  std::map<std::string, std::string> values_;
};

std::vector<int> parse_ids(const std::string& text) {
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
      throw UsageError("--ids: '" + item + "' is not a token id");
    ids.push_back(static_cast<int>(value));
  }
  if (ids.empty()) throw UsageError("--ids is empty");
  return ids;
}

/// Token text for a terminal table: control characters shown as escapes.
std::string printable(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else out += static_cast<char>(c);
  }
  return out;
}

bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

std::string directory_of(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

template <typename Scalar>
struct Loaded {
  depass::Model<Scalar> model;
  depass::Tokenizer tokenizer;
};

template <typename Scalar>
Loaded<Scalar> load(const Args& args) {
  const std::string path = args.require("--model");
  depass::Model<Scalar> model(depass::io::load_checkpoint<Scalar>(path));
  const depass::io::Format format = depass::io::detect_format(path);
  if (args.has("--tokenizer")) {
    const std::string tok = args.get("--tokenizer");
    if (format == depass::io::Format::HuggingFace || tok.find(".json") != std::string::npos)
      return {std::move(model), depass::Tokenizer::from_huggingface(tok)};
    return {std::move(model), depass::Tokenizer::from_llama2c(tok, model.config().vocab_size)};
  }
  if (format == depass::io::Format::HuggingFace)
    return {std::move(model), depass::Tokenizer::from_huggingface(path)};
  // llama2.c keeps its tokenizer beside the checkpoint.
  const std::string dir = directory_of(path);
  for (const std::string& name : {"tok" + std::to_string(model.config().vocab_size) + ".bin", std::string("tokenizer.bin")}) {
    if (file_exists(dir + "/" + name))
      return {std::move(model), depass::Tokenizer::from_llama2c(dir + "/" + name, model.config().vocab_size)};
  }
  throw UsageError("no tokenizer found next to " + path + "; pass --tokenizer PATH");
}

template <typename Scalar>
int run_generate(const Args& args) {
  Loaded<Scalar> loaded = load<Scalar>(args);
  const long max_new = args.integer("--max-new", 256);
  if (max_new < 0 || max_new > 1L << 20)
    throw UsageError("--max-new must be in [0, 1048576], got " + std::to_string(max_new));
  const std::vector<int> prompt = loaded.tokenizer.encode(args.require("--prompt"), true);
  loaded.model.check_tokens(prompt);
  // Echo the prompt, then stream each new token as it is chosen.
  int previous = prompt.front();
  for (std::size_t i = 1; i < prompt.size(); ++i) {
    std::cout << loaded.tokenizer.token_text(previous, prompt[i]);
    previous = prompt[i];
  }
  std::cout.flush();
  std::vector<int> sequence = prompt;
  const int eos = loaded.tokenizer.eos_id();
  for (long step = 0; step < max_new && static_cast<int>(sequence.size()) < loaded.model.config().max_seq_len; ++step) {
    const int next = loaded.model.generate(sequence, 1).front();
    if (next == eos || (next == loaded.tokenizer.bos_id() && next >= 0)) break;
    std::cout << loaded.tokenizer.token_text(sequence.back(), next) << std::flush;
    sequence.push_back(next);
  }
  std::cout << "\n";
  return 0;
}

template <typename Scalar>
int run_tokens(const Args& args) {
  Loaded<Scalar> loaded = load<Scalar>(args);
  const depass::Model<Scalar>& model = loaded.model;
  const depass::Tokenizer& tok = loaded.tokenizer;
  if (args.has("--prompt") == args.has("--ids")) throw UsageError("give exactly one of --prompt and --ids");
  const std::vector<int> ids = args.has("--ids") ? parse_ids(args.get("--ids")) : tok.encode(args.get("--prompt"), true);
  model.check_tokens(ids);
  const long n = static_cast<long>(ids.size());
  long position = args.integer("--position", -1);
  if (position < -n || position >= n)
    throw UsageError("--position " + std::to_string(position) + " is out of range [" + std::to_string(-n) + ", " +
                     std::to_string(n) + ")");
  if (position < 0) position += n;

  depass::DecomposeOptions options;
  options.split = depass::parse_mlp_split(args.get("--mlp-split", "softmax"));
  options.temperature = args.number("--temperature", 0.1);
  options.bos_sink = !args.has("--no-bos-sink");
  const depass::Decomposition<Scalar> result =
      depass::Decomposer<Scalar>(model).run(ids, depass::Initialisation<Scalar>::tokens(), options);

  const depass::Vector<Scalar> logits = result.logits(position);
  Eigen::Index top = 0;
  logits.maxCoeff(&top);
  const long target = args.integer("--target", static_cast<long>(top));
  if (target < 0 || target >= model.config().vocab_size)
    throw UsageError("--target " + std::to_string(target) + " is out of range [0, " +
                     std::to_string(model.config().vocab_size) + ")");
  const depass::Vector<Scalar> scores = result.component_logits(position, static_cast<int>(target));
  const double peak = static_cast<double>(logits.maxCoeff());
  const double partition = static_cast<double>((logits.array() - static_cast<Scalar>(peak)).exp().sum());
  const double logit = static_cast<double>(result.logit(position, static_cast<int>(target)));
  const double prob = std::exp(logit - peak) / partition;
  double residual = 0;
  for (const depass::BoundaryCheck& c : result.completeness()) residual = std::max(residual, c.residual_max_abs);

  nlohmann::json out;
  out["schema"] = "depass.tokens/1";
  out["model"] = args.get("--model");
  out["precision"] = std::is_same<Scalar, float>::value ? "float" : "double";
  out["mlp_split"] = depass::to_string(options.split);
  out["temperature"] = options.temperature;
  out["bos_sink"] = options.bos_sink;
  out["tokens"] = nlohmann::json::array();
  for (int id : ids) out["tokens"].push_back({{"id", id}, {"text", tok.piece(id)}});
  out["position"] = position;
  out["target"] = {{"id", target}, {"text", tok.piece(static_cast<int>(target))}, {"logit", logit}, {"prob", prob}};
  out["scores"] = nlohmann::json::array();
  for (long m = 0; m < n; ++m) out["scores"].push_back(static_cast<double>(scores(m)));
  out["bias_score"] = static_cast<double>(scores(result.bias_component()));
  out["residual_max_abs"] = residual;

  if (args.has("--json")) {
    std::ofstream file(args.get("--json"));
    if (!file) throw std::runtime_error("cannot write '" + args.get("--json") + "'");
    file << std::setprecision(17) << out.dump(2) << "\n";
    if (!file) throw std::runtime_error("error while writing '" + args.get("--json") + "'");
  }

  // A ranked table for people: strongest contributions first.
  std::vector<long> order(static_cast<std::size_t>(n));
  for (long m = 0; m < n; ++m) order[static_cast<std::size_t>(m)] = m;
  std::sort(order.begin(), order.end(), [&](long a, long b) { return std::abs(scores(a)) > std::abs(scores(b)); });
  const long rows = std::min<long>(n, std::max<long>(0, args.integer("--top", 10)));
  std::cout << "target " << target << " '" << printable(tok.piece(static_cast<int>(target))) << "' at position " << position
            << ": logit " << logit << ", prob " << prob << "\n";
  std::cout << "  rank  pos  token            score\n";
  for (long r = 0; r < rows; ++r) {
    const long m = order[static_cast<std::size_t>(r)];
    std::ostringstream text;
    text << "'" << printable(tok.piece(ids[static_cast<std::size_t>(m)])) << "'";
    std::cout << std::setw(6) << r + 1 << std::setw(5) << m << "  " << std::left << std::setw(16) << text.str()
              << std::right << std::setw(10) << std::fixed << std::setprecision(4) << scores(m) << "\n"
              << std::defaultfloat;
  }
  std::cout << "  bias score " << scores(result.bias_component()) << ", completeness residual " << residual << "\n";
  return 0;
}

template <typename Function>
int with_precision(const Args& args, const std::string& fallback, Function run) {
  const std::string precision = args.get("--precision", fallback);
  if (precision == "float") return run(float());
  if (precision == "double") return run(double());
  throw UsageError("--precision must be float or double, got '" + precision + "'");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kMainHelp;
    return 2;
  }
  const std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kMainHelp;
    return 0;
  }
  const char* help = command == "generate" ? kGenerateHelp : command == "tokens" ? kTokensHelp : nullptr;
  if (!help) {
    std::cerr << "depass: unknown command '" << command << "'\n\n" << kMainHelp;
    return 2;
  }
  try {
    const Args args(argc, argv, 2);
    if (args.has("--help") || args.has("-h")) {
      std::cout << help;
      return 0;
    }
    if (command == "generate") {
      args.allow_only({"--model", "--tokenizer", "--prompt", "--max-new", "--precision"});
      return with_precision(args, "float", [&](auto scalar) { return run_generate<decltype(scalar)>(args); });
    }
    args.allow_only({"--model", "--tokenizer", "--prompt", "--ids", "--position", "--target", "--mlp-split",
                     "--temperature", "--no-bos-sink", "--precision", "--json", "--top"});
    return with_precision(args, "double", [&](auto scalar) { return run_tokens<decltype(scalar)>(args); });
  } catch (const UsageError& e) {
    std::cerr << "depass " << command << ": " << e.what() << "\n(see depass " << command << " --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "depass " << command << ": error: " << e.what() << "\n";
    return 1;
  }
}
