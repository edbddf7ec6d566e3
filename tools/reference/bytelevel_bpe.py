#!/usr/bin/python3
"""Independent reference of GPT-2-style byte-level BPE (as Hugging Face `tokenizers`
runs it from a `tokenizer.json`), plus a tiny deterministic BPE trainer and writers for
the three tokenizer styles used by the family test checkpoints.

Written from the published definitions (GPT-2 `encoder.py`: bytes_to_unicode and the
split regex; the `tokenizer.json` format and pipeline of Hugging Face `tokenizers`:
added tokens -> normalizer -> pre-tokenizer -> BPE model -> post-processor; decoder),
not from any project C++.  No `regex`/`tokenizers`/`transformers` packages are used.

Pipeline implemented by `ByteLevelBPE.encode(text, add_special_tokens)`:
  1. Added tokens (`added_tokens` of tokenizer.json) are split out first: at each
     position the longest added token that starts there wins, scanning left to right
     (leftmost-longest, as the Rust AddedVocabulary's Aho-Corasick matcher does).
     Tokens with `normalized: false` are matched in the raw text; tokens with
     `normalized: true` in the normalised text (identical here: the only normaliser
     used is NFC and all added tokens are ASCII).
  2. normalizer: null or NFC (per non-added segment).
  3. pre_tokenizer: ByteLevel(use_regex=true) -> split with the GPT-2 pattern, or
     Sequence[Split(Regex, Isolated), ByteLevel(use_regex=false)].  "Isolated": every
     match is a piece and so is any unmatched gap (the patterns below leave none).
     Each piece's UTF-8 bytes are mapped through bytes_to_unicode.
  4. model BPE: merges by rank (lowest rank first, leftmost on ties; equivalent to the
     Rust priority queue over (rank, position)); with `ignore_merges: true` a piece that
     is itself a vocabulary entry is emitted as that single token before any merging.
  5. post_processor: null, ByteLevel (offsets only: ids unchanged), TemplateProcessing
     (single: the listed special tokens around $A), or a Sequence of those.
Decoding (`decode`, skip_special_tokens=False as HF's default): ids -> token strings
(vocab or added tokens), every character mapped back through the inverse byte map
(a token with a character outside the map contributes its own UTF-8 bytes), then
lossy UTF-8 decoding -- the ByteLevel decoder.  No clean_up_tokenization_spaces.

Regex character classes.  Python's `re` has no \\p{..}; the patterns are translated
to `re` syntax with explicit classes built from `unicodedata` (this interpreter:
Unicode 14.0, the version of the Oniguruma 6.9.8 tables used by `tokenizers`):
  \\p{L} = general categories Lu Ll Lt Lm Lo;  \\p{N} = Nd Nl No;
  \\s    = the Unicode White_Space property (U+0009-000D, 0020, 0085, 00A0, 1680,
          2000-200A, 2028, 2029, 202F, 205F, 3000), NOT Python's str.isspace (which
          also has U+001C-001F);  \\S = its complement.
The translation is exact for those definitions; the structure (alternation order,
greedy quantifiers with backtracking, (?!..) lookahead, (?i:..) scoped case folding)
is the same in Python `re` and Oniguruma.  Known residual gaps, avoided by the golden
strings: characters whose category changed after Unicode 14.0 / differs in the
Oniguruma build; case-folding corner cases inside (?i:'s|...) (U+017F LATIN SMALL
LETTER LONG S folds to "s" in both engines but is untested); whether Oniguruma's
\\s in this build is ASCII-only or Unicode (no non-ASCII whitespace in the goldens).
"""
import json
import re
import sys
import unicodedata

# ----------------------------------------------------------------------------
# Published split patterns (exactly as the tokenizer.json files carry them)
# ----------------------------------------------------------------------------
# GPT-2 (encoder.py; also the built-in regex of the `ByteLevel` pre-tokenizer)
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# Llama 3 (Meta-Llama-3 tokenizer.json, Split pre-tokenizer; tiktoken cl100k-style)
LLAMA3_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"""
                  r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
# Qwen2 (transformers' Qwen2Converter / Qwen2 tokenizer.json): single digits \p{N}
QWEN2_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
                 r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")


# ----------------------------------------------------------------------------
# bytes <-> unicode (GPT-2 encoder.py)
# ----------------------------------------------------------------------------
def bytes_to_unicode():
    """Ordered list of (byte, char): the printable bytes map to themselves, the other
    68 bytes to U+0100.. in increasing byte order.  The list order (printable first)
    is the order of the first 256 ids in GPT-2 / Llama 3 / Qwen2 vocabularies."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
          + list(range(ord("\xae"), ord("\xff") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [(b, chr(c)) for b, c in zip(bs, cs)]


BYTE_ORDER = bytes_to_unicode()
BYTE_TO_CHAR = {b: c for b, c in BYTE_ORDER}
CHAR_TO_BYTE = {c: b for b, c in BYTE_ORDER}


def bytes_to_symbols(s):
    return "".join(BYTE_TO_CHAR[b] for b in s.encode("utf-8"))


# ----------------------------------------------------------------------------
# \p{L}, \p{N}, \s as explicit classes for Python `re`
# ----------------------------------------------------------------------------
WHITE_SPACE = ([0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680]
               + list(range(0x2000, 0x200B)) + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000])


def _ranges(pred):
    out, start, prev = [], None, None
    for cp in range(0x110000):
        if pred(cp):
            if start is None:
                start = cp
            prev = cp
        elif start is not None:
            out.append((start, prev))
            start = None
    if start is not None:
        out.append((start, prev))
    return out


def _esc(cp):
    return "\\U%08x" % cp


def _class_body(ranges):
    return "".join(_esc(a) if a == b else "%s-%s" % (_esc(a), _esc(b)) for a, b in ranges)


_CLASSES = None


def _classes():
    global _CLASSES
    if _CLASSES is None:
        cat = unicodedata.category
        L = _class_body(_ranges(lambda c: cat(chr(c)) in ("Lu", "Ll", "Lt", "Lm", "Lo")))
        N = _class_body(_ranges(lambda c: cat(chr(c)) in ("Nd", "Nl", "No")))
        ws = set(WHITE_SPACE)
        S = _class_body(_ranges(lambda c: c in ws))
        _CLASSES = {"L": L, "N": N, "s": S}
    return _CLASSES


def translate_pattern(pat):
    """Onig-style pattern with \\p{L}, \\p{N}, \\s, \\S -> Python `re` pattern."""
    cls = _classes()
    out, i, in_class = [], 0, False
    while i < len(pat):
        c = pat[i]
        if c == "\\":
            nxt = pat[i + 1]
            if nxt == "p":
                assert pat[i + 2] == "{"
                j = pat.index("}", i)
                name = pat[i + 3:j]
                body = cls[name]
                out.append(body if in_class else "[" + body + "]")
                i = j + 1
                continue
            if nxt == "s":
                out.append(cls["s"] if in_class else "[" + cls["s"] + "]")
                i += 2
                continue
            if nxt == "S":
                assert not in_class, "\\S inside a class is not needed by these patterns"
                out.append("[^" + cls["s"] + "]")
                i += 2
                continue
            if nxt in "rnt":
                out.append(pat[i:i + 2])
                i += 2
                continue
            raise ValueError("unsupported escape \\%s" % nxt)
        if c == "[":
            assert not in_class
            in_class = True
            out.append(c)
            if pat[i + 1] == "^":
                out.append("^")
                i += 1
        elif c == "]":
            in_class = False
            out.append(c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


_COMPILED = {}


def compile_pattern(pat):
    if pat not in _COMPILED:
        _COMPILED[pat] = re.compile(translate_pattern(pat))
    return _COMPILED[pat]


def split_isolated(text, pat):
    """Split(pattern, behavior=Isolated): matches and the gaps between them."""
    rx = compile_pattern(pat)
    out, last = [], 0
    for m in rx.finditer(text):
        if m.start() > last:
            out.append(text[last:m.start()])
        if m.end() > m.start():
            out.append(m.group(0))
        last = m.end()
    if last < len(text):
        out.append(text[last:])
    return out


# ----------------------------------------------------------------------------
# BPE
# ----------------------------------------------------------------------------
def bpe_merge(symbols, ranks):
    """symbols: list of str; ranks: {(a, b): rank}.  Repeatedly merge the adjacent pair
    with the lowest rank, leftmost among equal ranks."""
    sym = list(symbols)
    while len(sym) > 1:
        best, bi = None, -1
        for i in range(len(sym) - 1):
            r = ranks.get((sym[i], sym[i + 1]))
            if r is not None and (best is None or r < best):
                best, bi = r, i
        if best is None:
            break
        sym[bi:bi + 2] = [sym[bi] + sym[bi + 1]]
    return sym


def train_bpe(words, n_merges):
    """words: {byte-level-symbol word: count} (dict order irrelevant).  Greedy BPE:
    the most frequent adjacent pair (weighted by word count) is merged; ties -> the
    lexicographically smallest (left, right) pair of symbol strings.  Returns merges."""
    corpus = sorted(([list(w), c] for w, c in words.items()), key=lambda wc: "".join(wc[0]))
    merges = []
    for _ in range(n_merges):
        counts = {}
        for sym, c in corpus:
            for i in range(len(sym) - 1):
                p = (sym[i], sym[i + 1])
                counts[p] = counts.get(p, 0) + c
        if not counts:
            break
        best = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        merges.append(best)
        a, b = best
        for wc in corpus:
            sym = wc[0]
            i, new = 0, []
            while i < len(sym):
                if i + 1 < len(sym) and sym[i] == a and sym[i + 1] == b:
                    new.append(a + b)
                    i += 2
                else:
                    new.append(sym[i])
                    i += 1
            wc[0] = new
    return merges


def add_unreachable_word(vocab, merges, words):
    """Pick a corpus word w (words with a leading space first, then by decreasing count,
    then by string) of >= 3 symbols that BPE leaves in >= 2 tokens, and a split
    w = a + b with a, b in the vocabulary such that, with (a, b) appended as the last
    merge, plain merging of w still does not give w.  Returns (a, b)."""
    ranks = {m: r for r, m in enumerate(merges)}
    order = sorted(words.items(), key=lambda wc: (not wc[0].startswith("\u0120"), -wc[1], wc[0]))
    for w, _ in order:
        if len(w) < 3 or w in vocab or bpe_merge(list(w), ranks) == [w]:
            continue
        for k in range(1, len(w)):
            a, b = w[:k], w[k:]
            if a in vocab and b in vocab:
                r2 = dict(ranks)
                r2[(a, b)] = len(merges)
                if bpe_merge(list(w), r2) != [w]:
                    return (a, b)
    raise RuntimeError("no candidate word")


# ----------------------------------------------------------------------------
# Tokenizer from a tokenizer.json
# ----------------------------------------------------------------------------
class ByteLevelBPE:
    def __init__(self, path_or_dict):
        if isinstance(path_or_dict, dict):
            j = path_or_dict
        else:
            with open(path_or_dict, encoding="utf-8") as f:
                j = json.load(f)
        m = j["model"]
        assert m["type"] == "BPE" and not m.get("byte_fallback", False)
        assert m.get("dropout") is None
        self.model_vocab = dict(m["vocab"])  # what BPE (and ignore_merges) looks up
        self.vocab = dict(m["vocab"])        # + added tokens: every token string -> id
        self.ignore_merges = bool(m.get("ignore_merges", False))
        self.ranks = {}
        for r, mg in enumerate(m["merges"]):
            a, b = mg.split(" ") if isinstance(mg, str) else mg
            self.ranks[(a, b)] = r
        self.added = {t["content"]: t for t in j.get("added_tokens", [])}
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        for t in j.get("added_tokens", []):
            self.id_to_token[t["id"]] = t["content"]
            self.vocab.setdefault(t["content"], t["id"])
        self.normalizer = j.get("normalizer")
        self.pre = j.get("pre_tokenizer")
        self.post = j.get("post_processor")
        self.decoder = j.get("decoder")
        assert self.decoder and self.decoder["type"] == "ByteLevel"

    # -- pipeline stages --------------------------------------------------
    def split_added(self, text):
        """-> list of (segment, is_added_token)."""
        out, buf, i = [], [], 0
        contents = sorted(self.added, key=len, reverse=True)
        while i < len(text):
            hit = None
            for c in contents:  # longest first -> leftmost-longest
                if text.startswith(c, i):
                    hit = c
                    break
            if hit is not None:
                if buf:
                    out.append(("".join(buf), False))
                    buf = []
                out.append((hit, True))
                i += len(hit)
            else:
                buf.append(text[i])
                i += 1
        if buf:
            out.append(("".join(buf), False))
        return out

    def normalize(self, s):
        n = self.normalizer
        if n is None:
            return s
        if n["type"] == "NFC":
            return unicodedata.normalize("NFC", s)
        raise ValueError("normalizer %r" % n["type"])

    def pre_tokenize(self, s):
        """-> list of byte-level pieces."""
        def apply(p, pieces):
            t = p["type"]
            if t == "Sequence":
                for q in p["pretokenizers"]:
                    pieces = apply(q, pieces)
                return pieces
            if t == "Split":
                assert p["behavior"] == "Isolated" and not p.get("invert", False)
                pat = p["pattern"]["Regex"]
                return [x for piece in pieces for x in split_isolated(piece, pat)]
            if t == "ByteLevel":
                assert not p.get("add_prefix_space", False)
                if p.get("use_regex", True):
                    pieces = [x for piece in pieces for x in split_isolated(piece, GPT2_PATTERN)]
                return [bytes_to_symbols(x) for x in pieces]
            raise ValueError("pre_tokenizer %r" % t)
        if not s:
            return []
        return apply(self.pre, [s])

    def bpe(self, piece, ignore_merges=None):
        im = self.ignore_merges if ignore_merges is None else ignore_merges
        if im and piece in self.model_vocab:
            return [piece]
        return bpe_merge(list(piece), self.ranks)

    def post_process(self, ids, add_special_tokens):
        def apply(p, ids):
            if p is None:
                return ids
            t = p["type"]
            if t == "Sequence":
                for q in p["processors"]:
                    ids = apply(q, ids)
                return ids
            if t == "ByteLevel":
                return ids
            if t == "TemplateProcessing":
                if not add_special_tokens:
                    return ids
                out = []
                for item in p["single"]:
                    if "SpecialToken" in item:
                        out += p["special_tokens"][item["SpecialToken"]["id"]]["ids"]
                    else:
                        assert item["Sequence"]["id"] == "A"
                        out += ids
                return out
            raise ValueError("post_processor %r" % t)
        return apply(self.post, list(ids))

    # -- public ------------------------------------------------------------
    def encode(self, text, add_special_tokens=True, ignore_merges=None):
        ids = []
        for seg, is_added in self.split_added(text):
            if is_added:
                ids.append(self.added[seg]["id"])
                continue
            for piece in self.pre_tokenize(self.normalize(seg)):
                ids += [self.model_vocab[t] for t in self.bpe(piece, ignore_merges)]
        return self.post_process(ids, add_special_tokens)

    def tokens(self, ids):
        return [self.id_to_token[i] for i in ids]

    def decode(self, ids):
        out = bytearray()
        for t in self.tokens(ids):
            if all(c in CHAR_TO_BYTE for c in t):
                out += bytes(CHAR_TO_BYTE[c] for c in t)
            else:
                out += t.encode("utf-8")
        return out.decode("utf-8", errors="replace")


# ----------------------------------------------------------------------------
# The three styles: training corpus, special tokens, tokenizer.json writers
# ----------------------------------------------------------------------------
CORPUS = ("""Once upon a time, there was a little girl named Lily. She loved to play
outside in the sun with her dog, Max. One day, Lily and Max went to the park.
They saw a big red ball under a tree. "Look, Max!" said Lily. "Can we play?"
Max wagged his tail and ran to the ball. Lily laughed and threw it high.
The ball went up, up, up and then it came down into the pond. Oh no!
Lily was sad. She didn't know what to do. Then a kind old man came by.
He said, "Don't be sad, little girl. I'll help you." He took a long stick.
He pulled the ball out of the water. Lily was so happy.
"Thank you!" she said. "You're very kind." The man smiled.
"It's my pleasure. We'll see you again soon." Lily and Max played all day.
When the sun went down, they went home. Mom made soup for dinner.
"I'M SO HAPPY!" Lily said. "I'M PROUD OF YOU," Mom said. "DON'T STOP!"
"WE'LL PLAY AGAIN," said Lily. "YOU'RE THE BEST," said Mom. The end.

Tom had 123 apples and 456 pears. He gave 12 apples to Sue.
In 1999, 2000 and 2024 the town had 1000 people, 100 dogs and 123 cats.
The numbers were 123, 1234, 12345 and 123456. Then 100, 1000, 10000.

At the café, Zoë and Chloé ate crêpes. The café was nice. Zoë said, "Merci!"
Chloé's café had crêpes and tea. "I'M full," said Zoë. "Me too," said Chloé.

    The sun is up,
    the sky is blue,
    the dog is red,
    and I love you.

""" + "A line.\r\nAnother line.\r\n\r\nThe end.\r\n")

SPECIALS = {
    # name: (content list, model_vocab_includes_specials)
    "gpt2": ["<|endoftext|>"],
    "llama3": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
               "<|end_header_id|>", "<|eot_id|>"],
    "qwen2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
}
N_MERGES = 150


def style_pipeline(style):
    bl = lambda **kw: dict(type="ByteLevel", **kw)  # noqa: E731
    if style == "gpt2":
        return dict(
            normalizer=None,
            pre_tokenizer=bl(add_prefix_space=False, trim_offsets=True, use_regex=True),
            post_processor=None,
            decoder=bl(add_prefix_space=True, trim_offsets=True, use_regex=True))
    if style == "llama3":
        return dict(
            normalizer=None,
            pre_tokenizer=dict(type="Sequence", pretokenizers=[
                dict(type="Split", pattern=dict(Regex=LLAMA3_PATTERN), behavior="Isolated",
                     invert=False),
                bl(add_prefix_space=False, trim_offsets=True, use_regex=False)]),
            post_processor="template",  # filled in when the BOS id is known
            decoder=bl(add_prefix_space=True, trim_offsets=True, use_regex=True))
    if style == "qwen2":
        return dict(
            normalizer=dict(type="NFC"),
            pre_tokenizer=dict(type="Sequence", pretokenizers=[
                dict(type="Split", pattern=dict(Regex=QWEN2_PATTERN), behavior="Isolated",
                     invert=False),
                bl(add_prefix_space=False, trim_offsets=False, use_regex=False)]),
            post_processor=bl(add_prefix_space=False, trim_offsets=False, use_regex=False),
            decoder=bl(add_prefix_space=False, trim_offsets=False, use_regex=False))
    raise ValueError(style)


def build_tokenizer_json(style):
    """Train N_MERGES merges on CORPUS with the style's own normaliser and pre-tokenizer,
    and return the tokenizer.json dict."""
    pipe = style_pipeline(style)
    # pre-tokenise the corpus with a vocabulary-free instance of the same pipeline
    probe = ByteLevelBPE(dict(model=dict(type="BPE", vocab={}, merges=[]),
                              added_tokens=[], normalizer=pipe["normalizer"],
                              pre_tokenizer=pipe["pre_tokenizer"], post_processor=None,
                              decoder=pipe["decoder"]))
    words = {}
    for w in probe.pre_tokenize(probe.normalize(CORPUS)):
        words[w] = words.get(w, 0) + 1
    merges = train_bpe(words, N_MERGES)
    vocab = {}
    for _, c in BYTE_ORDER:
        vocab[c] = len(vocab)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    if style == "llama3":
        # Llama 3 (tiktoken-derived) vocabularies contain words that merging by rank does
        # not reach from their bytes; `ignore_merges: true` emits them whole.  Add one such
        # word so that the flag is exercised (documented in the README).
        mg = add_unreachable_word(vocab, merges, words)
        merges.append(mg)
        vocab[mg[0] + mg[1]] = len(vocab)
    if style == "qwen2":
        # Qwen2 splits digits one by one, so merges between digits can never apply; its
        # published vocabulary nevertheless has multi-digit entries.  Append a few such
        # (unusable) merges: they make a wrong digit rule (e.g. \p{N}{1,3}) visible.
        for a, b in (("1", "2"), ("12", "3"), ("0", "0"), ("00", "0")):
            merges.append((a, b))
            vocab[a + b] = len(vocab)
    specials = SPECIALS[style]
    added = []
    if style == "gpt2":
        # GPT-2 keeps <|endoftext|> as the last entry of the model vocab as well
        vocab[specials[0]] = len(vocab)
        added.append(dict(id=vocab[specials[0]], content=specials[0], single_word=False,
                          lstrip=False, rstrip=False, normalized=True, special=True))
    else:
        for s in specials:
            added.append(dict(id=len(vocab) + len(added), content=s, single_word=False,
                              lstrip=False, rstrip=False, normalized=False, special=True))
    post = pipe["post_processor"]
    if post == "template":
        bos = specials[0]
        bos_id = added[0]["id"]
        st = lambda tid: {"SpecialToken": {"id": bos, "type_id": tid}}  # noqa: E731
        sq = lambda name, tid: {"Sequence": {"id": name, "type_id": tid}}  # noqa: E731
        post = dict(type="Sequence", processors=[
            dict(type="ByteLevel", add_prefix_space=True, trim_offsets=False, use_regex=True),
            dict(type="TemplateProcessing",
                 single=[st(0), sq("A", 0)],
                 pair=[st(0), sq("A", 0), st(1), sq("B", 1)],
                 special_tokens={bos: dict(id=bos, ids=[bos_id], tokens=[bos])})])
    if style == "llama3":
        sub_prefix, suffix, ignore_merges = None, None, True
    else:
        sub_prefix, suffix, ignore_merges = "", "", False
    model = dict(type="BPE", dropout=None, unk_token=None,
                 continuing_subword_prefix=sub_prefix, end_of_word_suffix=suffix,
                 fuse_unk=False, byte_fallback=False, ignore_merges=ignore_merges,
                 vocab=vocab, merges=["%s %s" % m for m in merges])
    return dict(version="1.0", truncation=None, padding=None, added_tokens=added,
                normalizer=pipe["normalizer"], pre_tokenizer=pipe["pre_tokenizer"],
                post_processor=post, decoder=pipe["decoder"], model=model)


def vocab_size(tj):
    ids = set(tj["model"]["vocab"].values()) | {t["id"] for t in tj["added_tokens"]}
    assert ids == set(range(len(ids)))
    return len(ids)


def special_id(tj, content):
    for t in tj["added_tokens"]:
        if t["content"] == content:
            return t["id"]
    raise KeyError(content)


def build_tokenizer_config(style, tj):
    def dec():
        return {str(t["id"]): dict(content=t["content"], lstrip=False,
                                   normalized=t["normalized"], rstrip=False,
                                   single_word=False, special=True)
                for t in tj["added_tokens"]}
    if style == "gpt2":
        return {"add_bos_token": False, "add_prefix_space": False,
                "added_tokens_decoder": dec(), "bos_token": "<|endoftext|>",
                "clean_up_tokenization_spaces": False, "eos_token": "<|endoftext|>",
                "errors": "replace", "extra_special_tokens": {}, "model_max_length": 64,
                "pad_token": None, "tokenizer_class": "GPT2Tokenizer",
                "unk_token": "<|endoftext|>"}
    if style == "llama3":
        return {"add_bos_token": True, "add_eos_token": False,
                "added_tokens_decoder": dec(), "bos_token": "<|begin_of_text|>",
                "clean_up_tokenization_spaces": False, "eos_token": "<|end_of_text|>",
                "extra_special_tokens": {},
                "model_input_names": ["input_ids", "attention_mask"],
                "model_max_length": 128, "tokenizer_class": "PreTrainedTokenizerFast"}
    if style == "qwen2":
        return {"add_bos_token": False, "add_prefix_space": False,
                "added_tokens_decoder": dec(),
                "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
                "bos_token": None, "clean_up_tokenization_spaces": False,
                "eos_token": "<|endoftext|>", "errors": "replace",
                "extra_special_tokens": {}, "model_max_length": 128,
                "pad_token": "<|endoftext|>", "split_special_tokens": False,
                "tokenizer_class": "Qwen2Tokenizer", "unk_token": None}
    raise ValueError(style)


def write_json_pretty(obj, path):
    """HF-like pretty JSON (2-space indent, UTF-8, no ASCII escaping), trailing newline."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(obj, ensure_ascii=False, indent=2))
        f.write("\n")


if __name__ == "__main__":
    style = sys.argv[1] if len(sys.argv) > 1 else "llama3"
    tj = build_tokenizer_json(style)
    t = ByteLevelBPE(tj)
    for text in sys.argv[2:] or ["Once upon a time, there was a little girl named Lily."]:
        ids = t.encode(text)
        print(ids, t.tokens(ids), repr(t.decode(ids)))
