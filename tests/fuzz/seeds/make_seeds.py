#!/usr/bin/env python3
"""Writes the small synthetic seed inputs of the fuzz harnesses (tests/fuzz/seeds/<harness>/).

The committed seeds were produced by this script (python3, standard library only); rerun it
after changing it. `make fuzz` adds the real model files from the model mirror at fuzz time
(they are not committed). Every seed is a *valid* file, small enough that the fuzzer can
mutate it quickly: the fuzzer finds the hostile variants itself.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SPLIT = b"\n#@depass-fuzz-next-file@#\n"  # tests/fuzz/FuzzSupport.hpp kSplit


def out(harness, name, data):
    d = os.path.join(HERE, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def values(n, start=0):
    """Deterministic small floats, all exactly representable in f16/bf16."""
    return [((start + i) % 17 - 8) / 16.0 for i in range(n)]


def f32(vals):
    return struct.pack("<%df" % len(vals), *vals)


# --- llama2.c checkpoint -----------------------------------------------------------------
def llama2c(dim=8, hidden=12, layers=2, heads=2, kv=1, vocab=10, seq=4, shared=True):
    head = dim // heads
    hdr = struct.pack("<7i", dim, hidden, layers, heads, kv, vocab if shared else -vocab, seq)
    counts = [vocab * dim, layers * dim, layers * dim * dim, layers * kv * head * dim,
              layers * kv * head * dim, layers * dim * dim, layers * dim,
              layers * hidden * dim, layers * dim * hidden, layers * hidden * dim, dim,
              seq * head // 2, seq * head // 2]
    if not shared:
        counts.append(vocab * dim)
    return hdr + f32(values(sum(counts)))


out("llama2c_checkpoint", "tiny_shared.bin", llama2c())
out("llama2c_checkpoint", "tiny_unshared.bin", llama2c(shared=False, layers=1, vocab=5))


def llama2c_versioned(version, dim=8, hidden=12, layers=2, heads=2, kv=1, vocab=10, seq=4,
                      shared=True, group=8):
    """export.py's version 1 (f32) or 2 (int8 + one f32 scale per `group` values) layout."""
    head = dim // heads
    hdr = struct.pack("<Ii7iB", 0x616B3432, version, dim, hidden, layers, heads, kv, vocab, seq,
                      int(shared))
    if version == 2:
        hdr += struct.pack("<i", group)
    hdr += b"\0" * (256 - len(hdr))
    norms = f32(values(2 * layers * dim + dim, 3))
    mats = [vocab * dim] + [dim * dim] * layers + [kv * head * dim] * (2 * layers) + \
        [dim * dim] * layers + [hidden * dim] * (3 * layers) + ([] if shared else [vocab * dim])
    body = b""
    for i, n in enumerate(mats):
        if version == 1:
            body += f32(values(n, i))
        else:
            body += bytes((i * 7 + k * 13) % 255 - 127 & 0xFF for k in range(n))
            body += f32([(g % 5 + 1) / 256.0 for g in range(n // group)])
    return hdr + norms + body


out("llama2c_checkpoint", "tiny_v1_shared.bin", llama2c_versioned(1))
out("llama2c_checkpoint", "tiny_v2_unshared.bin", llama2c_versioned(2, layers=1, vocab=5, shared=False))


# --- llama2.c tokenizer --------------------------------------------------------------------
def tok_bin(pieces, max_len=None):
    max_len = max_len or max(len(p) for p, _ in pieces)
    data = struct.pack("<i", max_len)
    for p, s in pieces:
        data += struct.pack("<fi", s, len(p)) + p
    return data


tok_pieces = [(b"<unk>", 0.0), (b"\n<s>\n", 0.0), (b"\n</s>\n", 0.0)]
tok_pieces += [(("<0x%02X>" % b).encode(), 0.0) for b in range(8)]
tok_pieces += [(b" ", -1.0), (b"a", -2.0), (b"b", -3.0), (b"\xc3\xa9", -4.0), (b" a", -5.0),
               (b"ab", -6.0), (b" ab", -7.0), (b"ba", -8.0), (b"\xe2\x9c\x93", -9.0)]
out("llama2c_tokenizer", "tiny.bin", tok_bin(tok_pieces))


# --- safetensors ---------------------------------------------------------------------------
def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + data


def f16(vals):
    return struct.pack("<%de" % len(vals), *vals)


def bf16(vals):
    return b"".join(struct.pack("<f", v)[2:] for v in vals)


def f64(vals):
    return struct.pack("<%dd" % len(vals), *vals)


out("safetensors", "mixed.safetensors", safetensors([
    ("a.weight", "F32", [2, 3], f32(values(6))),
    ("b.half", "F16", [4], f16(values(4))),
    ("c.bf16", "BF16", [2, 2], bf16(values(4))),
    ("d.f64", "F64", [3], f64(values(3))),
    ("e.int", "I32", [2], struct.pack("<2i", 1, 2)),
    ("f.scalar", "F32", [], f32([1.5])),
    ("g.cube", "F32", [1, 2, 2], f32(values(4))),
], metadata={"format": "pt"}))


# --- Hugging Face directory ------------------------------------------------------------------
def hf_llama(D=8, I=12, L=1, H=2, G=1, V=10, P=16, tied=True, qkv_bias=False, model_type="llama"):
    d = D // H
    cfg = {"model_type": model_type, "hidden_size": D, "intermediate_size": I,
           "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": G,
           "vocab_size": V, "max_position_embeddings": P, "rms_norm_eps": 1e-6,
           "rope_theta": 10000.0, "tie_word_embeddings": tied, "hidden_act": "silu"}
    ts = [("model.embed_tokens.weight", [V, D])]
    if not tied:
        ts.append(("lm_head.weight", [V, D]))
    for l in range(L):
        p = "model.layers.%d." % l
        ts += [(p + "input_layernorm.weight", [D]), (p + "self_attn.q_proj.weight", [H * d, D]),
               (p + "self_attn.k_proj.weight", [G * d, D]), (p + "self_attn.v_proj.weight", [G * d, D]),
               (p + "self_attn.o_proj.weight", [D, H * d]),
               (p + "post_attention_layernorm.weight", [D]), (p + "mlp.gate_proj.weight", [I, D]),
               (p + "mlp.up_proj.weight", [I, D]), (p + "mlp.down_proj.weight", [D, I])]
        if qkv_bias:
            ts += [(p + "self_attn.q_proj.bias", [H * d]), (p + "self_attn.k_proj.bias", [G * d]),
                   (p + "self_attn.v_proj.bias", [G * d])]
        if model_type == "gemma2":  # post-attention, pre- and post-feed-forward norms
            ts += [(p + "pre_feedforward_layernorm.weight", [D]), (p + "post_feedforward_layernorm.weight", [D])]
    ts.append(("model.norm.weight", [D]))
    tensors = []
    for name, shape in ts:
        n = 1
        for s in shape:
            n *= s
        tensors.append((name, "F32", shape, f32(values(n, len(tensors)))))
    return json.dumps(cfg, indent=1).encode(), safetensors(tensors, {"format": "pt"}), [t[0] for t in tensors]


cfg, st, names = hf_llama()
out("huggingface", "llama_tied", cfg + SPLIT + st)
cfg, st, names = hf_llama(tied=False, qkv_bias=True, model_type="qwen2", H=2, G=2)
out("huggingface", "qwen2_untied", cfg + SPLIT + st)
cfg, st, names = hf_llama(model_type="gemma2")
gemma2_cfg = dict(json.loads(cfg), hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=4,
                  attn_logit_softcapping=50.0, final_logit_softcapping=30.0, sliding_window=8)
out("huggingface", "gemma2_tied", json.dumps(gemma2_cfg, indent=1).encode() + SPLIT + st)
cfg, st, names = hf_llama()
index = json.dumps({"metadata": {"total_size": len(st)},
                    "weight_map": {n: "model-00001-of-00001.safetensors" for n in names}}).encode()
out("huggingface", "llama_sharded", cfg + SPLIT + st + SPLIT + index)


def hf_gpt2(D=8, L=1, H=2, V=10, P=8):
    cfg = {"model_type": "gpt2", "n_embd": D, "n_layer": L, "n_head": H, "vocab_size": V,
           "n_positions": P, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"}
    ts = [("wte.weight", [V, D]), ("wpe.weight", [P, D])]
    for l in range(L):
        p = "h.%d." % l
        ts += [(p + "ln_1.weight", [D]), (p + "ln_1.bias", [D]), (p + "attn.c_attn.weight", [D, 3 * D]),
               (p + "attn.c_attn.bias", [3 * D]), (p + "ln_2.weight", [D]), (p + "ln_2.bias", [D]),
               (p + "attn.c_proj.weight", [D, D]), (p + "attn.c_proj.bias", [D]),
               (p + "mlp.c_fc.weight", [D, 4 * D]), (p + "mlp.c_fc.bias", [4 * D]),
               (p + "mlp.c_proj.weight", [4 * D, D]), (p + "mlp.c_proj.bias", [D])]
    ts += [("ln_f.weight", [D]), ("ln_f.bias", [D])]
    tensors = []
    for name, shape in ts:
        n = 1
        for s in shape:
            n *= s
        tensors.append((name, "F16", shape, f16(values(n, len(tensors)))))
    return json.dumps(cfg).encode(), safetensors(tensors)


cfg, st = hf_gpt2()
out("huggingface", "gpt2_f16", cfg + SPLIT + st)


def hf_gpt_neox(D=8, L=1, H=2, I=16, V=10, P=8):
    """GPT-NeoX: per-head fused query_key_value, parallel residual, half of each head rotated,
    and a BOOL attention.bias buffer as Pythia checkpoints keep (the loader ignores it)."""
    cfg = {"model_type": "gpt_neox", "hidden_size": D, "num_hidden_layers": L, "num_attention_heads": H,
           "intermediate_size": I, "vocab_size": V, "max_position_embeddings": P, "layer_norm_eps": 1e-5,
           "rotary_pct": 0.5, "rotary_emb_base": 10000, "hidden_act": "gelu", "use_parallel_residual": True,
           "tie_word_embeddings": False}
    ts = [("gpt_neox.embed_in.weight", "F32", [V, D])]
    for l in range(L):
        p = "gpt_neox.layers.%d." % l
        ts += [(p + "input_layernorm.weight", "F32", [D]), (p + "input_layernorm.bias", "F32", [D]),
               (p + "attention.query_key_value.weight", "F32", [3 * D, D]),
               (p + "attention.query_key_value.bias", "F32", [3 * D]),
               (p + "attention.dense.weight", "F32", [D, D]), (p + "attention.dense.bias", "F32", [D]),
               (p + "attention.bias", "BOOL", [1, 1, P, P]),
               (p + "post_attention_layernorm.weight", "F32", [D]), (p + "post_attention_layernorm.bias", "F32", [D]),
               (p + "mlp.dense_h_to_4h.weight", "F32", [I, D]), (p + "mlp.dense_h_to_4h.bias", "F32", [I]),
               (p + "mlp.dense_4h_to_h.weight", "F32", [D, I]), (p + "mlp.dense_4h_to_h.bias", "F32", [D])]
    ts += [("gpt_neox.final_layer_norm.weight", "F32", [D]), ("gpt_neox.final_layer_norm.bias", "F32", [D]),
           ("embed_out.weight", "F32", [V, D])]
    tensors = []
    for name, dtype, shape in ts:
        n = 1
        for s in shape:
            n *= s
        data = bytes(1 if (k % P) <= (k // P) % P else 0 for k in range(n)) if dtype == "BOOL" else f32(values(n, len(tensors)))
        tensors.append((name, dtype, shape, data))
    return json.dumps(cfg).encode(), safetensors(tensors)


cfg, st = hf_gpt_neox()
out("huggingface", "gpt_neox_parallel", cfg + SPLIT + st)


# --- Hugging Face tokenizer.json -------------------------------------------------------------
SP = "\u2581"
vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
for b in range(256):
    vocab["<0x%02X>" % b] = len(vocab)
for t in [SP, "a", "b", "c", "\u00e9", SP + "a", "ab", SP + "ab", "ba", "abc", SP + "abc"]:
    vocab[t] = len(vocab)
tokenizer = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [
        {"id": 0, "content": "<unk>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
        {"id": 1, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
        {"id": 2, "content": "</s>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
        {"id": len(vocab), "content": "<|extra|>", "single_word": False, "lstrip": True, "rstrip": True, "normalized": True, "special": False},
    ],
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": SP},
        {"type": "Replace", "pattern": {"String": " "}, "content": SP}]},
    "pre_tokenizer": None,
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": SP}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
              "vocab": vocab,
              # Both spellings of a merge: "a b" strings and ["a", "b"] pairs.
              "merges": [SP + " a", "a b", SP + " ab", "b a", ["ab", "c"], [SP + "ab", "c"]]},
}
tok_json = json.dumps(tokenizer, ensure_ascii=False, indent=1).encode()
tok_config = json.dumps({"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
                         "eos_token": {"content": "</s>", "lstrip": False}}).encode()
out("hf_tokenizer", "bpe_bytefallback", tok_json)
out("hf_tokenizer", "bpe_with_config", tok_json + SPLIT + tok_config)


# Byte-level BPE (GPT-2 style, and Llama 3 style with a Split regex, NFC and a post-processor
# Sequence).
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


B2U = bytes_to_unicode()
G = B2U[ord(" ")]  # "Ġ"
bl_vocab = {B2U[b]: b for b in range(256)}
bl_merges = [[G, "a"], ["a", "b"], [G + "a", "b"], ["l", "l"], [G, "t"], ["h", "e"], [G + "t", "he"]]
for left, right in bl_merges:
    bl_vocab.setdefault(left + right, len(bl_vocab))
for t in ["a", "b", "h", "e", "l", "t"]:
    assert t in bl_vocab
bl_vocab["<|endoftext|>"] = len(bl_vocab)
gpt2_style = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": bl_vocab["<|endoftext|>"], "content": "<|endoftext|>", "single_word": False,
                      "lstrip": False, "rstrip": False, "normalized": True, "special": True}],
    "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
              "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
              "vocab": bl_vocab, "merges": [l + " " + r for l, r in bl_merges]},
}
out("hf_tokenizer", "bytelevel_gpt2", json.dumps(gpt2_style, ensure_ascii=False, indent=1).encode())
LLAMA3 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
llama3_style = dict(gpt2_style)
llama3_style["added_tokens"] = [
    {"id": bl_vocab["<|endoftext|>"], "content": "<|endoftext|>", "single_word": False, "lstrip": False,
     "rstrip": False, "normalized": False, "special": True}]
llama3_style["normalizer"] = {"type": "NFC"}
llama3_style["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": LLAMA3}, "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
llama3_style["post_processor"] = {"type": "Sequence", "processors": [
    {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
    {"type": "TemplateProcessing",
     "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
     "pair": [], "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [bl_vocab["<|endoftext|>"]],
                                                      "tokens": ["<|endoftext|>"]}}}]}
llama3_style["model"] = dict(gpt2_style["model"], ignore_merges=True)
out("hf_tokenizer", "bytelevel_llama3", json.dumps(llama3_style, ensure_ascii=False, indent=1).encode())
qwen2_style = dict(llama3_style)
qwen2_style["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": QWEN2}, "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
out("hf_tokenizer", "bytelevel_qwen2", json.dumps(qwen2_style, ensure_ascii=False, indent=1).encode())


# --- GGUF ------------------------------------------------------------------------------------
def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, payload):
    return gstr(key) + struct.pack("<I", vtype) + payload


U32, I32, F32T, BOOL, STR, ARR = 4, 5, 6, 7, 8, 9


def arr(item_type, items_payload, count):
    return struct.pack("<IQ", item_type, count) + items_payload


# Quantised block types: ggml number -> (elements, bytes, [(scale offset, f32?)]).
QUANT = {2: (32, 18, [(0, 0)]), 3: (32, 20, [(0, 0), (2, 0)]), 6: (32, 22, [(0, 0)]),
         7: (32, 24, [(0, 0), (2, 0)]), 8: (32, 34, [(0, 0)]), 10: (256, 84, [(80, 0), (82, 0)]),
         11: (256, 110, [(108, 0)]), 12: (256, 144, [(0, 0), (2, 0)]),
         13: (256, 176, [(0, 0), (2, 0)]), 14: (256, 210, [(208, 0)]), 15: (256, 292, [(0, 1)]),
         20: (32, 18, [(0, 0)]), 23: (256, 136, [(0, 0)])}


def quant_blocks(ttype, n, seed):
    """n values of a quantised type: deterministic pseudo-random bytes (any bytes are valid
    quants) with small finite scales written over the scale fields."""
    block, size, scales = QUANT[ttype]
    out = bytearray()
    x = seed * 2654435761 % 2**32
    for b in range(n // block):
        raw = bytearray()
        for _ in range(size):
            x = (x * 1103515245 + 12345) % 2**31
            raw.append(x >> 16 & 0xFF)
        for k, (at, is_f32) in enumerate(scales):
            v = ((b + k) % 7 - 3) / 64.0 or 1 / 128.0
            raw[at:at + (4 if is_f32 else 2)] = struct.pack("<f" if is_f32 else "<e", v)
        out += raw
    return bytes(out)


def gguf(D=8, I=12, L=1, H=2, G=1, ctx=16, tensor_type=0, tied=True, bpe_pre=None, qtypes=None,
         head_dim=None, rope_freqs=None):
    """qtypes: ggml type per tensor kind ("token_embd", "attn_q", ...); head_dim: written as
    llama.attention.key_length when it is not D / H."""
    d = head_dim or D // H
    if bpe_pre is None:  # a SentencePiece ("llama") vocabulary
        pieces = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + \
                 [SP, "a", "b", SP + "a", "ab", SP + "ab", "\u00e9"]
        types = [2, 3, 3] + [6] * 256 + [1] * 7
        tok_kvs = [kv("tokenizer.ggml.model", STR, gstr("llama"))]
    else:  # a byte-level BPE ("gpt2") vocabulary
        pieces = [B2U[b] for b in range(256)] + [l + r for l, r in bl_merges] + ["<|endoftext|>"]
        pieces = list(dict.fromkeys(pieces))
        types = [1] * (len(pieces) - 1) + [3]
        merges = [l + " " + r for l, r in bl_merges]
        tok_kvs = [kv("tokenizer.ggml.model", STR, gstr("gpt2")),
                   kv("tokenizer.ggml.pre", STR, gstr(bpe_pre)),
                   kv("tokenizer.ggml.merges", ARR, arr(STR, b"".join(gstr(m) for m in merges), len(merges)))]
    V = len(pieces)
    scores = [kv("tokenizer.ggml.scores", ARR, arr(F32T, f32([-float(i) for i in range(V)]), V))] \
        if bpe_pre is None else []
    kvs = [
        kv("general.architecture", STR, gstr("llama")),
        kv("general.alignment", U32, struct.pack("<I", 32)),
        kv("llama.context_length", U32, struct.pack("<I", ctx)),
        kv("llama.embedding_length", U32, struct.pack("<I", D)),
        kv("llama.block_count", U32, struct.pack("<I", L)),
        kv("llama.feed_forward_length", U32, struct.pack("<I", I)),
        kv("llama.attention.head_count", U32, struct.pack("<I", H)),
        kv("llama.attention.head_count_kv", U32, struct.pack("<I", G)),
        kv("llama.attention.layer_norm_rms_epsilon", F32T, struct.pack("<f", 1e-5)),
        kv("llama.rope.dimension_count", U32, struct.pack("<I", d)),
    ] + ([kv("llama.attention.key_length", U32, struct.pack("<I", d)),
          kv("llama.attention.value_length", U32, struct.pack("<I", d))] if head_dim else []) + tok_kvs + [
        kv("tokenizer.ggml.tokens", ARR, arr(STR, b"".join(gstr(p) for p in pieces), V)),
    ] + scores + [
        kv("tokenizer.ggml.token_type", ARR, arr(I32, struct.pack("<%di" % V, *types), V)),
        kv("tokenizer.ggml.bos_token_id", U32, struct.pack("<I", 1 if bpe_pre is None else V - 1)),
        kv("tokenizer.ggml.eos_token_id", U32, struct.pack("<I", 2 if bpe_pre is None else V - 1)),
        kv("tokenizer.ggml.add_bos_token", BOOL, b"\x01"),
    ]
    ts = [("token_embd.weight", [V, D])]
    for l in range(L):
        p = "blk.%d." % l
        ts += [(p + "attn_norm.weight", [D]), (p + "attn_q.weight", [H * d, D]),
               (p + "attn_k.weight", [G * d, D]), (p + "attn_v.weight", [G * d, D]),
               (p + "attn_output.weight", [D, H * d]), (p + "ffn_norm.weight", [D]),
               (p + "ffn_gate.weight", [I, D]), (p + "ffn_up.weight", [I, D]),
               (p + "ffn_down.weight", [D, I])]
    ts.append(("output_norm.weight", [D]))
    if not tied:
        ts.append(("output.weight", [V, D]))
    if rope_freqs:
        ts.append(("rope_freqs.weight", [d // 2]))
    infos, data = b"", b""
    for name, shape in ts:
        n = 1
        for s in shape:
            n *= s
        ttype = tensor_type if len(shape) == 2 else 0
        kind = name.split(".")[-2]
        if qtypes and kind in qtypes:
            ttype = qtypes[kind]
        if ttype in QUANT:
            raw = quant_blocks(ttype, n, len(data))
        elif name == "rope_freqs.weight":
            raw = f32(rope_freqs)
        else:
            raw = f16(values(n)) if ttype == 1 else f32(values(n))
        ne = list(reversed(shape))
        infos += gstr(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne) + \
            struct.pack("<IQ", ttype, len(data))
        data += raw + b"\0" * ((-len(raw)) % 32)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(ts), len(kvs)) + b"".join(kvs) + infos
    head += b"\0" * ((-len(head)) % 32)
    return head + data


out("gguf", "tiny_f32_tied.gguf", gguf())
out("gguf", "tiny_f16_untied.gguf", gguf(tensor_type=1, tied=False))
out("gguf", "tiny_gpt2_tokenizer.gguf", gguf(bpe_pre="gpt-2"))
out("gguf", "tiny_llama3_tokenizer.gguf", gguf(bpe_pre="llama-bpe"))
# Quantised tensors: the 32-element block types on every matrix of a D 32 model; a K type
# (256-element blocks) on the 256-wide down projection, with a llama3 rope_freqs table.
out("gguf", "tiny_quant32.gguf", gguf(D=32, I=32, qtypes={
    "token_embd": 8, "attn_q": 2, "attn_k": 3, "attn_v": 6, "attn_output": 7, "ffn_gate": 20,
    "ffn_up": 8, "ffn_down": 2}))
out("gguf", "tiny_kquant.gguf", gguf(D=32, I=256, qtypes={
    "token_embd": 3, "attn_q": 20, "attn_k": 8, "attn_v": 8, "attn_output": 2, "ffn_gate": 2,
    "ffn_up": 7, "ffn_down": 12}, rope_freqs=[1.0, 1.0, 2.5, 4.0, 4.0, 4.0, 4.0, 4.0]))
