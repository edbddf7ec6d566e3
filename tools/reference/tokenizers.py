#!/usr/bin/python3
"""Independent Python reference tokenizers for the depass golden tests.

Two tokenizers are implemented, from their published algorithms (no HF packages):

* Llama2cTokenizer -- the llama2.c `tokenizer.bin` format and the `encode()` /
  `decode()` functions of llama2.c's run.c.
* HFBpeTokenizer  -- the subset of a Hugging Face `tokenizer.json` used by
  TinyStories-656K: BPE model (merges by rank), Sequence[Prepend("▁"),
  Replace(" ", "▁")] normalizer, no pre-tokenizer, byte_fallback, fuse_unk,
  added/special tokens, TemplateProcessing BOS, and the decoder
  Sequence[Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0)].

Run as a script for a quick demo:  /usr/bin/python3 tools/reference/tokenizers.py MODELS_DIR
"""
import json
import struct
import sys


# ----------------------------------------------------------------------------
# llama2.c tokenizer
# ----------------------------------------------------------------------------
class Llama2cTokenizer:
    """llama2.c tok*.bin: int32 max_token_length, then per token
    (f32 score, int32 len, len bytes).  Pieces are byte strings; SentencePiece's
    '▁' was already replaced by ' ' at export, BOS is '\\n<s>\\n', EOS '\\n</s>\\n',
    raw-byte tokens are the literal strings '<0xNN>' at id NN + 3."""

    BOS = 1
    EOS = 2

    def __init__(self, path, vocab_size=None):
        data = open(path, "rb").read()
        off = 0
        (self.max_token_length,) = struct.unpack_from("<i", data, off)
        off += 4
        self.pieces, self.scores = [], []
        while off < len(data) and (vocab_size is None or len(self.pieces) < vocab_size):
            score, n = struct.unpack_from("<fi", data, off)
            off += 8
            self.pieces.append(bytes(data[off:off + n]))
            off += n
            self.scores.append(score)
        self.vocab_size = len(self.pieces)
        # llama2.c str_lookup() is a bsearch over the sorted vocabulary; with no
        # duplicate pieces (checked) a dict is equivalent.
        self.lookup = {}
        for i, p in enumerate(self.pieces):
            assert p not in self.lookup, "duplicate piece %r" % p
            self.lookup[p] = i

    def encode(self, text, bos=True, eos=False):
        """Exactly llama2.c run.c encode(): text is a str (encoded as UTF-8) or bytes."""
        b = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        tokens = []
        if bos:
            tokens.append(self.BOS)
        # add_dummy_prefix: prepend the token of " " only if the text is non-empty
        if len(b) > 0:
            tokens.append(self.lookup[b" "])
        # split into codepoints: a buffer is reset on every non-continuation byte,
        # continuation bytes (10xxxxxx) are appended while the buffer holds < 4 bytes
        buf = bytearray()
        for j, c in enumerate(b):
            if (c & 0xC0) != 0x80:
                buf = bytearray()
            buf.append(c)
            nxt = b[j + 1] if j + 1 < len(b) else 0  # C string: NUL terminator
            if (nxt & 0xC0) == 0x80 and len(buf) < 4:
                continue
            tid = self.lookup.get(bytes(buf), -1)
            if tid != -1:
                tokens.append(tid)
            else:  # byte fallback: first 3 ids are <unk>, <s>, </s>
                tokens.extend(x + 3 for x in buf)
            buf = bytearray()
        # greedy merges: best score wins, first (leftmost) pair on ties (strict >).
        # NB: like llama2.c, the BOS token takes part in the pair scan (its piece
        # '\n<s>\n' never concatenates to a vocabulary piece, so this is harmless).
        while True:
            best_score, best_id, best_idx = -1e10, -1, -1
            for i in range(len(tokens) - 1):
                tid = self.lookup.get(self.pieces[tokens[i]] + self.pieces[tokens[i + 1]], -1)
                if tid != -1 and self.scores[tid] > best_score:
                    best_score, best_id, best_idx = self.scores[tid], tid, i
            if best_idx == -1:
                break
            tokens[best_idx] = best_id
            del tokens[best_idx + 1]
        if eos:
            tokens.append(self.EOS)
        return tokens

    def decode_piece(self, prev_token, token):
        """llama2.c decode(): bytes of one token given the previous token."""
        piece = self.pieces[token]
        if prev_token == self.BOS and piece[:1] == b" ":
            piece = piece[1:]
        if len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">"):
            try:
                return bytes([int(piece[3:5], 16)])
            except ValueError:
                pass
        return piece

    def decode_bytes(self, ids, prev=None):
        """Concatenate decode(prev, tok) over ids, prev starting at `prev`
        (None: no previous token)."""
        out = bytearray()
        for t in ids:
            out += self.decode_piece(prev, t)
            prev = t
        return bytes(out)

    def decode(self, ids):
        """Text of an id sequence as llama2.c's generate loop prints it: a leading
        BOS is not printed, and the token right after a BOS loses one leading space.
        (run.c prints pieces raw; its safe_printf filtering of unprintable single
        bytes is a display detail and is NOT applied here.)"""
        ids = list(ids)
        if ids and ids[0] == self.BOS:
            data = self.decode_bytes(ids[1:], prev=self.BOS)
        else:
            data = self.decode_bytes(ids, prev=None)
        return data.decode("utf-8", errors="replace")


# ----------------------------------------------------------------------------
# Hugging Face tokenizer.json (BPE, SentencePiece-style normaliser)
# ----------------------------------------------------------------------------
class HFBpeTokenizer:
    """Reference for the HF `tokenizers` pipeline as configured by
    TinyStories-656K's tokenizer.json.

    Added-token matching (the subtle part), following the Rust source of
    tokenizers' AddedVocabulary::extract_and_normalize / refresh_added_tokens:
      1. tokens with normalized=false are matched in the RAW text (leftmost-longest),
         splitting it; the pieces in between are then
      2. normalised one by one, and tokens with normalized=true are matched in the
         normalised piece -- against their OWN normalised content.
    All three added tokens of TinyStories-656K are normalized=true, and the
    normaliser starts with Prepend("▁"), so the pattern for "<|start_story|>" is
    "▁<|start_story|>": a special token is only recognised where the normalised
    text has "▁" right before it (start of text, or after a space), and that "▁"
    is absorbed into the special token.  "a<|end_story|>" therefore is NOT split
    (its characters are BPE'd like ordinary text).  This is what the real HF fast
    tokenizer does with this file; it is implemented here as mode="hf" (default).
    mode="raw_split" is the simpler alternative (match the literal contents in the
    raw text, never split them, normalise each remaining segment separately, so each
    non-empty segment gets its own "▁" prefix); it is provided for comparison only.
    Prepend only prepends to a non-empty string.
    """

    def __init__(self, path):
        j = json.load(open(path, encoding="utf-8"))
        m = j["model"]
        assert m["type"] == "BPE"
        self.vocab = dict(m["vocab"])
        self.id_to_tok = {i: t for t, i in self.vocab.items()}
        self.unk_token = m.get("unk_token")
        self.fuse_unk = bool(m.get("fuse_unk", False))
        self.byte_fallback = bool(m.get("byte_fallback", False))
        assert m.get("continuing_subword_prefix") in (None, "")
        assert m.get("end_of_word_suffix") in (None, "")
        assert j.get("pre_tokenizer") is None
        self.merges = {}  # (id_a, id_b) -> (rank, new_id)
        for rank, mg in enumerate(m["merges"]):
            a, b = mg.split(" ") if isinstance(mg, str) else mg
            self.merges[(self.vocab[a], self.vocab[b])] = (rank, self.vocab[a + b])
        self.normalizers = self._parse_normalizer(j.get("normalizer"))
        self.added = []  # (content, id, normalized, special)
        for t in j.get("added_tokens", []):
            assert not t.get("lstrip") and not t.get("rstrip") and not t.get("single_word")
            self.added.append((t["content"], t["id"], bool(t["normalized"]), bool(t["special"])))
            self.id_to_tok[t["id"]] = t["content"]
        self.special_ids = {i for (_, i, _, s) in self.added if s}
        # post-processor: TemplateProcessing with a leading special token (BOS)
        pp = j.get("post_processor") or {}
        self.bos_id = None
        if pp.get("type") == "TemplateProcessing":
            first = pp["single"][0]
            if "SpecialToken" in first:
                name = first["SpecialToken"]["id"]
                self.bos_id = pp["special_tokens"][name]["ids"][0]
        self.decoders = j.get("decoder", {}).get("decoders", [])

    @staticmethod
    def _parse_normalizer(n):
        if n is None:
            return []
        if n["type"] == "Sequence":
            out = []
            for s in n["normalizers"]:
                out += HFBpeTokenizer._parse_normalizer(s)
            return out
        if n["type"] == "Prepend":
            return [("prepend", n["prepend"])]
        if n["type"] == "Replace":
            assert "String" in n["pattern"], "regex Replace not supported"
            return [("replace", n["pattern"]["String"], n["content"])]
        raise NotImplementedError(n["type"])

    def normalize(self, s):
        for op in self.normalizers:
            if op[0] == "prepend":
                if s:  # Prepend only acts on non-empty strings
                    s = op[1] + s
            else:
                s = s.replace(op[1], op[2])
        return s

    @staticmethod
    def _split_leftmost_longest(s, patterns):
        """Split s on occurrences of patterns [(pattern, id)], leftmost-longest,
        non-overlapping (Aho-Corasick MatchKind::LeftmostLongest).
        Returns [(text, id_or_None)] covering s (empty text pieces dropped)."""
        out, start, i = [], 0, 0
        pats = [(p, t) for p, t in patterns if p]
        while i < len(s):
            best = None
            for p, t in pats:
                if s.startswith(p, i) and (best is None or len(p) > len(best[0])):
                    best = (p, t)
            if best is None:
                i += 1
                continue
            if start < i:
                out.append((s[start:i], None))
            out.append((best[0], best[1]))
            i += len(best[0])
            start = i
        if start < len(s):
            out.append((s[start:], None))
        return out

    def _bpe_word(self, w):
        """BPE model on one normalised segment (no pre-tokenizer: the whole segment
        is one word)."""
        syms = []  # list of ids
        unk = None  # pending fused unk id
        unk_id = self.vocab.get(self.unk_token) if self.unk_token is not None else None
        for ch in w:
            if ch in self.vocab:
                if unk is not None:
                    syms.append(unk)
                    unk = None
                syms.append(self.vocab[ch])
                continue
            if self.byte_fallback:
                bt = ["<0x%02X>" % x for x in ch.encode("utf-8")]
                if all(b in self.vocab for b in bt):
                    # (tokenizers pushes these without flushing a pending unk first;
                    #  mirrored here)
                    syms.extend(self.vocab[b] for b in bt)
                    continue
            if unk_id is not None:
                if unk is not None and self.fuse_unk:
                    pass  # fused into the pending unk
                else:
                    if unk is not None:
                        syms.append(unk)
                    unk = unk_id
        if unk is not None:
            syms.append(unk)
        # merge: repeatedly the pair of lowest rank, leftmost occurrence first
        while len(syms) > 1:
            best = None
            for i in range(len(syms) - 1):
                r = self.merges.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r[0] < best[0]):
                    best = (r[0], i, r[1])
            if best is None:
                break
            _, i, nid = best
            syms[i:i + 2] = [nid]
        return syms

    def encode(self, text, add_bos=True, mode="hf"):
        raw_pats = [(c, i) for (c, i, norm, _) in self.added if not norm]
        norm_pats = [(c, i) for (c, i, norm, _) in self.added if norm]
        if mode == "hf":
            # normalised patterns are the normalised contents
            norm_pats = [(self.normalize(c), i) for (c, i) in norm_pats]
        elif mode == "raw_split":
            raw_pats, norm_pats = raw_pats + norm_pats, []
        else:
            raise ValueError(mode)
        ids = []
        for seg, tid in self._split_leftmost_longest(text, raw_pats):
            if tid is not None:
                ids.append(tid)
                continue
            nseg = self.normalize(seg)
            for sub, tid2 in self._split_leftmost_longest(nseg, norm_pats):
                if tid2 is not None:
                    ids.append(tid2)
                else:
                    ids.extend(self._bpe_word(sub))
        if add_bos and self.bos_id is not None:
            ids = [self.bos_id] + ids
        return ids

    def decode(self, ids, skip_special_tokens=False):
        toks = [self.id_to_tok[i] for i in ids
                if not (skip_special_tokens and i in self.special_ids)]
        for d in self.decoders:
            t = d["type"]
            if t == "Replace":
                toks = [x.replace(d["pattern"]["String"], d["content"]) for x in toks]
            elif t == "ByteFallback":
                out, pend = [], []

                def flush():
                    if pend:
                        try:
                            out.append(bytes(pend).decode("utf-8"))
                        except UnicodeDecodeError:
                            out.extend("\ufffd" for _ in pend)
                        pend.clear()
                for x in toks:
                    if len(x) == 6 and x.startswith("<0x") and x.endswith(">"):
                        try:
                            pend.append(int(x[3:5], 16))
                            continue
                        except ValueError:
                            pass
                    flush()
                    out.append(x)
                flush()
                toks = out
            elif t == "Fuse":
                toks = ["".join(toks)]
            elif t == "Strip":
                c, start, stop = d["content"], d["start"], d["stop"]
                new = []
                for x in toks:
                    a = 0
                    while a < start and a < len(x) and x[a] == c:
                        a += 1
                    b = len(x)
                    k = 0
                    while k < stop and b > a and x[b - 1] == c:
                        b -= 1
                        k += 1
                    new.append(x[a:b])
                toks = new
            else:
                raise NotImplementedError(t)
        return "".join(toks)


if __name__ == "__main__":
    import os
    models = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/models"
    t = Llama2cTokenizer(os.path.join(models, "stories260K/tok512.bin"))
    ids = t.encode("Once upon a time", bos=True)
    print("tok512:", ids, repr(t.decode(ids)))
    h = HFBpeTokenizer(os.path.join(models, "tinystories-656k/tokenizer.json"))
    ids = h.encode("Once upon a time,", add_bos=True)
    print("hf:", ids, repr(h.decode(ids[1:])))
