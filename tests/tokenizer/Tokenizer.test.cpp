// Tokenizer tests: golden ids from the independent Python reference
// (tools/reference/tokenizers.py), the run.c and Hugging Face rules on small crafted
// vocabularies, and hostile files that must be refused with a precise message.

#include <depass/Tokenizer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "TestSupport.hpp"

using depass::FormatError;
using depass::Tokenizer;
using Json = nlohmann::json;

namespace {

// ---------------------------------------------------------------------------
// helpers

Json load_golden(const std::string& name) {
  const std::string path = depass::test::golden_path(name);
  REQUIRE(depass::test::file_exists(path));
  return Json::parse(depass::test::read_file(path));
}

std::vector<int> with_bos(int bos, std::vector<int> ids) {
  ids.insert(ids.begin(), bos);
  return ids;
}

/// Bytes of a llama2.c tokenizer file, record by record.
class TokBin {
 public:
  explicit TokBin(std::int32_t max_token_length) { i32(max_token_length); }
  TokBin& token(const std::string& piece, float score = 0.0f) {
    return record(score, static_cast<std::int32_t>(piece.size()), piece);
  }
  TokBin& record(float score, std::int32_t len, const std::string& bytes) {
    f32(score);
    i32(len);
    bytes_ += bytes;
    return *this;
  }
  TokBin& raw(const std::string& bytes) {
    bytes_ += bytes;
    return *this;
  }
  const std::string& bytes() const { return bytes_; }

 private:
  void i32(std::int32_t v) {
    char b[4];
    std::memcpy(b, &v, 4);
    bytes_.append(b, 4);
  }
  void f32(float v) {
    char b[4];
    std::memcpy(b, &v, 4);
    bytes_.append(b, 4);
  }
  std::string bytes_;
};

/// A tiny llama2.c vocabulary: <unk>, BOS, EOS, then the given pieces.
TokBin small_vocab(const std::vector<std::pair<std::string, float>>& pieces) {
  TokBin bin(16);
  bin.token("<unk>").token("\n<s>\n").token("\n</s>\n");
  for (const auto& p : pieces) bin.token(p.first, p.second);
  return bin;
}

/// run.c's merge loop, literally: rescan all pairs after every merge.
std::vector<int> naive_run_c_merges(std::vector<int> ids, const std::vector<std::string>& pieces,
                                    const std::vector<float>& scores,
                                    const std::unordered_map<std::string, int>& lookup) {
  for (;;) {
    float best_score = -1e10f;
    int best_id = -1, best_idx = -1;
    for (std::size_t i = 0; i + 1 < ids.size(); ++i) {
      const auto it = lookup.find(pieces[ids[i]] + pieces[ids[i + 1]]);
      if (it != lookup.end() && scores[it->second] > best_score) {
        best_score = scores[it->second];
        best_id = it->second;
        best_idx = static_cast<int>(i);
      }
    }
    if (best_idx < 0) return ids;
    ids[best_idx] = best_id;
    ids.erase(ids.begin() + best_idx + 1);
  }
}

/// A minimal SentencePiece-style tokenizer.json, modified by the caller as needed.
Json small_hf_json() {
  Json j;
  j["version"] = "1.0";
  j["added_tokens"] = Json::array({
      {{"id", 0}, {"content", "<unk>"}, {"special", true}, {"normalized", false}},
      {{"id", 1}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
      {{"id", 2}, {"content", "</s>"}, {"special", true}, {"normalized", false}},
  });
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers",
                      Json::array({{{"type", "Prepend"}, {"prepend", "\u2581"}},
                                   {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}})}};
  j["pre_tokenizer"] = nullptr;
  j["post_processor"] = nullptr;
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders", Json::array({{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                                            {{"type", "ByteFallback"}},
                                            {{"type", "Fuse"}},
                                            {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  Json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}, {"\u2581", 3}, {"a", 4},          {"b", 5},
                {"c", 6},     {"ab", 7},  {"bc", 8},   {"\u2581a", 9}, {"\u2581ab", 10}, {"<0xC3>", 11},
                {"<0xA9>", 12}};
  j["model"] = {{"type", "BPE"},          {"dropout", nullptr}, {"unk_token", "<unk>"},
                {"fuse_unk", true},       {"byte_fallback", true},
                {"vocab", vocab},
                {"merges", Json::array({"a b", "\u2581 a", "b c", "\u2581a b"})}};
  return j;
}

Tokenizer hf_from(const depass::test::TempDir& dir, const Json& tokenizer_json,
                  const Json& config = Json()) {
  dir.write("tokenizer.json", tokenizer_json.dump());
  if (!config.is_null()) dir.write("tokenizer_config.json", config.dump());
  return Tokenizer::from_huggingface(dir.root());
}

void require_hf_error(const Json& tokenizer_json, const std::string& fragment) {
  depass::test::TempDir dir;
  const std::string path = dir.write("tokenizer.json", tokenizer_json.dump());
  INFO("expecting a FormatError containing: " << fragment);
  REQUIRE_THROWS_AS(Tokenizer::from_huggingface(path), FormatError);
  REQUIRE_THROWS_WITH(Tokenizer::from_huggingface(path), Catch::Contains(fragment));
  REQUIRE_THROWS_WITH(Tokenizer::from_huggingface(path), Catch::Contains(path));
}

void require_tokbin_error(const std::string& bytes, const std::string& fragment, int hint = -1) {
  depass::test::TempDir dir;
  const std::string path = dir.write("tok.bin", bytes);
  INFO("expecting a FormatError containing: " << fragment);
  REQUIRE_THROWS_AS(Tokenizer::from_llama2c(path, hint), FormatError);
  REQUIRE_THROWS_WITH(Tokenizer::from_llama2c(path, hint), Catch::Contains(fragment));
  REQUIRE_THROWS_WITH(Tokenizer::from_llama2c(path, hint), Catch::Contains(path));
}

std::string random_text(std::mt19937& rng, std::size_t atoms) {
  static const std::vector<std::string> pool = {
      "a", "e", "t", "h", "o", "n", " ", " ", "the ", "Once upon a time", ", ", ".", "\n", "Lily",
      "\xC3\xA9", "\xE6\x97\xA5", "\xF0\x9F\x99\x82", "1", "?", "\t", "  ", "and ", "ing", "<s>"};
  std::uniform_int_distribution<std::size_t> pick(0, pool.size() - 1);
  std::string text;
  for (std::size_t i = 0; i < atoms; ++i) text += pool[pick(rng)];
  return text;
}

}  // namespace

// ===========================================================================
// llama2.c tok512 (stories260K)

TEST_CASE("tok512: golden cases encode and decode as the Python reference") {
  DEPASS_REQUIRE_MODEL(path, "stories260K/tok512.bin");
  const Json golden = load_golden("tokenizer_tok512.json");
  REQUIRE(golden["tokenizer"] == "stories260K/tok512.bin");
  const Tokenizer tok = Tokenizer::from_llama2c(path);
  REQUIRE(golden["cases"].size() >= 10);
  for (const Json& c : golden["cases"]) {
    const std::string text = c["text"];
    const bool add_bos = c["add_bos"];
    const std::vector<int> ids = c["ids"];
    INFO("text: " << Json(text).dump() << " add_bos: " << add_bos);
    CHECK(tok.encode(text, add_bos) == ids);
    CHECK(tok.decode(ids) == c["decoded"].get<std::string>());
    // Every golden text is valid UTF-8, which run.c's byte fallback represents exactly:
    // after a BOS the dummy-prefix space is stripped, without one it stays.
    if (add_bos)
      CHECK(tok.decode(ids) == text);
    else if (!text.empty())
      CHECK(tok.decode(ids) == " " + text);
  }
}

TEST_CASE("tok512: 'Once upon a time' gives the known ids, pieces and streamed text") {
  DEPASS_REQUIRE_MODEL(path, "stories260K/tok512.bin");
  const Tokenizer tok = Tokenizer::from_llama2c(path);
  CHECK(tok.vocab_size() == 512);
  CHECK(tok.bos_id() == 1);
  CHECK(tok.eos_id() == 2);
  CHECK(tok.add_bos_default());
  const std::vector<int> ids = tok.encode("Once upon a time");
  REQUIRE(ids == std::vector<int>{1, 403, 407, 261, 378});
  CHECK(tok.encode("Once upon a time", false) == std::vector<int>{403, 407, 261, 378});
  CHECK(tok.piece(403) == " Once");
  CHECK(tok.piece(378) == " time");
  CHECK(tok.token_text(1, 403) == "Once");   // after BOS the leading space goes
  CHECK(tok.token_text(403, 407) == " upon");
  CHECK(tok.token_text(-1, 403) == " Once");  // run.c strips only after BOS
  CHECK(tok.piece(3 + 'A') == "A");           // <0x41> is the byte 'A'
  CHECK(tok.piece(3) == std::string(1, '\0'));
  CHECK(tok.decode(ids) == "Once upon a time");
  CHECK(tok.decode({}) == "");
  CHECK(tok.decode({1}) == "");
}

TEST_CASE("tok512: empty prompt is just BOS, or nothing") {
  DEPASS_REQUIRE_MODEL(path, "stories260K/tok512.bin");
  const Tokenizer tok = Tokenizer::from_llama2c(path);
  CHECK(tok.encode("") == std::vector<int>{1});
  CHECK(tok.encode("", false).empty());
}

TEST_CASE("tok512: the heap-based merge makes the same choices as run.c's rescan loop") {
  DEPASS_REQUIRE_MODEL(path, "stories260K/tok512.bin");
  const Tokenizer tok = Tokenizer::from_llama2c(path);
  // Rebuild run.c's view of the vocabulary from the file itself.
  const std::string bytes = depass::test::read_file(path);
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::unordered_map<std::string, int> lookup;
  for (std::size_t off = 4; off < bytes.size();) {
    float score;
    std::int32_t len;
    std::memcpy(&score, bytes.data() + off, 4);
    std::memcpy(&len, bytes.data() + off + 4, 4);
    pieces.push_back(bytes.substr(off + 8, static_cast<std::size_t>(len)));
    scores.push_back(score);
    lookup.emplace(pieces.back(), static_cast<int>(pieces.size() - 1));
    off += 8 + static_cast<std::size_t>(len);
  }
  REQUIRE(pieces.size() == 512);
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 200; ++trial) {
    const std::string text = random_text(rng, 1 + static_cast<std::size_t>(trial % 40));
    // The unmerged sequence: BOS, " ", then each character or its bytes + 3.
    std::vector<int> start{1, lookup.at(" ")};
    for (std::size_t i = 0; i < text.size();) {
      std::size_t len = 1;
      while (len < 4 && i + len < text.size() && (static_cast<unsigned char>(text[i + len]) & 0xC0) == 0x80) ++len;
      const auto it = lookup.find(text.substr(i, len));
      if (it != lookup.end())
        start.push_back(it->second);
      else
        for (std::size_t k = 0; k < len; ++k) start.push_back(static_cast<unsigned char>(text[i + k]) + 3);
      i += len;
    }
    INFO("text: " << Json(text).dump());
    REQUIRE(tok.encode(text) == naive_run_c_merges(start, pieces, scores, lookup));
  }
}

TEST_CASE("llama2.c: merges take the highest score, the leftmost pair on ties") {
  depass::test::TempDir dir;
  // ids: 3 " ", 4 "a", 5 "b", 6 "ab", 7 "ba", 8 " a", 9 "x", 10 "xx"
  auto make = [&](float ab, float ba, float space_a, float xx) {
    return Tokenizer::from_llama2c(
        dir.write("tok.bin", small_vocab({{" ", 0}, {"a", 0}, {"b", 0}, {"ab", ab}, {"ba", ba}, {" a", space_a},
                                          {"x", 0}, {"xx", xx}})
                                 .bytes()));
  };
  // "aba": pairs " a", "ab", "ba"; the dummy-prefix space takes part in merging.
  // run.c's best score starts at -1e10: pieces scoring no more than that never merge.
  const float never = -2e10f;
  CHECK(make(1, 1, never, 0).encode("aba", false) == std::vector<int>{3, 6, 4});  // tie: leftmost "ab"
  CHECK(make(1, 2, never, 0).encode("aba", false) == std::vector<int>{3, 4, 7});  // "ba" scores higher
  CHECK(make(1, 2, 3, 0).encode("aba", false) == std::vector<int>{8, 7});         // " a" first, then "ba"
  CHECK(make(1, 2, -5, 0).encode("aba", false) == std::vector<int>{8, 7});        // "ba", then " a"
  CHECK(make(never, never, never, 0).encode("aba", false) == std::vector<int>{3, 4, 5, 4});
  // "xxx": the leftmost "xx" merges, the last x stays.
  CHECK(make(0, 0, 0, 1).encode("xxx", false) == std::vector<int>{3, 10, 9});
  // A character outside a vocabulary without byte tokens becomes <unk>, never an
  // out-of-range byte id.
  const Tokenizer tiny = make(0, 0, 0, 0);
  for (int id : tiny.encode("a\xE2\x82\xAC", false)) CHECK(id < tiny.vocab_size());
}

TEST_CASE("llama2.c: vocab_size_hint reads exactly that many tokens") {
  depass::test::TempDir dir;
  const TokBin bin = small_vocab({{" ", 0}, {"a", 0}});
  const std::string path = dir.write("tok.bin", bin.bytes());
  CHECK(Tokenizer::from_llama2c(path).vocab_size() == 5);
  CHECK(Tokenizer::from_llama2c(path, 5).vocab_size() == 5);
  require_tokbin_error(bin.bytes(), "has only 5 tokens, expected 6", 6);
  require_tokbin_error(bin.bytes(), "unexpected bytes after the 4 tokens", 4);
  REQUIRE_THROWS_AS(Tokenizer::from_llama2c(path, 0), std::invalid_argument);
  REQUIRE_THROWS_WITH(Tokenizer::from_llama2c(path, -7), Catch::Contains("vocab_size_hint -7"));
}

TEST_CASE("llama2.c: hostile tokenizer files are refused with the problem named") {
  SECTION("empty file") { require_tokbin_error("", "max_token_length"); }
  SECTION("header only") { require_tokbin_error(TokBin(8).bytes(), "contains no tokens"); }
  SECTION("max_token_length zero or absurd") {
    require_tokbin_error(TokBin(0).token("a").bytes(), "max_token_length 0 is out of range");
    require_tokbin_error(TokBin(1 << 20).token("a").bytes(), "max_token_length 1048576 is out of range");
    require_tokbin_error(TokBin(-3).token("a").bytes(), "max_token_length -3 is out of range");
  }
  SECTION("truncated record names the token index") {
    const std::string whole = small_vocab({{"hello", 0}}).bytes();
    require_tokbin_error(whole.substr(0, whole.size() - 2), "token 3 bytes");
    require_tokbin_error(whole.substr(0, whole.size() - 5 - 2), "token 3 length");
    require_tokbin_error(whole.substr(0, whole.size() - 5 - 6), "token 3 score");
  }
  SECTION("negative length") {
    require_tokbin_error(TokBin(8).token("a").record(0.0f, -1, "").bytes(), "token 1 has length -1");
  }
  SECTION("length beyond max_token_length") {
    require_tokbin_error(TokBin(4).token("a").token("toolong").bytes(),
                         "token 1 has length 7, outside [0, max_token_length 4]");
  }
  SECTION("length beyond the end of the file") {
    require_tokbin_error(TokBin(64).token("a").record(0.0f, 50, "short").bytes(), "token 1 bytes");
  }
  SECTION("NaN or infinite score") {
    require_tokbin_error(TokBin(8).token("a").token("b", std::numeric_limits<float>::quiet_NaN()).bytes(),
                         "token 1 has a non-finite score");
    require_tokbin_error(TokBin(8).token("a", std::numeric_limits<float>::infinity()).bytes(),
                         "token 0 has a non-finite score");
  }
  SECTION("missing file is not a format error") {
    depass::test::TempDir dir;
    const std::string path = dir.path("absent.bin");
    REQUIRE_THROWS_AS(Tokenizer::from_llama2c(path), std::runtime_error);
    try {
      Tokenizer::from_llama2c(path);
    } catch (const FormatError&) {
      FAIL("a missing file must not be reported as a FormatError");
    } catch (const std::runtime_error& e) {
      CHECK_THAT(e.what(), Catch::Contains(path));
    }
  }
}

// ===========================================================================
// Hugging Face TinyStories-656K

TEST_CASE("tinystories-656k: golden cases encode and decode as the Python reference") {
  DEPASS_REQUIRE_MODEL(path, "tinystories-656k/tokenizer.json");
  const Json golden = load_golden("tokenizer_tinystories656k.json");
  REQUIRE(golden["tokenizer"] == "tinystories-656k/tokenizer.json");
  const Tokenizer tok = Tokenizer::from_huggingface(path);
  REQUIRE(golden["cases"].size() >= 10);
  for (const Json& c : golden["cases"]) {
    const std::string text = c["text"];
    const bool add_bos = c["add_bos"];
    const std::vector<int> ids = c["ids"];
    const std::string decoded = c["decoded"];
    INFO("text: " << Json(text).dump() << " add_bos: " << add_bos);
    CHECK(tok.encode(text, add_bos) == ids);
    // The golden text is the decoding of the ids without the BOS that add_bos put
    // there. decode() takes a leading BOS as that marker, so ids without an added BOS
    // that start with the BOS token itself (the text began with it) are decoded with
    // one prepended, which is what they mean.
    if (add_bos || ids.empty() || ids[0] != tok.bos_id())
      CHECK(tok.decode(ids) == decoded);
    else
      CHECK(tok.decode(with_bos(tok.bos_id(), ids)) == decoded);
    // Round trip wherever the vocabulary covers the text (no <unk>) and no added token
    // swallowed a space.
    const bool has_unk = std::find(ids.begin(), ids.end(), 0) != ids.end();
    if (!has_unk && text.find("<|") == std::string::npos) CHECK(tok.decode(ids) == text);
    // Streaming: token_text concatenated over the sequence rebuilds the decoding.
    std::string streamed;
    int prev = -1;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (i == 0 && add_bos) {
        prev = ids[0];
        continue;
      }
      streamed += tok.token_text(prev, ids[i]);
      prev = ids[i];
    }
    CHECK(streamed == decoded);
  }
}

TEST_CASE("tinystories-656k: directory and file load alike, with the config's special tokens") {
  DEPASS_REQUIRE_MODEL(file, "tinystories-656k/tokenizer.json");
  const std::string directory = depass::test::model_path("tinystories-656k");
  const Tokenizer a = Tokenizer::from_huggingface(directory);
  const Tokenizer b = Tokenizer::from_huggingface(file);
  for (const Tokenizer* t : {&a, &b}) {
    CHECK(t->vocab_size() == 2048);
    CHECK(t->bos_id() == 1);  // <|start_story|>
    CHECK(t->eos_id() == 2);  // <|end_story|>
    CHECK(t->add_bos_default());
    CHECK(t->encode("Once upon a time") == std::vector<int>{1, 80, 147, 201, 282, 57});
    CHECK(t->piece(80) == " ");
    CHECK(t->piece(201) == "ce ");
    CHECK(t->piece(1) == "<|start_story|>");
    CHECK(t->token_text(1, 80) == "");  // the decoder strips the leading space at the start
    CHECK(t->token_text(-1, 80) == "");
    CHECK(t->token_text(80, 80) == " ");
  }
  CHECK(a.encode("") == std::vector<int>{1});
  CHECK(a.encode("", false).empty());
}

TEST_CASE("tinystories-656k: invalid UTF-8 input is an invalid argument") {
  DEPASS_REQUIRE_MODEL(path, "tinystories-656k/tokenizer.json");
  const Tokenizer tok = Tokenizer::from_huggingface(path);
  REQUIRE_THROWS_AS(tok.encode("ok \xFF"), std::invalid_argument);
  REQUIRE_THROWS_WITH(tok.encode("ok \xC3"), Catch::Contains("not valid UTF-8 (at byte 3)"));
}

// ===========================================================================
// Both formats

TEST_CASE("unknown token ids are invalid arguments naming the id and the range") {
  DEPASS_REQUIRE_MODEL(l2c, "stories260K/tok512.bin");
  DEPASS_REQUIRE_MODEL(hf, "tinystories-656k/tokenizer.json");
  const Tokenizer a = Tokenizer::from_llama2c(l2c);
  const Tokenizer b = Tokenizer::from_huggingface(hf);
  REQUIRE_THROWS_WITH(a.decode({1, 512}), "token id 512 is out of range [0, 512)");
  REQUIRE_THROWS_WITH(a.piece(-1), "token id -1 is out of range [0, 512)");
  REQUIRE_THROWS_WITH(a.token_text(1, 9999), "token id 9999 is out of range [0, 512)");
  REQUIRE_THROWS_WITH(a.token_text(-2, 5), "token id -2 is out of range [0, 512)");
  REQUIRE_THROWS_WITH(a.check_id(512), "token id 512 is out of range [0, 512)");
  REQUIRE_NOTHROW(a.check_id(511));
  REQUIRE_THROWS_AS(b.decode({2048}), std::invalid_argument);
  REQUIRE_THROWS_WITH(b.piece(2048), "token id 2048 is out of range [0, 2048)");
  REQUIRE_THROWS_WITH(b.token_text(0, -5), "token id -5 is out of range [0, 2048)");
}

TEST_CASE("a 20,000-character prompt encodes quickly and round-trips") {
  DEPASS_REQUIRE_MODEL(l2c, "stories260K/tok512.bin");
  DEPASS_REQUIRE_MODEL(hf, "tinystories-656k/tokenizer.json");
  std::string text;
  const std::string sentence = "Once upon a time, there was a little girl named Lily. She loved to play. ";
  while (text.size() < 20000) text += sentence;
  text.resize(20000);
  std::string unbroken;  // one 20,000-character word: the worst case for BPE
  while (unbroken.size() < 20000) unbroken += "thetimeandLily";
  unbroken.resize(20000);

  const Tokenizer a = Tokenizer::from_llama2c(l2c);
  const Tokenizer b = Tokenizer::from_huggingface(hf);
  for (const std::string* s : {&text, &unbroken}) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int> ia = a.encode(*s);
    const std::vector<int> ib = b.encode(*s);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    INFO("encoding " << s->size() << " characters with both tokenizers took " << seconds << " s ("
                     << ia.size() << " and " << ib.size() << " tokens)");
    CHECK(ia.size() < s->size());
    CHECK(ib.size() < s->size());
    CHECK(a.decode(ia) == *s);
    CHECK(b.decode(ib) == *s);
  }
}

// ===========================================================================
// Hugging Face rules on a crafted tokenizer.json

TEST_CASE("hf: BPE merges by rank, byte fallback, <unk> fusing, merges as pairs") {
  depass::test::TempDir dir;
  Json j = small_hf_json();
  const Tokenizer tok = hf_from(dir, j);
  CHECK(tok.vocab_size() == 13);
  CHECK(tok.bos_id() == 1);  // "<s>" by default
  CHECK(tok.eos_id() == 2);
  CHECK(tok.add_bos_default());
  // "▁abc": merges a b (rank 0) first, then ▁ a? no: ▁ and ab are left, and "▁ ab" is
  // not a merge, so the result stays [▁, ab, c].
  CHECK(tok.encode("abc", false) == std::vector<int>{3, 7, 6});
  // "▁a": rank 1 "▁ a" -> "▁a"; "▁ab" needs "▁a b" (rank 3) but "a b" (rank 0) wins.
  CHECK(tok.encode("a", false) == std::vector<int>{9});
  CHECK(tok.encode("ab", false) == std::vector<int>{3, 7});
  // é has byte tokens <0xC3><0xA9>; € does not, so it (and the next unknown) is one <unk>.
  CHECK(tok.encode("\xC3\xA9", false) == std::vector<int>{3, 11, 12});
  CHECK(tok.encode("a\xE2\x82\xAC\xE2\x82\xAC", false) == std::vector<int>{9, 0});
  CHECK(tok.decode({1, 3, 11, 12}) == "\xC3\xA9");
  // A broken byte sequence decodes to one U+FFFD per byte, as tokenizers does.
  CHECK(tok.decode({1, 4, 11, 4}) == "a\xEF\xBF\xBD" "a");
  // ... but streamed, a byte token is its raw byte, so the caller can join them.
  CHECK(tok.token_text(3, 11) == "\xC3");
  CHECK(tok.token_text(11, 12) == "\xA9");
  CHECK(tok.piece(12) == "\xA9");

  j["model"]["fuse_unk"] = false;
  j["model"]["merges"] = Json::array({Json::array({"a", "b"}), Json::array({"\u2581", "a"})});
  depass::test::TempDir dir2;
  const Tokenizer unfused = hf_from(dir2, j);
  CHECK(unfused.encode("a\xE2\x82\xAC\xE2\x82\xAC", false) == std::vector<int>{9, 0, 0});
  CHECK(unfused.encode("ab", false) == std::vector<int>{3, 7});
}

TEST_CASE("hf: added tokens split the text; normalized ones match their normalized form") {
  depass::test::TempDir dir;
  Json j = small_hf_json();
  // "<s>" etc. are normalized=false: found in the raw text; each piece in between is
  // normalized on its own, so it gets its own "▁".
  const Tokenizer raw = hf_from(dir, j);
  CHECK(raw.encode("a<s>a", false) == std::vector<int>{9, 1, 9});
  CHECK(raw.encode("<s>", false) == std::vector<int>{1});
  CHECK(raw.decode({1, 9, 1, 9}) == "a<s> a");

  // normalized=true: the pattern is the normalized content, "▁<s>", so the token is
  // only found after a space (or at the start) and absorbs it.
  j["added_tokens"][1]["normalized"] = true;
  depass::test::TempDir dir2;
  const Tokenizer norm = hf_from(dir2, j);
  CHECK(norm.encode("<s>", false) == std::vector<int>{1});
  CHECK(norm.encode("a <s>a", false) == std::vector<int>{9, 1, 4});
  CHECK(norm.encode("a<s>", false) != std::vector<int>{9, 1});

  // lstrip / rstrip absorb the whitespace around a raw-matched token.
  j["added_tokens"][1]["normalized"] = false;
  j["added_tokens"][1]["lstrip"] = true;
  j["added_tokens"][1]["rstrip"] = true;
  depass::test::TempDir dir3;
  const Tokenizer strip = hf_from(dir3, j);
  CHECK(strip.encode("a  <s> \ta", false) == std::vector<int>{9, 1, 9});
}

TEST_CASE("hf: tokenizer_config.json decides BOS, EOS and add_bos_token") {
  const Json j = small_hf_json();
  {
    depass::test::TempDir dir;
    const Tokenizer t = hf_from(dir, j, Json{{"add_bos_token", false}, {"bos_token", "<s>"}});
    CHECK_FALSE(t.add_bos_default());
    CHECK(t.encode("a") == std::vector<int>{9});  // add_bos is ignored when the tokenizer adds none
  }
  {
    depass::test::TempDir dir;
    const Tokenizer t =
        hf_from(dir, j, Json{{"bos_token", {{"content", "</s>"}}}, {"eos_token", {{"content", "<s>"}}}});
    CHECK(t.bos_id() == 2);
    CHECK(t.eos_id() == 1);
    CHECK(t.encode("a") == std::vector<int>{2, 9});
  }
  {
    depass::test::TempDir dir;
    const Tokenizer t = hf_from(dir, j, Json{{"bos_token", nullptr}, {"eos_token", nullptr}});
    CHECK(t.bos_id() == -1);
    CHECK(t.eos_id() == -1);
    CHECK_FALSE(t.add_bos_default());
    CHECK(t.encode("a") == std::vector<int>{9});
  }
  {
    depass::test::TempDir dir;
    dir.write("tokenizer.json", j.dump());
    dir.write("tokenizer_config.json", Json{{"bos_token", "<nope>"}}.dump());
    REQUIRE_THROWS_AS(Tokenizer::from_huggingface(dir.root()), FormatError);
    REQUIRE_THROWS_WITH(Tokenizer::from_huggingface(dir.root()),
                        Catch::Contains("tokenizer_config.json: bos_token '<nope>' is not in the vocabulary"));
    dir.write("tokenizer_config.json", "{ not json");
    REQUIRE_THROWS_WITH(Tokenizer::from_huggingface(dir.root()),
                        Catch::Contains("tokenizer_config.json: invalid JSON"));
  }
}

TEST_CASE("hf: hostile or unsupported tokenizer.json files are refused with the problem named") {
  SECTION("invalid JSON") {
    depass::test::TempDir dir;
    const std::string path = dir.write("tokenizer.json", "{\"model\": ");
    REQUIRE_THROWS_AS(Tokenizer::from_huggingface(path), FormatError);
    REQUIRE_THROWS_WITH(Tokenizer::from_huggingface(path), Catch::Contains("invalid JSON"));
  }
  SECTION("not an object") { require_hf_error(Json::array({1, 2}), "top level must be a JSON object"); }
  SECTION("missing model") {
    Json j = small_hf_json();
    j.erase("model");
    require_hf_error(j, "missing \"model\"");
  }
  SECTION("unsupported model type") {
    Json j = small_hf_json();
    j["model"]["type"] = "Unigram";
    require_hf_error(j, "unsupported model type \"Unigram\"");
  }
  SECTION("unsupported pre-tokenizers") {
    Json j = small_hf_json();
    j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}};
    require_hf_error(j, "unsupported pre_tokenizer \"Metaspace\" at pre_tokenizer");
  }
  SECTION("unsupported normalizer and decoder") {
    Json j = small_hf_json();
    j["normalizer"]["normalizers"].push_back({{"type", "NFKC"}});
    require_hf_error(j, "unsupported normalizer \"NFKC\"");
    j = small_hf_json();
    j["decoder"] = {{"type", "WordPiece"}};
    require_hf_error(j, "unsupported decoder \"WordPiece\"");
    j = small_hf_json();
    j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Regex", " +"}}}, {"content", " "}};
    require_hf_error(j, "Regex patterns are not supported");
  }
  SECTION("missing or malformed vocab") {
    Json j = small_hf_json();
    j["model"].erase("vocab");
    require_hf_error(j, "missing \"vocab\" in model");
    j = small_hf_json();
    j["model"]["vocab"]["a"] = "four";
    require_hf_error(j, "model.vocab['a'] must be an integer");
  }
  SECTION("duplicate vocab ids") {
    Json j = small_hf_json();
    j["model"]["vocab"]["c"] = 5;
    require_hf_error(j, "id 5 is used by both");
  }
  SECTION("vocab ids out of range") {
    Json j = small_hf_json();
    j["model"]["vocab"]["c"] = 500;
    require_hf_error(j, "token 'c' has id 500, out of range [0, 13)");
    j["model"]["vocab"]["c"] = -1;
    require_hf_error(j, "token 'c' has id -1, out of range");
  }
  SECTION("added token disagreeing with the vocab") {
    Json j = small_hf_json();
    j["added_tokens"][2]["id"] = 7;
    require_hf_error(j, "added_tokens[2] '</s>' has id 7 but model.vocab gives it id 2");
  }
  SECTION("merges naming unknown tokens") {
    Json j = small_hf_json();
    j["model"]["merges"].push_back("a zz");
    require_hf_error(j, "model.merges[4] names 'zz', which is not in model.vocab");
    j = small_hf_json();
    j["model"]["merges"].push_back("c a");  // both known, "ca" is not
    require_hf_error(j, "model.merges[4] (the merged token) names 'ca'");
    j = small_hf_json();
    j["model"]["merges"].push_back("abc");
    require_hf_error(j, "model.merges[4] 'abc' must be two tokens separated by one space");
    j = small_hf_json();
    j["model"]["merges"].push_back(Json::array({"a"}));
    require_hf_error(j, "model.merges[4] must be a string");
  }
  SECTION("unk_token missing from the vocab") {
    Json j = small_hf_json();
    j["model"]["unk_token"] = "[UNK]";
    require_hf_error(j, "model.unk_token '[UNK]' is not in model.vocab");
  }
  SECTION("BPE dropout") {
    Json j = small_hf_json();
    j["model"]["dropout"] = 0.1;
    require_hf_error(j, "unsupported model.dropout");
  }
  SECTION("single_word added tokens") {
    Json j = small_hf_json();
    j["added_tokens"][1]["single_word"] = true;
    require_hf_error(j, "single_word");
  }
  SECTION("missing files are not format errors") {
    depass::test::TempDir dir;
    REQUIRE_THROWS_AS(Tokenizer::from_huggingface(dir.path("nothing.json")), std::runtime_error);
    REQUIRE_THROWS_WITH(Tokenizer::from_huggingface(dir.root()), Catch::Contains("has no tokenizer.json"));
  }
}
