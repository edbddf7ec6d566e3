#pragma once
// What a command explains: the input sequence (--prompt, --prompt-file, --ids, or a batch
// line), the position, the target token and the contrast ("foil") token, each given as
// an id or as text. Resolution checks everything against the model before any work.
//
// Token rule (--target, --contrast, batch "target"/"contrast"): an integer is a token id;
// "id:N" and "text:T" force either reading; anything else is text. A text is the token
// whose piece is exactly that text if there is one; else the text is encoded without
// BOS (minus the tokenizer's dummy-prefix space, see spell()) and must be one token,
// unless --target-position first asks for the first of several.

#include <algorithm>
#include <optional>
#include <unordered_map>
#include <string>
#include <vector>

#include "Cli.hpp"

namespace cli {

/// 'text' for messages: quoted, control characters escaped.
inline std::string quote_text(const std::string& text) { return "'" + depass::output::printable(text) + "'"; }

/// "80 ' ', 1132 'girl'".
inline std::string token_list(const depass::Tokenizer& tok, const std::vector<int>& ids) {
  std::string s;
  for (int id : ids) s += (s.empty() ? "" : ", ") + std::to_string(id) + " " + quote_text(tok.piece(id));
  return s;
}

/// Every id whose piece is exactly `text`, lowest first. The index of pieces is built once
/// per tokenizer (batch lines reuse it).
inline std::vector<int> ids_with_piece(const depass::Tokenizer& tok, const std::string& text) {
  static const depass::Tokenizer* indexed = nullptr;
  static std::unordered_map<std::string, std::vector<int>> index;
  if (indexed != &tok) {
    index.clear();
    for (int id = 0; id < tok.vocab_size(); ++id) index[tok.piece(id)].push_back(id);
    indexed = &tok;
  }
  const auto it = index.find(text);
  return it == index.end() ? std::vector<int>{} : it->second;
}

/// The ids whose pieces spell exactly `text` as it would appear inside running text.
/// SentencePiece (llama2.c, GGUF "llama", Hugging Face Metaspace) puts a dummy-prefix
/// space in front of the text it encodes. When that space comes out as a token of its
/// own, it is dropped; when it fuses with the first piece (" g" for "girl"), the text is
/// encoded after a line break instead ("\n" + text: no piece spans a line break), and
/// the pieces up to the break are dropped. Empty when the vocabulary cannot spell the
/// text (e.g. it encodes to an unknown token).
inline std::vector<int> spell(const depass::Tokenizer& tok, const std::string& text) {
  if (text.empty()) return {};
  auto spelled = [&](const std::vector<int>& ids, std::size_t from) {
    std::string s;
    for (std::size_t i = from; i < ids.size(); ++i) s += tok.piece(ids[i]);
    return s;
  };
  std::vector<int> ids = tok.encode(text, false);
  const std::string direct = spelled(ids, 0);
  if (direct == text) return ids;
  if (!ids.empty() && direct == " " + text && tok.piece(ids[0]) == " ") return std::vector<int>(ids.begin() + 1, ids.end());
  if (direct != " " + text) return {};
  ids = tok.encode("\n" + text, false);
  std::string lead;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    lead += tok.piece(ids[i]);
    if (lead == "\n" || lead == " \n")
      return spelled(ids, i + 1) == text ? std::vector<int>(ids.begin() + static_cast<std::ptrdiff_t>(i) + 1, ids.end())
                                         : std::vector<int>{};
    if (lead.size() > 2) break;
  }
  return {};
}

/// The token a text names (see the rule at the top of this file).
inline int token_from_text(const depass::Tokenizer& tok, const std::string& text, const std::string& option, bool first) {
  if (text.empty()) throw UsageError(option + ": the token text is empty");
  const std::vector<int> spelled = spell(tok, text);
  const std::vector<int> exact = ids_with_piece(tok, text);
  if (!exact.empty()) {
    // Several ids with the same piece (a byte token and a merged one): the one the
    // tokenizer itself produces for the text, else the lowest.
    if (spelled.size() == 1 && std::find(exact.begin(), exact.end(), spelled[0]) != exact.end()) return spelled[0];
    return exact[0];
  }
  if (spelled.empty()) {
    const std::vector<int> ids = tok.encode(text, false);
    throw UsageError(option + " " + quote_text(text) + " is not in the vocabulary and cannot be spelled with it (it encodes to " +
                     (ids.empty() ? std::string("nothing") : token_list(tok, ids)) + ")");
  }
  if (spelled.size() > 1 && !first)
    throw UsageError(option + " " + quote_text(text) + " is " + std::to_string(spelled.size()) + " tokens: " +
                     token_list(tok, spelled) + "; give one token (its id or its text), or add --target-position first " +
                     "to use the first");
  return spelled[0];
}

/// True for an optionally signed run of digits.
inline bool is_integer(const std::string& s) {
  const std::size_t start = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  return s.size() > start && s.find_first_not_of("0123456789", start) == std::string::npos;
}

/// A --target / --contrast value as a token id (see the rule at the top of this file).
inline int resolve_token(const std::string& spec, const std::string& option, int vocab, const depass::Tokenizer* tok,
                         bool first) {
  std::string text = spec;
  bool as_id = is_integer(spec);
  if (spec.rfind("id:", 0) == 0) {
    text = spec.substr(3);
    if (!is_integer(text)) throw UsageError(option + " " + quote_text(spec) + ": 'id:' must be followed by a token id");
    as_id = true;
  } else if (spec.rfind("text:", 0) == 0) {
    text = spec.substr(5);
    as_id = false;
  }
  if (as_id) {
    long id = -1;
    try {
      id = std::stol(text);
    } catch (const std::exception&) {
      id = -1;
    }
    if (id < 0 || id >= vocab)
      throw UsageError(option + " " + text + " is not a token id of this model (allowed 0.." + std::to_string(vocab - 1) + ")");
    return static_cast<int>(id);
  }
  if (!tok) throw UsageError(option + " " + quote_text(text) + " is text, which needs a tokenizer; none was found (pass --tokenizer)");
  return token_from_text(*tok, text, option, first);
}

/// One question, as given: exactly one of prompt and ids; the rest optional.
struct Request {
  std::optional<std::string> prompt;
  std::optional<std::vector<int>> ids;
  std::optional<long> position;
  std::optional<std::string> target, contrast;
  bool first_token = false;  // --target-position first
  std::string prefix;        // message prefix naming the source ("" or "field ")
};

/// Reads a whole file, or stdin for "-".
inline std::string read_input(const std::string& option, const std::string& path) {
  if (path == "-") {
    std::ostringstream s;
    s << std::cin.rdbuf();
    return s.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + option + " '" + path + "': no such file or not readable");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// The text of --prompt-file: the file (or stdin), without one trailing newline.
inline std::string prompt_file_text(const std::string& path) {
  std::string text = read_input("--prompt-file", path);
  if (!text.empty() && text.back() == '\n') text.pop_back();
  if (!text.empty() && text.back() == '\r') text.pop_back();
  return text;
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

inline std::string target_position_mode(const Args& args) {
  const std::string mode = args.get("--target-position", "only");
  if (mode != "only" && mode != "first")
    throw UsageError("--target-position must be 'only' (a text target must be one token) or 'first', got '" + mode + "'");
  return mode;
}

/// The position, target, contrast and token rule of the command line (batch defaults).
inline Request request_defaults(const Args& args) {
  Request r;
  if (args.has("--position")) r.position = args.integer("--position", -1);
  if (args.has("--target")) r.target = args.get("--target");
  if (args.has("--contrast")) r.contrast = args.get("--contrast");
  r.first_token = target_position_mode(args) == "first";
  return r;
}

/// The request of a single run: --prompt, --prompt-file or --ids, plus the defaults.
inline Request request_from_args(const Args& args) {
  Request r = request_defaults(args);
  const int given = (args.has("--prompt") ? 1 : 0) + (args.has("--prompt-file") ? 1 : 0) + (args.has("--ids") ? 1 : 0);
  if (given != 1) throw UsageError("give exactly one of --prompt, --prompt-file and --ids");
  if (args.has("--ids")) r.ids = parse_int_list("--ids", args.get("--ids"));
  else r.prompt = args.has("--prompt") ? args.get("--prompt") : prompt_file_text(args.get("--prompt-file"));
  return r;
}

/// The prompt's ids (BOS prepended) or the given ids, checked against the model.
template <typename Scalar>
std::vector<int> request_ids(const Request& r, const Loaded<Scalar>& l) {
  std::vector<int> ids;
  const int vocab = l.model->config().vocab_size;
  if (r.ids) {
    ids = *r.ids;
    if (ids.empty()) throw UsageError(r.prefix + "ids is empty");
    for (std::size_t i = 0; i < ids.size(); ++i)
      if (ids[i] < 0 || ids[i] >= vocab)
        throw UsageError((r.prefix.empty() ? "--" : r.prefix) + "ids: token id " + std::to_string(ids[i]) + " at position " +
                         std::to_string(i) + " is unknown (the vocabulary has ids 0.." + std::to_string(vocab - 1) + ")");
  } else {
    if (!r.prompt || r.prompt->empty()) throw UsageError(r.prefix + "prompt is empty");
    ids = l.require_tokenizer("a text prompt").encode(*r.prompt, true);
    if (ids.empty()) throw UsageError(r.prefix + "prompt encodes to no tokens");
  }
  l.model->check_tokens(ids);
  return ids;
}

/// A position (negative counts from the end) as an index into a sequence of n tokens.
inline long resolve_position(long position, long n, const std::string& option = "--position") {
  if (position < -n || position >= n)
    throw UsageError(option + " " + std::to_string(position) + " is out of range: the sequence has " + std::to_string(n) +
                     " tokens (allowed " + std::to_string(-n) + ".." + std::to_string(n - 1) + ")");
  return position < 0 ? position + n : position;
}

/// A request resolved against the model: ids, position, target (-1: the top prediction,
/// chosen once the logits are known) and contrast (-1: none).
struct Question {
  std::vector<int> ids;
  long position = 0;
  int target = -1;
  int foil = -1;
};

template <typename Scalar>
Question resolve(const Request& r, const Loaded<Scalar>& l) {
  Question q;
  q.ids = request_ids(r, l);
  const std::string pos_option = r.prefix.empty() ? "--position" : r.prefix + "position";
  q.position = resolve_position(r.position.value_or(-1), static_cast<long>(q.ids.size()), pos_option);
  const int vocab = l.model->config().vocab_size;
  const depass::Tokenizer* tok = l.tokenizer ? &*l.tokenizer : nullptr;
  if (r.target) q.target = resolve_token(*r.target, r.prefix.empty() ? "--target" : r.prefix + "target", vocab, tok, r.first_token);
  if (r.contrast)
    q.foil = resolve_token(*r.contrast, r.prefix.empty() ? "--contrast" : r.prefix + "contrast", vocab, tok, r.first_token);
  if (q.foil >= 0 && q.foil == q.target)
    throw UsageError("the contrast token " + std::to_string(q.foil) + " is the target itself: nothing to contrast");
  return q;
}

/// Sets the default target (the top prediction) from the position's real logits and
/// refuses a contrast equal to it.
template <typename Vec>
void choose_target(Question& q, const Vec& logits) {
  if (q.target < 0) {
    Eigen::Index top = 0;
    logits.maxCoeff(&top);
    q.target = static_cast<int>(top);
    if (q.foil == q.target)
      throw UsageError("the contrast token " + std::to_string(q.foil) +
                       " is the model's top prediction, which is the default target: give --target too");
  }
}

/// The explained scores: each component's logit for the target, minus its logit for the
/// contrast token when there is one.
template <typename Scalar>
depass::Vector<Scalar> explained_scores(const depass::Decomposition<Scalar>& d, const Question& q) {
  depass::Vector<Scalar> s = d.component_logits(q.position, q.target);
  if (q.foil >= 0) s -= d.component_logits(q.position, q.foil);
  return s;
}

/// target {id, text, logit, prob}, and with a contrast also contrast {...} and
/// logit_difference (what the scores then sum to).
template <typename Scalar, typename Vec>
void add_explained(json& doc, const Loaded<Scalar>& l, const Question& q, const Vec& logits) {
  const double t = static_cast<double>(logits(q.target));
  doc["target"] = target_json(l, q.target, t, probability(logits, q.target));
  if (q.foil >= 0) {
    const double f = static_cast<double>(logits(q.foil));
    doc["contrast"] = target_json(l, q.foil, f, probability(logits, q.foil));
    doc["logit_difference"] = t - f;
  }
}

}  // namespace cli
