#!/usr/bin/env python3
"""Writes tests/golden/gguf_rope_scaling.json: reference logits of the random llama3 family
checkpoint (tests/data/families/llama3) under the RoPE scalings a GGUF file can carry, and
the `rope_freqs.weight` tables a GGUF converter writes for Llama 3 scaling.

* llama3: llama.cpp's convert_hf_to_gguf.py does not store the llama3 parameters as
  metadata; it stores per-pair divisors `rope_freqs.weight` (float32, head_dim/2 values):
  with freq_j = 1 / theta^(2j/d) computed in float32 and wavelen = 2 pi / freq_j, the
  divisor is 1 if wavelen < orig/high, `factor` if wavelen > orig/low, else
  1 / ((1 - s)/factor + s) with s = (orig/wavelen - low)/(high - low). llama.cpp then
  rotates pair j by pos * theta^(-2j/d) / divisor_j. The reference logits use exactly that
  frequency, with the float32 divisors as stored.
* linear: `llama.rope.scaling.type = linear`, `llama.rope.scaling.factor = f`: every
  frequency divided by f.

The forward pass is a float64 numpy Llama (Hugging Face layout: RoPE on the two halves of
each head, RMSNorm, GQA, SwiGLU, tied embeddings), written from the architecture.

    /usr/bin/python3 tools/reference/make_rope_goldens.py [--out tests/golden]
"""
import argparse
import json
import math
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
MODEL = os.path.join(ROOT, "tests", "data", "families", "llama3")
# Logits kept in the golden file: every 9th position, the first 64 vocabulary entries.
POSITIONS = list(range(0, 64, 9))
COLUMNS = 64


def read_safetensors_f32(path):
    raw = open(path, "rb").read()
    n = struct.unpack_from("<Q", raw, 0)[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info["dtype"]
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(info["shape"]).astype(np.float64)
    return out


def converter_divisors(theta, head_dim, factor, low, high, orig):
    """rope_freqs.weight as convert_hf_to_gguf.py computes it (float32 frequencies)."""
    freqs = (np.float32(1.0) / (np.float32(theta) ** (np.arange(0, head_dim, 2, dtype=np.float32) /
                                                    np.float32(head_dim)))).astype(np.float32)
    low_wl, high_wl = orig / low, orig / high
    out = []
    for f in freqs:
        wl = np.float32(2 * math.pi) / f
        if wl < high_wl:
            out.append(1.0)
        elif wl > low_wl:
            out.append(factor)
        else:
            s = (np.float32(orig) / wl - np.float32(low)) / np.float32(high - low)
            out.append(1.0 / ((1.0 - s) / factor + s))
    return np.array(out, dtype=np.float32)


def forward(w, cfg, ids, inv_freq):
    D, H = cfg["hidden_size"], cfg["num_attention_heads"]
    G, hd, eps = cfg["num_key_value_heads"], cfg["head_dim"], cfg["rms_norm_eps"]
    N = len(ids)
    x = w["model.embed_tokens.weight"][ids]
    ang = np.arange(N, dtype=np.float64)[:, None] * inv_freq[None, :]
    cos, sin = np.cos(ang), np.sin(ang)

    def rms(v, g):
        return v / np.sqrt((v * v).mean(axis=-1, keepdims=True) + eps) * g

    def rope(t, heads):
        t = t.reshape(N, heads, hd)
        a, b = t[..., :hd // 2], t[..., hd // 2:]
        c, s = cos[:, None, :], sin[:, None, :]
        return np.concatenate([a * c - b * s, a * s + b * c], axis=-1)

    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        h = rms(x, w[p + "input_layernorm.weight"])
        q = rope(h @ w[p + "self_attn.q_proj.weight"].T, H)
        k = rope(h @ w[p + "self_attn.k_proj.weight"].T, G)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(N, G, hd)
        out = np.zeros((N, H, hd))
        for head in range(H):
            g = head // (H // G)
            s = q[:, head, :] @ k[:, g, :].T / math.sqrt(hd)
            s = np.where(np.tril(np.ones((N, N), dtype=bool)), s, -np.inf)
            s = np.exp(s - s.max(axis=1, keepdims=True))
            out[:, head, :] = (s / s.sum(axis=1, keepdims=True)) @ v[:, g, :]
        x = x + out.reshape(N, H * hd) @ w[p + "self_attn.o_proj.weight"].T
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        gate = h @ w[p + "mlp.gate_proj.weight"].T
        up = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T
    return rms(x, w["model.norm.weight"]) @ w["model.embed_tokens.weight"].T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden"))
    args = ap.parse_args()
    cfg = json.load(open(os.path.join(MODEL, "config.json")))
    w = read_safetensors_f32(os.path.join(MODEL, "model.safetensors"))
    hd = cfg["head_dim"]
    rng = np.random.default_rng(5)
    ids = [int(i) for i in rng.integers(0, cfg["vocab_size"], 64)]
    rs = cfg["rope_scaling"]
    cases = [
        # The checkpoint's own llama3 parameters (one pair in the blended band).
        dict(name="llama3", theta=cfg["rope_theta"], factor=rs["factor"], low=rs["low_freq_factor"],
             high=rs["high_freq_factor"], orig=rs["original_max_position_embeddings"]),
        # Three pairs in the blended band.
        dict(name="llama3_wide_band", theta=10000.0, factor=4.0, low=1.0, high=16.0, orig=256),
        dict(name="linear", theta=10000.0, linear=4.0),
    ]
    out = {"model": "families/llama3", "ids": ids, "positions": POSITIONS,
           "columns": COLUMNS, "cases": []}
    for c in cases:
        base = 1.0 / c["theta"] ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
        entry = {"name": c["name"], "rope_theta": c["theta"]}
        if "linear" in c:
            inv = base / c["linear"]
            entry["linear_factor"] = c["linear"]
        else:
            div = converter_divisors(c["theta"], hd, c["factor"], c["low"], c["high"], c["orig"])
            inv = base / div.astype(np.float64)
            entry["rope_freqs"] = [float(v) for v in div]
            print(c["name"], "divisors", div)
        logits = forward(w, cfg, ids, inv)
        entry["logits"] = logits[POSITIONS, :COLUMNS].tolist()
        out["cases"].append(entry)
    path = os.path.join(args.out, "gguf_rope_scaling.json")
    with open(path, "w") as f:
        json.dump(out, f)
        f.write("\n")
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
