#pragma once
// Hugging Face tokenizer.json (+ tokenizer_config.json): validation, and the backend
// that runs the supported pipeline. Supported: model BPE (merges as "a b" strings or
// ["a", "b"] pairs, byte_fallback, unk_token/fuse_unk, continuing_subword_prefix,
// end_of_word_suffix, ignore_merges), normalizers Sequence/Prepend/Replace(String)/NFC,
// pre-tokenizers ByteLevel and Split (a String, or the GPT-2, Llama 3 or Qwen2 regex)
// alone or in a Sequence, added tokens (normalized or not, lstrip/rstrip), decoders
// Sequence/Replace(String)/ByteFallback/Fuse/Strip/ByteLevel, post-processors
// TemplateProcessing (for the BOS) alone or in a Sequence. Anything else is refused with
// a FormatError naming it, rather than tokenized subtly wrong.

#include <algorithm>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../../Error.hpp"
#include "Backend.hpp"
#include "ByteLevel.hpp"
#include "HfComponents.hpp"
#include "Utf8.hpp"

namespace depass {
namespace detail {
namespace hf {

using Json = nlohmann::json;

/// Locates errors: every message starts with the file and the JSON path.
class JsonContext {
 public:
  explicit JsonContext(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& what) const { throw FormatError(source_ + ": " + what); }

  Json parse(const std::string& bytes) const {
    try {
      return Json::parse(bytes);
    } catch (const Json::exception& e) {
      fail(std::string("invalid JSON: ") + e.what());
    }
  }

  /// The member, or nullptr when it is absent or null (tokenizers treats both alike).
  static const Json* find(const Json& object, const char* key) {
    if (!object.is_object()) return nullptr;
    const auto it = object.find(key);
    return it == object.end() || it->is_null() ? nullptr : &*it;
  }

  const Json& require(const Json& object, const char* key, const std::string& where) const {
    const Json* value = find(object, key);
    if (value == nullptr) fail("missing \"" + std::string(key) + "\"" + in(where));
    return *value;
  }

  std::string string(const Json& value, const std::string& where) const {
    if (!value.is_string()) fail(where + " must be a string, not " + value.type_name());
    return value.get<std::string>();
  }

  bool boolean(const Json& object, const char* key, bool fallback, const std::string& where) const {
    const Json* value = find(object, key);
    if (value == nullptr) return fallback;
    if (!value->is_boolean())
      fail(join(where, key) + " must be true or false, not " + value->type_name());
    return value->get<bool>();
  }

  long long integer(const Json& value, const std::string& where) const {
    if (!value.is_number_integer()) fail(where + " must be an integer, not " + value.type_name());
    if (value.is_number_unsigned()) {
      const auto u = value.get<unsigned long long>();
      if (u > static_cast<unsigned long long>(std::numeric_limits<long long>::max()))
        fail(where + " = " + std::to_string(u) + " is too large");
      return static_cast<long long>(u);
    }
    return value.get<long long>();
  }

  static std::string join(const std::string& where, const char* key) {
    return where.empty() ? std::string(key) : where + "." + key;
  }

  const std::string& source() const { return source_; }

 private:
  static std::string in(const std::string& where) { return where.empty() ? "" : " in " + where; }
  std::string source_;
};

inline std::string quote_token(const std::string& text) {
  const std::string shown = text.size() > 60 ? text.substr(0, 60) + "..." : text;
  return "'" + shown + "'";
}

inline std::string type_of(const JsonContext& ctx, const Json& component, const std::string& where) {
  if (!component.is_object()) ctx.fail(where + " must be an object, not " + component.type_name());
  return ctx.string(ctx.require(component, "type", where), where + ".type");
}

/// A Sequence may hold Sequences, and parsing recurses once per level: a hostile file
/// nesting them thousands deep would overflow the stack. Real files nest at most one level.
constexpr int kMaxSequenceDepth = 16;

inline void check_sequence_depth(const JsonContext& ctx, const std::string& where, int depth) {
  if (depth >= kMaxSequenceDepth)
    ctx.fail(where + " nests Sequences more than " + std::to_string(kMaxSequenceDepth) + " deep");
}

/// The most a normalizer or decoder may lengthen a text. A Replace whose content is longer
/// than its pattern multiplies the length, and chained ones multiply it geometrically: 30
/// steps replacing "a" by "aa" turn a one-byte added token into a gigabyte while the file
/// loads. Real pipelines grow text at most threefold (" " -> U+2581, NFC).
constexpr double kMaxTextGrowth = 256;

inline void check_text_growth(const JsonContext& ctx, const char* what, double factor) {
  if (factor > kMaxTextGrowth)
    ctx.fail(std::string(what) + " can make a text more than " +
             std::to_string(static_cast<int>(kMaxTextGrowth)) +
             " times longer (chained Replace steps whose content is longer than their "
             "pattern); refusing it");
}

/// Upper bound on how many times longer the steps can make a text (Prepend only adds).
inline double normalizer_growth(const std::vector<NormalizerStep>& steps) {
  double factor = 1;
  for (const NormalizerStep& step : steps) {
    if (step.kind == NormalizerStep::Kind::Replace)
      factor *= std::max(1.0, static_cast<double>(step.replacement.size()) /
                                  static_cast<double>(step.text.size()));
    else if (step.kind == NormalizerStep::Kind::NFC)
      factor *= 3;  // NFC at most triples the UTF-8 length (Unicode UAX #15)
  }
  return factor;
}

inline double decoder_growth(const std::vector<DecoderStep>& steps) {
  double factor = 1;  // ByteFallback, ByteLevel, Strip and Fuse never lengthen
  for (const DecoderStep& step : steps)
    if (step.kind == DecoderStep::Kind::Replace)
      factor *= std::max(1.0, static_cast<double>(step.content.size()) /
                                  static_cast<double>(step.pattern.size()));
  return factor;
}

/// The "type" member when it is a string, else "" (for components we only peek into).
inline std::string type_if_string(const Json& component) {
  const Json* type = component.is_object() ? JsonContext::find(component, "type") : nullptr;
  return type && type->is_string() ? type->get<std::string>() : std::string();
}

inline void parse_normalizer(const JsonContext& ctx, const Json& n, const std::string& where,
                             std::vector<NormalizerStep>& steps, int depth = 0) {
  const std::string type = type_of(ctx, n, where);
  if (type == "Sequence") {
    check_sequence_depth(ctx, where, depth);
    const Json& list = ctx.require(n, "normalizers", where);
    if (!list.is_array()) ctx.fail(where + ".normalizers must be an array");
    for (std::size_t i = 0; i < list.size(); ++i)
      parse_normalizer(ctx, list[i], where + ".normalizers[" + std::to_string(i) + "]", steps,
                       depth + 1);
  } else if (type == "Prepend") {
    NormalizerStep step;
    step.kind = NormalizerStep::Kind::Prepend;
    step.text = ctx.string(ctx.require(n, "prepend", where), where + ".prepend");
    steps.push_back(step);
  } else if (type == "Replace") {
    const Json& pattern = ctx.require(n, "pattern", where);
    const Json* literal = JsonContext::find(pattern, "String");
    if (literal == nullptr)
      ctx.fail("unsupported normalizer: " + where + " is a Replace whose pattern is not a plain String " +
               "(Regex patterns are not supported)");
    NormalizerStep step;
    step.kind = NormalizerStep::Kind::Replace;
    step.text = ctx.string(*literal, where + ".pattern.String");
    if (step.text.empty()) ctx.fail(where + ".pattern.String is empty");
    step.replacement = ctx.string(ctx.require(n, "content", where), where + ".content");
    steps.push_back(step);
  } else if (type == "NFC") {
    NormalizerStep step;
    step.kind = NormalizerStep::Kind::NFC;
    steps.push_back(step);
  } else {
    ctx.fail("unsupported normalizer \"" + type + "\" at " + where +
             " (supported: Sequence, Prepend, Replace with a String pattern, NFC, null)");
  }
}

inline void parse_decoder(const JsonContext& ctx, const Json& d, const std::string& where,
                          std::vector<DecoderStep>& steps, int depth = 0) {
  const std::string type = type_of(ctx, d, where);
  DecoderStep step;
  if (type == "Sequence") {
    check_sequence_depth(ctx, where, depth);
    const Json& list = ctx.require(d, "decoders", where);
    if (!list.is_array()) ctx.fail(where + ".decoders must be an array");
    for (std::size_t i = 0; i < list.size(); ++i)
      parse_decoder(ctx, list[i], where + ".decoders[" + std::to_string(i) + "]", steps, depth + 1);
    return;
  } else if (type == "Replace") {
    const Json& pattern = ctx.require(d, "pattern", where);
    const Json* literal = JsonContext::find(pattern, "String");
    if (literal == nullptr)
      ctx.fail("unsupported decoder: " + where + " is a Replace whose pattern is not a plain String " +
               "(Regex patterns are not supported)");
    step.kind = DecoderStep::Kind::Replace;
    step.pattern = ctx.string(*literal, where + ".pattern.String");
    if (step.pattern.empty()) ctx.fail(where + ".pattern.String is empty");
    step.content = ctx.string(ctx.require(d, "content", where), where + ".content");
  } else if (type == "ByteFallback") {
    step.kind = DecoderStep::Kind::ByteFallback;
  } else if (type == "Fuse") {
    step.kind = DecoderStep::Kind::Fuse;
  } else if (type == "ByteLevel") {
    step.kind = DecoderStep::Kind::ByteLevel;
  } else if (type == "Strip") {
    step.kind = DecoderStep::Kind::Strip;
    step.content = ctx.string(ctx.require(d, "content", where), where + ".content");
    if (step.content.empty() || utf8::count_chars(step.content) != 1)
      ctx.fail(where + ".content must be a single character");
    const long long start = ctx.integer(ctx.require(d, "start", where), where + ".start");
    const long long stop = ctx.integer(ctx.require(d, "stop", where), where + ".stop");
    if (start < 0 || stop < 0) ctx.fail(where + ".start and .stop must not be negative");
    step.start = static_cast<std::size_t>(start);
    step.stop = static_cast<std::size_t>(stop);
  } else {
    ctx.fail("unsupported decoder \"" + type + "\" at " + where +
             " (supported: Sequence, Replace with a String pattern, ByteFallback, Fuse, Strip, "
             "ByteLevel, null)");
  }
  steps.push_back(step);
}

/// A token named in tokenizer_config.json: a string, {"content": ...}, or null.
inline bool config_token(const JsonContext& ctx, const Json& config, const char* key,
                         std::string* content) {
  const auto it = config.find(key);
  if (it == config.end()) return false;
  if (it->is_null()) {
    content->clear();
    return true;
  }
  if (it->is_string()) {
    *content = it->get<std::string>();
  } else if (it->is_object()) {
    *content = ctx.string(ctx.require(*it, "content", key), std::string(key) + ".content");
  } else {
    ctx.fail(std::string(key) + " must be a string, an object with \"content\", or null");
  }
  return true;
}

class HuggingFaceTokenizer final : public TokenizerBackend {
 public:
  /// `tokenizer_json` / `config_json`: file contents (config may be empty: absent);
  /// `source` / `config_source`: their names for error messages.
  HuggingFaceTokenizer(const std::string& tokenizer_json, const std::string& source,
                       const std::string& config_json, const std::string& config_source)
      : HuggingFaceTokenizer(
            JsonContext(source).parse(tokenizer_json), source,
            config_json.empty() ? Json() : JsonContext(config_source).parse(config_json),
            config_source) {}

  /// From parsed documents (`config` null: no tokenizer_config.json). Lets other formats
  /// that describe the same pipeline (GGUF's "gpt2" tokenizers) reuse it.
  HuggingFaceTokenizer(const Json& root, const std::string& source, const Json& config,
                       const std::string& config_source) {
    const JsonContext ctx(source);
    if (!root.is_object()) ctx.fail("the top level must be a JSON object");
    parse_model(ctx, root);
    parse_added_tokens(ctx, root);
    parse_pre_tokenizer(ctx, root);
    if (const Json* n = JsonContext::find(root, "normalizer")) parse_normalizer(ctx, *n, "normalizer", normalizer_);
    if (const Json* d = JsonContext::find(root, "decoder")) {
      has_decoder_ = true;
      parse_decoder(ctx, *d, "decoder", decoder_);
      for (const DecoderStep& step : decoder_)
        if (step.kind == DecoderStep::Kind::ByteLevel) byte_level_ = true;
    }
    check_text_growth(ctx, "normalizer", normalizer_growth(normalizer_));
    check_text_growth(ctx, "decoder", decoder_growth(decoder_));
    build_splitters();
    resolve_special_tokens(ctx, root, config, config_source);
  }

  std::vector<int> encode(const std::string& text, bool with_bos) const override {
    const std::size_t bad = utf8::find_invalid(text);
    if (bad != std::string::npos)
      throw std::invalid_argument("Tokenizer::encode: text is not valid UTF-8 (at byte " +
                                  std::to_string(bad) + "); Hugging Face tokenizers need Unicode text");
    std::vector<int> ids;
    if (with_bos) ids.push_back(bos_id);
    // tokenizers' AddedVocabulary::extract_and_normalize: tokens with normalized=false
    // are found in the raw text; each remaining piece is normalized on its own, and
    // tokens with normalized=true are found in it (as their normalized form).
    for (const Segment& raw : raw_splitter_.split(text)) {
      if (raw.id >= 0) {
        ids.push_back(raw.id);
        continue;
      }
      const std::string normalized = normalize(normalizer_, raw.text);
      for (const Segment& part : normalized_splitter_.split(normalized)) {
        if (part.id >= 0)
          ids.push_back(part.id);
        else if (pre_tokenizer_.empty())
          model_.tokenize(part.text, ids);  // no pre-tokenizer: the piece is one word
        else
          for (const std::string& word : pre_tokenize(pre_tokenizer_, part.text))
            model_.tokenize(word, ids);
      }
    }
    return ids;
  }

  std::string decode(const std::vector<int>& ids) const override {
    // Any token, special or not, decodes to its content (tokenizers' decode with
    // skip_special_tokens=False). SentencePiece-style pipelines treat a leading BOS as the
    // sequence marker whose following space the Strip decoder removes, and skip it; a
    // byte-level pipeline has no such convention and decodes the BOS like any token.
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    const std::size_t start =
        !byte_level_ && !ids.empty() && bos_id >= 0 && ids[0] == bos_id ? 1 : 0;
    for (std::size_t i = start; i < ids.size(); ++i) tokens.push_back(tokens_[static_cast<std::size_t>(ids[i])]);
    if (!has_decoder_) return join(tokens, " ");
    return join(run_decoders(decoder_, std::move(tokens), false, true), "");
  }

  std::string piece(int id) const override { return single(id, false); }

  std::string token_text(int prev_id, int id) const override {
    // The decoder's Strip acts at the start of the text: nothing or a BOS before us.
    const bool at_start = prev_id < 0 || prev_id == bos_id;
    if (!has_decoder_) return (at_start ? "" : " ") + tokens_[static_cast<std::size_t>(id)];
    return single(id, at_start);
  }

  const std::string& token_string(int id) const { return tokens_[static_cast<std::size_t>(id)]; }

 private:
  static std::string join(const std::vector<std::string>& parts, const char* separator) {
    std::string out;
    for (std::size_t i = 0; i < parts.size(); ++i) {
      if (i) out += separator;
      out += parts[i];
    }
    return out;
  }

  std::string single(int id, bool at_start) const {
    std::vector<std::string> one(1, tokens_[static_cast<std::size_t>(id)]);
    if (!has_decoder_) return one[0];
    return join(run_decoders(decoder_, std::move(one), true, at_start), "");
  }

  void parse_model(const JsonContext& ctx, const Json& root) {
    const Json& model = ctx.require(root, "model", "");
    if (!model.is_object()) ctx.fail("\"model\" must be an object");
    // Old files may omit the type; tokenizers then recognises BPE by its merges.
    const Json* type = JsonContext::find(model, "type");
    const std::string kind = type ? ctx.string(*type, "model.type")
                                  : (JsonContext::find(model, "merges") ? "BPE" : "(none)");
    if (kind != "BPE")
      ctx.fail("unsupported model type \"" + kind + "\" (only BPE is supported)");
    if (const Json* dropout = JsonContext::find(model, "dropout")) {
      if (!dropout->is_number()) ctx.fail("model.dropout must be a number or null");
      if (dropout->get<double>() != 0.0)
        ctx.fail("unsupported model.dropout " + dropout->dump() + " (BPE dropout makes encoding random)");
    }
    parse_model_vocab(ctx, model);
    parse_model_flags(ctx, model);
    const Json* merges = JsonContext::find(model, "merges");
    if (merges == nullptr) return;  // a BPE with no merges is a plain character vocabulary
    if (!merges->is_array()) ctx.fail("model.merges must be an array");
    model_.merges.reserve(merges->size());
    for (std::size_t rank = 0; rank < merges->size(); ++rank) parse_merge(ctx, (*merges)[rank], rank);
  }

  void parse_model_vocab(const JsonContext& ctx, const Json& model) {
    const Json& vocab = ctx.require(model, "vocab", "model");
    if (!vocab.is_object()) ctx.fail("model.vocab must be an object mapping token strings to ids");
    model_vocab_.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      const long long id = ctx.integer(it.value(), "model.vocab[" + quote_token(it.key()) + "]");
      if (id < 0 || id > std::numeric_limits<int>::max() / 2)
        ctx.fail("model.vocab: token " + quote_token(it.key()) + " has id " + std::to_string(id) +
                 ", out of range");
      model_vocab_.emplace_back(it.key(), static_cast<int>(id));
      model_.vocab.emplace(it.key(), static_cast<int>(id));
    }
    for (int b = 0; b < 256; ++b) {
      static const char* hex = "0123456789ABCDEF";
      const std::string name = std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
      const auto found = model_.vocab.find(name);
      if (found != model_.vocab.end()) model_.byte_ids[b] = found->second;
    }
  }

  void parse_model_flags(const JsonContext& ctx, const Json& model) {
    model_.byte_fallback = ctx.boolean(model, "byte_fallback", false, "model");
    model_.fuse_unk = ctx.boolean(model, "fuse_unk", false, "model");
    model_.ignore_merges = ctx.boolean(model, "ignore_merges", false, "model");
    if (const Json* p = JsonContext::find(model, "continuing_subword_prefix"))
      model_.continuing_subword_prefix = ctx.string(*p, "model.continuing_subword_prefix");
    if (const Json* s = JsonContext::find(model, "end_of_word_suffix"))
      model_.end_of_word_suffix = ctx.string(*s, "model.end_of_word_suffix");
    if (const Json* unk = JsonContext::find(model, "unk_token")) {
      const std::string name = ctx.string(*unk, "model.unk_token");
      const auto found = model_.vocab.find(name);
      if (found == model_.vocab.end())
        ctx.fail("model.unk_token " + quote_token(name) + " is not in model.vocab");
      model_.unk_id = found->second;
    }
  }

  /// One merge, "a b" or ["a", "b"], of the given rank.
  void parse_merge(const JsonContext& ctx, const Json& m, std::size_t rank) {
    const std::string where = "model.merges[" + std::to_string(rank) + "]";
    std::string left, right;
    if (m.is_string()) {
      const std::string text = m.get<std::string>();
      const std::size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos)
        ctx.fail(where + " " + quote_token(text) + " must be two tokens separated by one space");
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (m.is_array() && m.size() == 2) {
      left = ctx.string(m[0], where + "[0]");
      right = ctx.string(m[1], where + "[1]");
    } else {
      ctx.fail(where + " must be a string \"a b\" or a pair [\"a\", \"b\"]");
    }
    const int left_id = model_token(ctx, left, where);
    const int right_id = model_token(ctx, right, where);
    // tokenizers drops the continuing-subword prefix of the right part when joining.
    const std::string& prefix = model_.continuing_subword_prefix;
    const bool drop = !prefix.empty() && right.compare(0, prefix.size(), prefix) == 0;
    const std::string merged = left + (drop ? right.substr(prefix.size()) : right);
    const int merged_id = model_token(ctx, merged, where + " (the merged token)");
    if (rank > static_cast<std::size_t>(std::numeric_limits<int>::max())) ctx.fail("too many merges");
    model_.merges[BpeModel::pair_key(left_id, right_id)] = {static_cast<int>(rank), merged_id};
  }

  int model_token(const JsonContext& ctx, const std::string& token, const std::string& where) const {
    const auto it = model_.vocab.find(token);
    if (it == model_.vocab.end()) ctx.fail(where + " names " + quote_token(token) + ", which is not in model.vocab");
    return it->second;
  }

  void parse_added_tokens(const JsonContext& ctx, const Json& root) {
    std::vector<AddedToken> extra;  // added tokens that the model vocabulary lacks
    std::unordered_map<std::string, int> seen;
    if (const Json* list = JsonContext::find(root, "added_tokens")) {
      if (!list->is_array()) ctx.fail("added_tokens must be an array");
      for (std::size_t i = 0; i < list->size(); ++i) {
        const std::string where = "added_tokens[" + std::to_string(i) + "]";
        const Json& t = (*list)[i];
        if (!t.is_object()) ctx.fail(where + " must be an object");
        AddedToken token;
        const long long id = ctx.integer(ctx.require(t, "id", where), where + ".id");
        token.content = ctx.string(ctx.require(t, "content", where), where + ".content");
        if (token.content.empty()) ctx.fail(where + " has an empty content");
        token.normalized = ctx.boolean(t, "normalized", true, where);
        token.special = ctx.boolean(t, "special", false, where);
        token.lstrip = ctx.boolean(t, "lstrip", false, where);
        token.rstrip = ctx.boolean(t, "rstrip", false, where);
        if (ctx.boolean(t, "single_word", false, where))
          ctx.fail("unsupported: " + where + " " + quote_token(token.content) + " has single_word true");
        if (id < 0 || id > std::numeric_limits<int>::max() / 2)
          ctx.fail(where + " " + quote_token(token.content) + " has id " + std::to_string(id) + ", out of range");
        token.id = static_cast<int>(id);
        if (!seen.emplace(token.content, token.id).second)
          ctx.fail(where + ": " + quote_token(token.content) + " is listed twice");
        const auto in_model = model_.vocab.find(token.content);
        if (in_model != model_.vocab.end()) {
          if (in_model->second != token.id)
            ctx.fail(where + " " + quote_token(token.content) + " has id " + std::to_string(token.id) +
                     " but model.vocab gives it id " + std::to_string(in_model->second));
        } else {
          extra.push_back(token);
        }
        added_.push_back(token);
      }
    }

    // Every id in [0, N) must name exactly one token, N being the number of tokens:
    // then the vocabulary has no holes and no id is used twice.
    const std::size_t count = model_vocab_.size() + extra.size();
    if (count == 0) ctx.fail("the vocabulary is empty");
    if (count > static_cast<std::size_t>(std::numeric_limits<int>::max() / 2)) ctx.fail("vocabulary too large");
    tokens_.assign(count, std::string());
    std::vector<char> used(count, 0);
    auto place = [&](const std::string& token, int id, const char* where) {
      if (static_cast<std::size_t>(id) >= count)
        ctx.fail(std::string(where) + ": token " + quote_token(token) + " has id " + std::to_string(id) +
                 ", out of range [0, " + std::to_string(count) + ") for " + std::to_string(count) +
                 " tokens");
      if (used[static_cast<std::size_t>(id)])
        ctx.fail(std::string(where) + ": id " + std::to_string(id) + " is used by both " +
                 quote_token(tokens_[static_cast<std::size_t>(id)]) + " and " + quote_token(token));
      used[static_cast<std::size_t>(id)] = 1;
      tokens_[static_cast<std::size_t>(id)] = token;
    };
    for (const auto& entry : model_vocab_) place(entry.first, entry.second, "model.vocab");
    for (const AddedToken& token : extra) place(token.content, token.id, "added_tokens");
    vocab_size = static_cast<int>(count);
    model_vocab_.clear();
    model_vocab_.shrink_to_fit();
  }

  void parse_pre_tokenizer(const JsonContext& ctx, const Json& root) {
    const Json* p = JsonContext::find(root, "pre_tokenizer");
    if (p == nullptr) return;
    parse_pre_tokenizer_step(ctx, *p, "pre_tokenizer");
    // A ByteLevel step maps text to its byte alphabet: only the model may follow it.
    for (std::size_t i = 0; i + 1 < pre_tokenizer_.size(); ++i)
      if (pre_tokenizer_[i].kind == PreTokenizerStep::Kind::ByteLevel)
        ctx.fail("unsupported pre_tokenizer: a step follows the ByteLevel step (ByteLevel must "
                 "come last)");
  }

  void parse_pre_tokenizer_step(const JsonContext& ctx, const Json& p, const std::string& where,
                                int depth = 0) {
    const std::string type = type_of(ctx, p, where);
    PreTokenizerStep step;
    if (type == "Sequence") {
      check_sequence_depth(ctx, where, depth);
      const Json& list = ctx.require(p, "pretokenizers", where);
      if (!list.is_array()) ctx.fail(where + ".pretokenizers must be an array");
      for (std::size_t i = 0; i < list.size(); ++i)
        parse_pre_tokenizer_step(ctx, list[i], where + ".pretokenizers[" + std::to_string(i) + "]",
                                 depth + 1);
      return;
    } else if (type == "ByteLevel") {
      // tokenizers' defaults when the fields are absent.
      step.kind = PreTokenizerStep::Kind::ByteLevel;
      step.add_prefix_space = ctx.boolean(p, "add_prefix_space", true, where);
      step.use_regex = ctx.boolean(p, "use_regex", true, where);
    } else if (type == "Split") {
      step.kind = PreTokenizerStep::Kind::Split;
      const Json& pattern = ctx.require(p, "pattern", where);
      if (const Json* literal = JsonContext::find(pattern, "String")) {
        step.literal = true;
        step.text = ctx.string(*literal, where + ".pattern.String");
        if (step.text.empty()) ctx.fail(where + ".pattern.String is empty");
      } else if (const Json* regex = JsonContext::find(pattern, "Regex")) {
        const std::string text = ctx.string(*regex, where + ".pattern.Regex");
        if (!recognise_split_regex(text, &step.regex))
          ctx.fail("unsupported pre_tokenizer: " + where + " splits with the regex " +
                   quote_token(text) + " (supported: the GPT-2, Llama 3 and Qwen2 patterns)");
      } else {
        ctx.fail(where + ".pattern must be {\"String\": ...} or {\"Regex\": ...}");
      }
      const std::string behavior =
          ctx.string(ctx.require(p, "behavior", where), where + ".behavior");
      if (behavior == "Removed")
        step.behavior = SplitBehavior::Removed;
      else if (behavior == "Isolated")
        step.behavior = SplitBehavior::Isolated;
      else if (behavior == "MergedWithPrevious")
        step.behavior = SplitBehavior::MergedWithPrevious;
      else if (behavior == "MergedWithNext")
        step.behavior = SplitBehavior::MergedWithNext;
      else if (behavior == "Contiguous")
        step.behavior = SplitBehavior::Contiguous;
      else
        ctx.fail("unsupported " + where + ".behavior \"" + behavior +
                 "\" (supported: Removed, Isolated, MergedWithPrevious, MergedWithNext, "
                 "Contiguous)");
      step.invert = ctx.boolean(p, "invert", false, where);
    } else {
      ctx.fail("unsupported pre_tokenizer \"" + type + "\" at " + where +
               " (supported: ByteLevel, Split, Sequence, null)");
    }
    pre_tokenizer_.push_back(step);
  }

  void build_splitters() {
    // tokenizers matches special tokens before the others (order within a pattern
    // clash), and matches normalized=true tokens by their normalized form.
    for (int pass = 0; pass < 2; ++pass) {
      for (const AddedToken& token : added_) {
        if (token.special != (pass == 0)) continue;
        if (token.normalized)
          normalized_splitter_.add(normalize(normalizer_, token.content), token);
        else
          raw_splitter_.add(token.content, token);
      }
    }
  }

  int token_id(const std::string& content) const {
    for (const AddedToken& token : added_)
      if (token.content == content) return token.id;
    const auto it = model_.vocab.find(content);
    return it == model_.vocab.end() ? -1 : it->second;
  }

  void resolve_special_tokens(const JsonContext& ctx, const Json& root, const Json& config,
                              const std::string& config_source) {
    bool have_bos = false, have_eos = false, have_add_bos = false;
    std::string bos_name, eos_name;
    bool add_bos = true;
    if (!config.is_null()) {
      const JsonContext cfg(config_source);
      if (!config.is_object()) cfg.fail("the top level must be a JSON object");
      have_bos = config_token(cfg, config, "bos_token", &bos_name);
      have_eos = config_token(cfg, config, "eos_token", &eos_name);
      if (JsonContext::find(config, "add_bos_token") != nullptr) {
        have_add_bos = true;
        add_bos = cfg.boolean(config, "add_bos_token", true, "");
      }
      auto resolve = [&](const std::string& name, const char* key) {
        if (name.empty()) return -1;
        const int id = token_id(name);
        if (id < 0) cfg.fail(std::string(key) + " " + quote_token(name) + " is not in the vocabulary of " + ctx.source());
        return id;
      };
      if (have_bos) bos_id = resolve(bos_name, "bos_token");
      if (have_eos) eos_id = resolve(eos_name, "eos_token");
    }

    // Without a config: the special token the post-processor puts first is the BOS
    // (it is what tokenizers itself would prepend), else the llama default "<s>".
    bool template_known = false, template_bos = false;
    const Json* post = JsonContext::find(root, "post_processor");
    // Llama 3 puts its TemplateProcessing in a Sequence after a ByteLevel (offsets only).
    if (post && post->is_object() && type_if_string(*post) == "Sequence") {
      const Json* list = JsonContext::find(*post, "processors");
      const Json* found = nullptr;
      if (list && list->is_array())
        for (const Json& p : *list)
          if (p.is_object() && type_if_string(p) == "TemplateProcessing") found = &p;
      post = found;
    }
    if (post && post->is_object() && type_if_string(*post) == "TemplateProcessing") {
      const Json* single = JsonContext::find(*post, "single");
      if (single && single->is_array()) {
        template_known = true;
        if (!single->empty()) {
          const Json* special = JsonContext::find((*single)[0], "SpecialToken");
          const Json* name = special ? JsonContext::find(*special, "id") : nullptr;
          if (name && name->is_string()) {
            template_bos = true;
            if (!have_bos) {
              int id = token_id(name->get<std::string>());
              const Json* table = JsonContext::find(*post, "special_tokens");
              const Json* entry = table ? JsonContext::find(*table, name->get<std::string>().c_str()) : nullptr;
              const Json* ids = entry ? JsonContext::find(*entry, "ids") : nullptr;
              if (ids && ids->is_array() && ids->size() == 1 && (*ids)[0].is_number_integer()) {
                const long long listed = (*ids)[0].get<long long>();
                if (listed >= 0 && listed < vocab_size) id = static_cast<int>(listed);
              }
              if (id >= 0) {
                bos_id = id;
                have_bos = true;
              }
            }
          }
        }
      }
    }
    if (!have_bos) bos_id = token_id("<s>");
    if (!have_eos) eos_id = token_id("</s>");
    if (!have_add_bos) add_bos = template_known ? template_bos : true;
    add_bos_default = add_bos && bos_id >= 0;
  }

  BpeModel model_;
  std::vector<std::pair<std::string, int>> model_vocab_;  // only while loading
  std::vector<AddedToken> added_;
  std::vector<NormalizerStep> normalizer_;
  bool has_decoder_ = false;
  bool byte_level_ = false;  // the decoder has a ByteLevel step
  std::vector<DecoderStep> decoder_;
  std::vector<PreTokenizerStep> pre_tokenizer_;
  PatternSplitter raw_splitter_, normalized_splitter_;
  std::vector<std::string> tokens_;  // id -> token string (added tokens included)
};

}  // namespace hf
}  // namespace detail
}  // namespace depass
