#!/usr/bin/python3
"""Independent Python/torch reference of the Llama forward pass, written from the
architecture (not from any project code), for the depass golden tests.

Loaders:
  * load_llama2c(path)     -- llama2.c legacy (v0) checkpoint: 7 x int32 header
                              (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
                              vocab_size [<0: separate classifier], seq_len), then f32
                              arrays; RoPE on adjacent pairs; RMSNorm eps 1e-5.
  * load_hf_safetensors(d) -- Hugging Face LlamaForCausalLM directory (config.json +
                              model.safetensors, F32, parsed by hand); RoPE "halves"
                              layout (rotate_half); eps from config.

Model (all in the requested dtype, float32 or float64):
  x = E[ids]
  per layer:  h = rmsnorm(x) * w_att;  q,k,v = h Wq^T, h Wk^T, h Wv^T
              rope(q), rope(k) (angle pos * theta^(-2i/hd) for pair i)
              A[h] = softmax(q_h k_{kv(h)}^T / sqrt(hd) + causal mask),  kv(h) = h // (H/G)
              x += concat_h(A[h] v_{kv(h)}) Wo^T
              h = rmsnorm(x) * w_ffn;  x += (silu(h W1^T) * (h W3^T)) W2^T
  logits = (rmsnorm(x) * w_final) Wcls^T
rmsnorm(x) = x / sqrt(mean(x^2) + eps).  RoPE cos/sin are computed in float64 and
cast to the working dtype.
"""
import json
import math
import os
import struct

import numpy as np
import torch


# ----------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------
def load_llama2c(path):
    data = open(path, "rb").read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack_from("<7i", data, 0)
    shared = vocab > 0
    vocab = abs(vocab)
    hd = dim // n_heads
    off = 28
    arr = np.frombuffer(data, dtype="<f4", offset=off)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        a = arr[pos:pos + n].reshape(shape)
        pos += n
        return torch.from_numpy(a.astype(np.float32))

    emb = take(vocab, dim)
    rms_att = take(n_layers, dim)
    wq = take(n_layers, n_heads * hd, dim)
    wk = take(n_layers, n_kv * hd, dim)
    wv = take(n_layers, n_kv * hd, dim)
    wo = take(n_layers, dim, n_heads * hd)
    rms_ffn = take(n_layers, dim)
    w1 = take(n_layers, hidden, dim)
    w2 = take(n_layers, dim, hidden)
    w3 = take(n_layers, hidden, dim)
    rms_final = take(dim)
    take(seq_len, hd // 2)  # freq_cis_real (unused: recomputed)
    take(seq_len, hd // 2)  # freq_cis_imag
    if shared:
        wcls = emb
    else:
        wcls = take(vocab, dim)
    assert 28 + 4 * pos == len(data), (28 + 4 * pos, len(data))
    cfg = dict(dim=dim, hidden_dim=hidden, n_layers=n_layers, n_heads=n_heads,
               n_kv_heads=n_kv, vocab_size=vocab, seq_len=seq_len, head_dim=hd,
               eps=1e-5, rope_theta=10000.0, rope_layout="adjacent")
    layers = [dict(att_norm=rms_att[l], wq=wq[l], wk=wk[l], wv=wv[l], wo=wo[l],
                   ffn_norm=rms_ffn[l], w1=w1[l], w2=w2[l], w3=w3[l])
              for l in range(n_layers)]
    return dict(cfg=cfg, embed=emb, layers=layers, final_norm=rms_final, wcls=wcls)


def read_safetensors(path):
    data = open(path, "rb").read()
    (hlen,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + hlen].decode("utf-8"))
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info["dtype"]
        a, b = info["data_offsets"]
        t = np.frombuffer(data[base + a:base + b], dtype="<f4").reshape(info["shape"])
        out[name] = torch.from_numpy(t.astype(np.float32))
    return out, header.get("__metadata__", {})


def load_hf_safetensors(d):
    c = json.load(open(os.path.join(d, "config.json")))
    t, _ = read_safetensors(os.path.join(d, "model.safetensors"))
    dim, H = c["hidden_size"], c["num_attention_heads"]
    G = c.get("num_key_value_heads", H)
    hd = c.get("head_dim", dim // H)
    emb = t.get("model.embed_tokens.weight")
    wcls = t.get("lm_head.weight")
    if emb is None:  # tied, stored once as lm_head.weight
        emb = wcls
    if wcls is None:
        assert c.get("tie_word_embeddings", True)
        wcls = emb
    cfg = dict(dim=dim, hidden_dim=c["intermediate_size"], n_layers=c["num_hidden_layers"],
               n_heads=H, n_kv_heads=G, vocab_size=c["vocab_size"],
               seq_len=c.get("max_position_embeddings"), head_dim=hd,
               eps=c["rms_norm_eps"], rope_theta=c.get("rope_theta", 10000.0),
               rope_layout="halves")
    assert c.get("rope_scaling") is None
    layers = []
    for l in range(cfg["n_layers"]):
        p = "model.layers.%d." % l
        layers.append(dict(att_norm=t[p + "input_layernorm.weight"],
                           wq=t[p + "self_attn.q_proj.weight"], wk=t[p + "self_attn.k_proj.weight"],
                           wv=t[p + "self_attn.v_proj.weight"], wo=t[p + "self_attn.o_proj.weight"],
                           ffn_norm=t[p + "post_attention_layernorm.weight"],
                           w1=t[p + "mlp.gate_proj.weight"], w2=t[p + "mlp.down_proj.weight"],
                           w3=t[p + "mlp.up_proj.weight"]))
    return dict(cfg=cfg, embed=emb, layers=layers, final_norm=t["model.norm.weight"], wcls=wcls)


def to_dtype(model, dtype):
    def cv(v):
        if isinstance(v, torch.Tensor):
            return v.to(dtype)
        if isinstance(v, list):
            return [cv(x) for x in v]
        if isinstance(v, dict):
            return {k: cv(x) for k, x in v.items()}
        return v
    return cv(model)


# ----------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------
def rms_scale(x, eps):
    """r_i = 1/sqrt(mean(x_i^2) + eps), shape [..., N, 1]."""
    return torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps)


def rmsnorm(x, w, eps):
    return x * rms_scale(x, eps) * w


def rope_cos_sin(n, hd, theta, dtype):
    half = hd // 2
    i = np.arange(half, dtype=np.float64)
    inv = theta ** (-2.0 * i / hd)
    ang = np.arange(n, dtype=np.float64)[:, None] * inv[None, :]  # [N, hd/2]
    return (torch.from_numpy(np.cos(ang)).to(dtype), torch.from_numpy(np.sin(ang)).to(dtype))


def apply_rope(x, cos, sin, layout):
    """x: [N, heads, hd]; cos/sin: [N, hd/2]."""
    c = cos[:, None, :]
    s = sin[:, None, :]
    if layout == "adjacent":
        a, b = x[..., 0::2], x[..., 1::2]
        ra, rb = a * c - b * s, a * s + b * c
        return torch.stack([ra, rb], dim=-1).reshape(x.shape)
    elif layout == "halves":
        half = x.shape[-1] // 2
        a, b = x[..., :half], x[..., half:]
        return torch.cat([a * c - b * s, a * s + b * c], dim=-1)
    raise ValueError(layout)


def attention_probs(h, L, cfg, cos, sin):
    """Real attention on normalised input h [N, D]: returns A [H, N, N] and v [G, N, hd]."""
    N = h.shape[0]
    H, G, hd = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"]
    q = (h @ L["wq"].T).reshape(N, H, hd)
    k = (h @ L["wk"].T).reshape(N, G, hd)
    v = (h @ L["wv"].T).reshape(N, G, hd)
    q = apply_rope(q, cos, sin, cfg["rope_layout"])
    k = apply_rope(k, cos, sin, cfg["rope_layout"])
    rep = H // G
    kv = torch.arange(H) // rep
    qh = q.permute(1, 0, 2)                   # [H, N, hd]
    kh = k.permute(1, 0, 2)[kv]               # [H, N, hd]
    s = qh @ kh.transpose(1, 2) / math.sqrt(hd)
    mask = torch.triu(torch.ones(N, N, dtype=torch.bool), diagonal=1)
    s = s.masked_fill(mask, float("-inf"))
    A = torch.softmax(s, dim=-1)
    return A, v.permute(1, 0, 2)


def attention_mix(A, v, cfg):
    """A [H,N,N], v [G,N,hd] (or [..., G, N, hd]) -> concat heads [..., N, H*hd]."""
    H, G = cfg["n_heads"], cfg["n_kv_heads"]
    kv = torch.arange(H) // (H // G)
    o = A @ v[..., kv, :, :]                  # [..., H, N, hd]
    o = o.transpose(-3, -2)                   # [..., N, H, hd]
    return o.reshape(*o.shape[:-2], -1)


def silu(x):
    return x * torch.sigmoid(x)


def forward(model, ids, return_hidden=False):
    cfg = model["cfg"]
    dtype = model["embed"].dtype
    N = len(ids)
    x = model["embed"][torch.tensor(ids, dtype=torch.long)].clone()
    cos, sin = rope_cos_sin(N, cfg["head_dim"], cfg["rope_theta"], dtype)
    eps = cfg["eps"]
    hidden = [x.clone()]
    for L in model["layers"]:
        h = rmsnorm(x, L["att_norm"], eps)
        A, v = attention_probs(h, L, cfg, cos, sin)
        x = x + attention_mix(A, v, cfg) @ L["wo"].T
        hidden.append(x.clone())
        h = rmsnorm(x, L["ffn_norm"], eps)
        a = silu(h @ L["w1"].T) * (h @ L["w3"].T)
        x = x + a @ L["w2"].T
        hidden.append(x.clone())
    logits = rmsnorm(x, model["final_norm"], eps) @ model["wcls"].T
    if return_hidden:
        return logits, hidden
    return logits


def greedy(model, ids, n_new, stop_at_eos=None):
    """Greedy decoding by full recomputation (no cache); ties -> lowest id (argmax)."""
    ids = list(ids)
    out = []
    for _ in range(n_new):
        with torch.no_grad():
            logits = forward(model, ids)
        nxt = int(torch.argmax(logits[-1]).item())
        out.append(nxt)
        ids.append(nxt)
        if stop_at_eos is not None and nxt == stop_at_eos:
            break
    return out


if __name__ == "__main__":
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from tokenizers import Llama2cTokenizer, HFBpeTokenizer
    models = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/models"
    tok = Llama2cTokenizer(os.path.join(models, "stories260K/tok512.bin"))
    m = load_llama2c(os.path.join(models, "stories260K/stories260K.bin"))
    ids = tok.encode("Once upon a time", bos=True)
    g = greedy(m, ids, 80)
    print(repr(tok.decode(ids + g)))
    hf = HFBpeTokenizer(os.path.join(models, "tinystories-656k/tokenizer.json"))
    m2 = load_hf_safetensors(os.path.join(models, "tinystories-656k"))
    ids = hf.encode("Once upon a time,", add_bos=True)
    g = greedy(m2, ids, 60)
    print(repr(hf.decode(ids[1:] + g)))
