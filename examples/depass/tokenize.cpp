// depass tokenize: the token ids and pieces of a text (or the pieces of given ids).

#include <cstdint>

#include "Commands.hpp"
#include "Inputs.hpp"

namespace cli {

const char* kTokenizeHelp =
    "usage: depass tokenize (--model PATH | --tokenizer PATH) (--prompt TEXT | --prompt-file FILE | --ids LIST)\n"
    "                       [--no-bos] [--format text|json|csv|npy] [--output FILE] [--json FILE]\n"
    "\n"
    "The tokens of a text as the model sees them: position, id and piece of each, BOS first\n"
    "(as every other command prepends it to --prompt) unless --no-bos. With --ids, the pieces\n"
    "of those ids. Only the tokenizer is read, not the weights.\n"
    "\n"
    DEPASS_CLI_MODEL_LINE
    "  --tokenizer PATH     a tokenizer on its own: llama2.c tok*.bin, tokenizer.json (or its\n"
    "                       directory) or a .gguf file; default: the one of --model\n"
    "  --prompt TEXT        the text to tokenize\n"
    "  --prompt-file FILE   the text from a file (- for stdin; one trailing newline dropped)\n"
    "  --ids LIST           show the pieces of these ids instead, comma separated\n"
    "  --no-bos             do not prepend the BOS token\n"
    "  --format F           text (default: a table), json, csv (position,token_id,token_text)\n"
    "                       or npy (the ids, int64)\n"
    "  --output FILE, --json FILE, --quiet, --color WHEN   as for the other commands\n"
    "exit status: 0 success, 1 failure (unreadable or malformed file), 2 command-line mistake\n"
    "\n"
    "examples:\n"
    "  depass tokenize --model models/stories260K/stories260K.bin --prompt \"Once upon a time\"\n"
    "  depass tokenize --model models/tinystories-656k --prompt \" girl\" --no-bos --format json\n";

namespace {

/// The vocabulary size in a llama2.c checkpoint's header (7 int32: dim, hidden_dim,
/// n_layers, n_heads, n_kv_heads, vocab_size (negative: unshared classifier), seq_len), or
/// -1 when the header cannot be read.
int llama2c_vocab(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char header[28];
  if (!in.read(reinterpret_cast<char*>(header), sizeof header)) return -1;
  const std::int32_t v = static_cast<std::int32_t>(static_cast<std::uint32_t>(header[20]) | (static_cast<std::uint32_t>(header[21]) << 8) |
                                                   (static_cast<std::uint32_t>(header[22]) << 16) |
                                                   (static_cast<std::uint32_t>(header[23]) << 24));
  const long vocab = v < 0 ? -static_cast<long>(v) : v;
  return vocab > 0 && vocab <= (1 << 24) ? static_cast<int>(vocab) : -1;
}

/// The tokenizer of --tokenizer or --model, without loading any weights.
FoundTokenizer tokenizer_only(const Args& args) {
  const std::string model = args.has("--model") ? args.get("--model") : "";
  const std::string tokenizer = model.empty() ? args.require("--tokenizer") : args.get("--tokenizer");
  depass::io::Format format = depass::io::Format::Unknown;
  if (!model.empty()) {
    format = depass::io::detect_format(model);
    if (format == depass::io::Format::Unknown)
      throw depass::FormatError(model + ": unrecognised checkpoint format (expected a llama2.c .bin file, a Hugging Face "
                                        "directory with config.json, or a GGUF file)");
  }
  FoundTokenizer f =
      depass::io::find_tokenizer(model, tokenizer, format == depass::io::Format::Llama2c ? llama2c_vocab(model) : -1);
  if (!f.tokenizer) throw UsageError("no tokenizer found next to " + model + "; pass --tokenizer PATH");
  return f;
}

int run_tokenize(const Args& args) {
  check_output_options(args);
  if (args.has("--no-bos") && args.has("--ids")) throw UsageError("--no-bos applies to text; --ids are shown as given");
  const Request r = request_from_args(args);
  const FoundTokenizer f = tokenizer_only(args);
  const depass::Tokenizer& tok = *f.tokenizer;
  json doc;
  doc["schema"] = depass::output::schema::kTokenize;
  doc["depass_version"] = depass::version_string();
  if (args.has("--model")) doc["model"] = args.get("--model");
  doc["tokenizer"] = {{"path", f.path}, {"kind", f.kind}, {"vocab_size", tok.vocab_size()}, {"bos_id", tok.bos_id()}};
  std::vector<int> ids;
  if (r.ids) {
    ids = *r.ids;
    for (std::size_t i = 0; i < ids.size(); ++i)
      if (ids[i] >= tok.vocab_size())
        throw UsageError("--ids: token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                         " is unknown (the vocabulary has ids 0.." + std::to_string(tok.vocab_size() - 1) + ")");
    doc["text"] = depass::output::valid_utf8(tok.decode(ids));
  } else {
    ids = tok.encode(*r.prompt, !args.has("--no-bos"));
    doc["text"] = depass::output::valid_utf8(*r.prompt);
  }
  doc["bos"] = !ids.empty() && ids[0] == tok.bos_id() && tok.bos_id() >= 0;
  doc["tokens"] = json::array();
  for (int id : ids) doc["tokens"].push_back(depass::output::token_json(id, display_piece(tok, id)));
  doc["count"] = ids.size();
  if (output_format(args) == "html") throw UsageError("tokenize has no HTML view; use --format text, json, csv or npy");
  emit(args, doc);
  return 0;
}

}  // namespace

int command_tokenize(const Args& args) {
  args.allow_only({"--model", "--tokenizer", "--prompt", "--prompt-file", "--ids", "--no-bos", "--format", "--output", "--json",
                   "--quiet", "--color", "--help"});
  return run_tokenize(args);
}

}  // namespace cli
