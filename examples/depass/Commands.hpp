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
int command_info(const Args& args);

extern const char* kTokensHelp;
extern const char* kGenerateHelp;
extern const char* kModulesHelp;
extern const char* kHeadsHelp;
extern const char* kNeuronsHelp;
extern const char* kSubspaceHelp;
extern const char* kDecodeHelp;
extern const char* kInfoHelp;

/// Runs a templated command body in the precision of --precision (default `fallback`).
template <typename Function>
int with_precision(const Args& args, const std::string& fallback, Function run) {
  const std::string precision = args.get("--precision", fallback);
  if (precision == "float") return run(float());
  if (precision == "double") return run(double());
  throw UsageError("--precision must be float or double, got '" + precision + "'");
}

// Option text shared by the help pages.
#define DEPASS_CLI_MODEL_HELP                                                                 \
  "  --model PATH         llama2.c .bin checkpoint, GGUF file or Hugging Face model directory\n" \
  "  --tokenizer PATH     tokenizer (llama2.c tok*.bin or tokenizer.json); default: found\n" \
  "                       next to the checkpoint / inside the model directory\n"             \
  "  --precision P        float or double (default double)\n"                                  \
  "  --threads N          threads for matrix products (default: OpenMP's default; 1 is\n"    \
  "                       fastest for tiny models and on a busy machine)\n"

#define DEPASS_CLI_INPUT_HELP                                                                 \
  "  --prompt TEXT        text to explain (a BOS token is prepended)\n"                       \
  "  --ids LIST           token ids instead of text, comma separated\n"                       \
  "  --position P         position whose prediction is explained; negative counts from the\n" \
  "                       end (default -1, the last token)\n"                                  \
  "  --target ID          token id whose logit is explained (default: the top prediction)\n"

#define DEPASS_CLI_SPLIT_HELP                                                                 \
  "  --mlp-split RULE     softmax (default), argmax or proportional neuron split\n"           \
  "  --temperature T      softmax split temperature (default 0.1)\n"                          \
  "  --no-bos-sink        let the first token receive MLP output at later positions\n"        \
  "  --chunk-size C       propagate components in chunks of C (less memory; results then\n"  \
  "                       carry a \"chunk residual\", see docs/cli.md)\n"

#define DEPASS_CLI_OUTPUT_HELP                                                                \
  "  --format F           text (default), json, csv, npy or html\n"                          \
  "  --output FILE        write there instead of stdout; the format follows the extension\n" \
  "                       (.json .csv .npy .html .txt) unless --format is given\n"          \
  "  --json FILE          also write the JSON document to FILE\n"                            \
  "  --top K              rows in ranked tables (default 10)\n"                              \
  "  --color WHEN         auto (default: colour on a terminal unless NO_COLOR is set),\n"     \
  "                       always or never\n"                                                  \
  "  --no-progress        no progress bar on stderr (it only shows on a terminal anyway)\n"

}  // namespace cli
