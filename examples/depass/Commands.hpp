#pragma once
// The depass subcommands: name, one-line summary, --help text and entry point.

#include <string>
#include <vector>

#include "Cli.hpp"

namespace cli {

struct Command {
  const char* name;
  const char* summary;
  const char* help;
  int (*run)(const Args&);
};

int command_tokens(const Args& args);
int command_generate(const Args& args);
int command_modules(const Args& args);
int command_heads(const Args& args);
int command_neurons(const Args& args);
int command_subspace(const Args& args);
int command_decode(const Args& args);
int command_tokenize(const Args& args);
int command_info(const Args& args);
int command_evaluate(const Args& args);

extern const char* kTokensHelp;
extern const char* kGenerateHelp;
extern const char* kModulesHelp;
extern const char* kHeadsHelp;
extern const char* kNeuronsHelp;
extern const char* kSubspaceHelp;
extern const char* kDecodeHelp;
extern const char* kTokenizeHelp;
extern const char* kInfoHelp;
extern const char* kEvaluateHelp;

/// Runs a templated command body in the precision of --precision (default `fallback`).
/// Built with DEPASS_CLI_DOUBLE_ONLY (the sanitizer build, docs/robustness.md) the body
/// exists for double only and float is refused, unless AlwaysBoth (cheap bodies).
/// WithBf16: the command's DePass propagation can run bf16 (a float model whose products
/// run in bf16, decompose_options); elsewhere bf16 is refused.
template <bool AlwaysBoth = false, bool WithBf16 = false, typename Function>
int with_precision(const Args& args, const std::string& fallback, Function run) {
  const std::string precision = args.get("--precision", fallback);
  if (precision == "bf16" && !WithBf16)
    throw UsageError("--precision bf16 applies to the DePass propagation of tokens, generate --explain, heads, neurons, "
                     "modules and evaluate; this command runs float or double");
  if (precision != "float" && precision != "double" && precision != "bf16")
    throw UsageError("--precision must be float, double or bf16, got '" + precision + "'");
#ifdef DEPASS_CLI_DOUBLE_ONLY
  constexpr bool with_float = AlwaysBoth;
#else
  constexpr bool with_float = true;
#endif
  if constexpr (with_float) {
    if (precision == "float" || precision == "bf16") return run(float());
  } else if (precision == "float" || precision == "bf16") {
    throw UsageError("--precision " + precision + ": this build of depass has double only (DEPASS_CLI_DOUBLE_ONLY, the sanitizer build)");
  }
  return run(double());
}

// Option text shared by the help pages.
#define DEPASS_CLI_MODEL_LINE                                                                 \
  "  --model PATH         a llama2.c checkpoint (.bin), a GGUF file (.gguf, tokenizer inside)\n" \
  "                       or a Hugging Face model directory (config.json, model.safetensors\n" \
  "                       or its shards, tokenizer.json); the format is detected from the file\n"

#define DEPASS_CLI_COMPARE_FLOAT_HELP                                                           \
  "  --compare-float      with --precision bf16: also run in float and report how the bf16\n"    \
  "                       scores agree (max error, top-10 overlap, Spearman; JSON \"bf16_vs_float\")\n"

#define DEPASS_CLI_MODEL_HELP                                                                 \
  DEPASS_CLI_MODEL_LINE                                                                       \
  "  --tokenizer PATH     tokenizer (llama2.c tok*.bin, tokenizer.json or .gguf); default: found\n" \
  "                       next to the checkpoint / inside the model directory or GGUF file\n" \
  "  --precision P        float, double (default) or bf16: a float model whose DePass products\n" \
  "                       run in bfloat16 with float sums (oneDNN builds; see --compare-float)\n" \
  "  --threads N          threads for every parallel loop and matrix product (default:\n"  \
  "                       OpenMP's default, all cores; small blocks run on one anyway)\n"

#define DEPASS_CLI_INPUT_HELP                                                                 \
  "  --prompt TEXT        text to explain (a BOS token is prepended)\n"                       \
  "  --prompt-file FILE   the prompt from a file (- for stdin; one trailing newline dropped)\n" \
  "  --ids LIST           token ids instead of text, comma separated (no tokenizer needed)\n" \
  "  --position P         position whose prediction is explained; negative counts from the\n" \
  "                       end (default -1, the last token)\n"                                  \
  "  --target T           token whose logit is explained (default: the top prediction): an\n" \
  "                       integer is an id, other values are text (--target \" girl\"); force\n" \
  "                       either with id:5 / text:5. A text must be one token\n"             \
  "  --target-position first  for a text of several tokens, use its first token\n"          \
  "  --contrast T         explain logit(target) - logit(T) instead (same rule as --target)\n"

#define DEPASS_CLI_BATCH_HELP                                                                 \
  "  --batch FILE.jsonl   one request per line ({\"prompt\": ...} or {\"ids\": [...]}, optional\n" \
  "                       \"target\", \"contrast\", \"position\"); - reads stdin. The model loads\n" \
  "                       once; results stream as JSON lines (each with its \"line\"); a bad\n" \
  "                       line gives an error object there and exit status 1\n"

#define DEPASS_CLI_SPLIT_HELP                                                                 \
  "  --mlp-split RULE     neuron split: softmax (default, the paper's), argmax, proportional\n" \
  "                       or path (integrated over gate and up; docs/method.md)\n"            \
  "  --temperature T      softmax split temperature (default 0.1)\n"                          \
  "  --no-bos-sink        let the first token receive MLP output at later positions\n"        \
  "  --sink-ratio R       also treat as sinks the positions a layer's attention gives >= R x\n" \
  "                       uniform attention (mean over heads and >= 8 later queries; e.g. 4)\n" \
  "  --chunk-size C       propagate components in chunks of C >= 1 (less memory; results then\n" \
  "                       carry a \"chunk residual\", see docs/cli.md)\n"                    \
  "  --memory-budget B    chunk so that the components fit in B bytes (512K, 200M, 2G)\n"

#define DEPASS_CLI_TRACE_HELP                                                                 \
  "  --trace              also trace every component's logit (logit lens) at every layer\n"  \
  "                       boundary (JSON field \"trace\", a chart in HTML; not with chunking)\n" \
  "  --trace-npy FILE     write the trace as a (boundaries, components) float64 .npy\n"

#define DEPASS_CLI_OUTPUT_HELP                                                                \
  "  --format F           text (default), json, csv, npy or html\n"                          \
  "  --output FILE        write there instead of stdout; the format follows the extension\n" \
  "                       (.json .csv .npy .html .txt) unless --format is given\n"          \
  "  --json FILE          also write the JSON document to FILE\n"                            \
  "  --quiet              with --output/--json: no text view on stdout, no notes on stderr\n" \
  "  --top K              rows in ranked tables (default 10)\n"                              \
  "  --color WHEN         auto (default: colour on a terminal unless NO_COLOR is set),\n"     \
  "                       always or never\n"                                                  \
  "  --no-progress        no progress bar on stderr (it only shows on a terminal anyway)\n"   \
  "exit status: 0 success, 1 failure (unreadable or malformed file, failed batch lines),\n"  \
  "2 command-line mistake\n"

}  // namespace cli
