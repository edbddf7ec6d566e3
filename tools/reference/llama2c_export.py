#!/usr/bin/env python3
"""Writes tiny llama2.c checkpoints in the three layouts of llama2.c's export.py, for the
loader tests (tests/data/llama2c/). Written from export.py's description (legacy_export,
version1_export, version2_export), numpy only:

  v0  7 int32 header (vocab_size negated for a separate classifier); f32 token embedding,
      then each per-layer kind stacked over layers: attention norm, wq, wk, wv, wo, ffn
      norm, w1, w2, w3; final norm; the RoPE tables freqs_cos/freqs_sin [seq_len, head/2];
      the classifier if not shared.
  v1  256-byte header: u32 0x616b3432, int32 1, the 7 ints (vocab_size positive), u8
      shared_classifier, zero padding; f32: attention norms, ffn norms, final norm, token
      embedding, wq.., wo (all layers each), w1, w2, w3, [classifier].
  v2  the v1 header with version 2 and an int32 group_size after the flag; f32 attention
      norms, ffn norms, final norm; then each tensor (token embedding, every layer's wq,
      then wk, wv, wo, w1, w2, w3, [classifier]) as int8 values followed by its f32 scales:
      per group of group_size consecutive values, scale = max|w| / 127, q = round(w / scale)
      (half to even, as torch.round). group_size starts at 64 and is halved until it
      divides dim.

    /usr/bin/python3 tools/reference/llama2c_export.py [--out tests/data/llama2c]
"""
import argparse
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
F32 = np.float32
MAGIC = 0x616B3432


def tiny_model(seed, dim, hidden, layers, heads, kv_heads, vocab, seq_len, shared):
    rng = np.random.default_rng(seed)
    head = dim // heads

    def mat(*shape):
        return (rng.standard_normal(shape) * 0.3).astype(F32)

    def norm(n):
        return (1.0 + 0.2 * rng.standard_normal(n)).astype(F32)

    m = dict(dim=dim, hidden=hidden, n_layers=layers, heads=heads, kv_heads=kv_heads,
             vocab=vocab, seq_len=seq_len, shared=shared)
    m["emb"] = mat(vocab, dim)
    m["layers"] = [dict(att_norm=norm(dim), wq=mat(dim, dim), wk=mat(kv_heads * head, dim),
                        wv=mat(kv_heads * head, dim), wo=mat(dim, dim), ffn_norm=norm(dim),
                        w1=mat(hidden, dim), w2=mat(dim, hidden), w3=mat(hidden, dim))
                   for _ in range(layers)]
    m["final_norm"] = norm(dim)
    m["cls"] = m["emb"] if shared else mat(vocab, dim)
    # RoPE tables as llama2.c's model.py precomputes them (v0 stores them; never read).
    freqs = 1.0 / (10000.0 ** (np.arange(0, head, 2)[: head // 2].astype(F32) / head))
    angles = np.outer(np.arange(seq_len, dtype=F32), freqs).astype(F32)
    m["freqs_cos"], m["freqs_sin"] = np.cos(angles).astype(F32), np.sin(angles).astype(F32)
    return m


def f32(a):
    return np.asarray(a, dtype="<f4").tobytes()


def params(m, vocab):
    return struct.pack("<7i", m["dim"], m["hidden"], m["n_layers"], m["heads"], m["kv_heads"],
                       vocab, m["seq_len"])


def kinds(m, name):
    return [layer[name] for layer in m["layers"]]


def v0(m):
    out = params(m, m["vocab"] if m["shared"] else -m["vocab"]) + f32(m["emb"])
    for name in ("att_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3"):
        out += b"".join(f32(t) for t in kinds(m, name))
    out += f32(m["final_norm"]) + f32(m["freqs_cos"]) + f32(m["freqs_sin"])
    if not m["shared"]:
        out += f32(m["cls"])
    return out


def header(m, version, group_size=None):
    out = struct.pack("<Ii", MAGIC, version) + params(m, m["vocab"]) + struct.pack("<B", int(m["shared"]))
    if group_size is not None:
        out += struct.pack("<i", group_size)
    return out + b"\0" * (256 - len(out))


def matrices(m):
    out = [m["emb"]]
    for name in ("wq", "wk", "wv", "wo", "w1", "w2", "w3"):
        out += kinds(m, name)
    if not m["shared"]:
        out.append(m["cls"])
    return out


def norms(m):
    return (b"".join(f32(t) for t in kinds(m, "att_norm")) +
            b"".join(f32(t) for t in kinds(m, "ffn_norm")) + f32(m["final_norm"]))


def v1(m):
    return header(m, 1) + norms(m) + b"".join(f32(t) for t in matrices(m))


def quantize_q80(w, group_size):
    groups = w.astype(F32).reshape(-1, group_size)
    scale = (np.abs(groups).max(axis=1) / F32(127.0)).astype(F32)
    q = np.rint(groups / scale[:, None]).astype(np.int8)
    return q.reshape(-1), scale


def v2(m, group_size=64):
    while m["dim"] % group_size != 0:
        group_size //= 2
    out = header(m, 2, group_size) + norms(m)
    for w in matrices(m):
        assert w.size % group_size == 0
        q, s = quantize_q80(w, group_size)
        out += q.tobytes() + f32(s)
    return out, group_size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "llama2c"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    # hidden 24 is not a multiple of the group size 16: w2's groups straddle its rows.
    models = {
        "shared": tiny_model(7, dim=16, hidden=24, layers=2, heads=2, kv_heads=1, vocab=32,
                             seq_len=16, shared=True),
        "unshared": tiny_model(8, dim=16, hidden=24, layers=1, heads=4, kv_heads=2, vocab=24,
                               seq_len=16, shared=False),
    }
    for name, m in models.items():
        q, gs = v2(m)
        for version, data in (("v0", v0(m)), ("v1", v1(m)), ("v2", q)):
            path = os.path.join(args.out, "%s_%s.bin" % (name, version))
            with open(path, "wb") as f:
                f.write(data)
            print("wrote", path, len(data), "bytes", "(group size %d)" % gs if version == "v2" else "")


if __name__ == "__main__":
    main()
