#!/usr/bin/python3
"""Shared helpers for the faithfulness data scripts (tools/faithfulness/).

The models and tokenizers are the independent references in tools/reference/
(llama.py, tokenizers.py). This module adds:
  * `Lm`: one of the two TinyStories models with its tokenizer, a per-token text view
    (piece strings and character spans) and probabilities from `llama.forward`;
  * `sample_batch`: batched sampling with a KV cache, used ONLY to produce candidate
    stories quickly (the reference forward recomputes the whole prefix per token).
    Every number written to a data file (top-1, probabilities) is recomputed with
    `llama.forward` on the final id sequence, so the cache is never trusted;
  * `write_jsonl`: one JSON object per line, keys in a fixed order.

torch runs single-threaded everywhere so that results are bit-reproducible on a machine.
"""
import json
import os
import re
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
import llama as llama_ref  # noqa: E402
from tokenizers import HFBpeTokenizer, Llama2cTokenizer  # noqa: E402

torch.set_num_threads(1)

DATA = os.path.join(ROOT, "data", "faithfulness")
MODEL_NAMES = ("stories260K", "tinystories656k")


class Lm:
    """A TinyStories model + tokenizer. `name` is stories260K or tinystories656k."""

    def __init__(self, name, models_dir, dtype=torch.float32):
        self.name = name
        if name == "stories260K":
            self.tok = Llama2cTokenizer(os.path.join(models_dir, "stories260K", "tok512.bin"))
            self.model = llama_ref.load_llama2c(os.path.join(models_dir, "stories260K", "stories260K.bin"))
            self.bos, self.stop = 1, {1, 2}  # a llama2.c story ends where the next BOS is emitted
        elif name == "tinystories656k":
            self.tok = HFBpeTokenizer(os.path.join(models_dir, "tinystories-656k", "tokenizer.json"))
            self.model = llama_ref.load_hf_safetensors(os.path.join(models_dir, "tinystories-656k"))
            self.bos, self.stop = 1, {1, 2}  # <|start_story|>, <|end_story|>
        else:
            raise ValueError("unknown model %r (expected one of %s)" % (name, MODEL_NAMES))
        self.model64 = llama_ref.to_dtype(self.model, torch.float64)
        self.vocab_size = self.model["cfg"]["vocab_size"]
        self.pieces = [self._raw_piece(i) for i in range(self.vocab_size)]

    # --- text ------------------------------------------------------------------
    def _raw_piece(self, i):
        """Text of token i as it appears inside a story (spaces as ' ')."""
        if self.name == "stories260K":
            b = self.tok.pieces[i]
            if len(b) == 6 and b.startswith(b"<0x") and b.endswith(b">"):
                v = int(b[3:5], 16)  # raw-byte token: its byte (ASCII), else U+FFFD
                return chr(v) if v < 128 else "\ufffd"
            return b.decode("utf-8", errors="replace")
        return self.tok.id_to_tok[i].replace("\u2581", " ")

    def encode(self, text):
        if self.name == "stories260K":
            return self.tok.encode(text, bos=True)
        return self.tok.encode(text, add_bos=True)

    def decode(self, ids):
        """The prompt text of BOS + ids (what `encode` should map back to `ids`)."""
        assert ids[0] == self.bos
        if self.name == "stories260K":
            return self.tok.decode(ids)
        return self.tok.decode(ids[1:])

    def spans(self, ids):
        """Raw text of ids[1:] (pieces concatenated, leading space kept) and the
        character span [start, end) of every position (BOS: the empty span (0, 0))."""
        text, spans = "", [(0, 0)]
        for t in ids[1:]:
            p = self.pieces[t]
            spans.append((len(text), len(text) + len(p)))
            text += p
        return text, spans

    # --- model -----------------------------------------------------------------
    def probs(self, ids, dtype=torch.float64):
        """Next-token probabilities at every position from the reference forward."""
        m = self.model64 if dtype == torch.float64 else self.model
        with torch.no_grad():
            logits = llama_ref.forward(m, list(ids))
        return torch.softmax(logits.to(torch.float64), dim=-1), logits


# ----------------------------------------------------------------------------
# batched sampling with a KV cache (candidate generation only)
# ----------------------------------------------------------------------------
def _step(model, tokens, pos, cache):
    """One decoding step for a batch: tokens [B] at position `pos`; returns logits [B, V]."""
    cfg = model["cfg"]
    H, G, hd, eps = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"], cfg["eps"]
    B = tokens.shape[0]
    x = model["embed"][tokens]  # [B, D]
    cos, sin = llama_ref.rope_cos_sin(pos + 1, hd, cfg["rope_theta"], x.dtype)
    cos = cos[pos:pos + 1].expand(B, -1)
    sin = sin[pos:pos + 1].expand(B, -1)
    kv = torch.arange(H) // (H // G)
    for li, L in enumerate(model["layers"]):
        h = llama_ref.rmsnorm(x, L["att_norm"], eps)
        q = llama_ref.apply_rope((h @ L["wq"].T).reshape(B, H, hd), cos, sin, cfg["rope_layout"])
        k = llama_ref.apply_rope((h @ L["wk"].T).reshape(B, G, hd), cos, sin, cfg["rope_layout"])
        v = (h @ L["wv"].T).reshape(B, G, hd)
        kc, vc = cache[li]
        kc = torch.cat([kc, k[:, :, None, :]], dim=2)  # [B, G, T, hd]
        vc = torch.cat([vc, v[:, :, None, :]], dim=2)
        cache[li] = (kc, vc)
        s = torch.einsum("bhd,bhtd->bht", q, kc[:, kv]) / (hd ** 0.5)
        a = torch.softmax(s, dim=-1)
        o = torch.einsum("bht,bhtd->bhd", a, vc[:, kv]).reshape(B, H * hd)
        x = x + o @ L["wo"].T
        h = llama_ref.rmsnorm(x, L["ffn_norm"], eps)
        x = x + (llama_ref.silu(h @ L["w1"].T) * (h @ L["w3"].T)) @ L["w2"].T
    return llama_ref.rmsnorm(x, model["final_norm"], eps) @ model["wcls"].T


def sample_batch(lm, prefix, n_stories, n_new, temperature, seed):
    """`n_stories` continuations of the id list `prefix` (BOS included), sampled at
    `temperature` (0 = greedy) with numpy RandomState(seed). Each story is cut at its
    first stop token (not included). Returns a list of id lists (prefix included)."""
    model = lm.model
    cfg = model["cfg"]
    G, hd = cfg["n_kv_heads"], cfg["head_dim"]
    rng = np.random.RandomState(seed)
    B = n_stories
    cache = [(torch.zeros(B, G, 0, hd), torch.zeros(B, G, 0, hd)) for _ in model["layers"]]
    seqs = [list(prefix) for _ in range(B)]
    done = [False] * B
    with torch.no_grad():
        for pos, t in enumerate(prefix):
            logits = _step(model, torch.full((B,), t, dtype=torch.long), pos, cache)
        for pos in range(len(prefix), min(len(prefix) + n_new, cfg["seq_len"])):
            lp = logits.to(torch.float64).numpy()
            nxt = []
            for b in range(B):
                if temperature == 0:
                    nxt.append(int(np.argmax(lp[b])))
                else:
                    z = lp[b] / temperature
                    p = np.exp(z - z.max())
                    p /= p.sum()
                    nxt.append(int(rng.choice(len(p), p=p)))
            for b in range(B):
                if not done[b]:
                    if nxt[b] in lm.stop:
                        done[b] = True
                    else:
                        seqs[b].append(nxt[b])
            if all(done):
                break
            logits = _step(model, torch.tensor(nxt, dtype=torch.long), pos, cache)
    return seqs


# ----------------------------------------------------------------------------
# words and output
# ----------------------------------------------------------------------------
WORD = re.compile(r"[A-Za-z]+")


def words_with_spans(text):
    return [(m.group(0), m.start(), m.end()) for m in WORD.finditer(text)]


def positions_overlapping(spans, start, end):
    """Positions whose character span overlaps [start, end)."""
    return [i for i, (a, b) in enumerate(spans) if b > a and a < end and b > start]


def write_jsonl(path, records):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def rounded(x, digits=6):
    """Probabilities are stored rounded (they are informative, not goldens)."""
    return float("%.*g" % (digits, x))
