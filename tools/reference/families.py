#!/usr/bin/python3
"""Independent PyTorch reference for the model families beyond plain Llama:
Llama (incl. Llama 3 RoPE scaling), Mistral (explicit head_dim), Qwen2 (q/k/v biases,
tied or untied), Qwen3 (per-head q/k norms), Phi-3 (fused projections), GPT-2 (LayerNorm
with bias, learned positions, Conv1D weights, GELU-tanh MLP), Gemma and Gemma 2 (scaled
embedding, (1 + w) norms, GeGLU; Gemma 2 sandwich norms and soft caps), GPT-NeoX / Pythia
(fused qkv interleaved per head, partial rotary, erf GELU, parallel residual) -- in the
Hugging Face checkpoint layout.  Written from the published
architectures and `docs/depass-method.md`, not from the project C++.

Contents
  * safetensors writer/reader (by hand: u64 LE header length, JSON header with
    "__metadata__" first, tensors by name, data in the same order, header padded with
    spaces to a multiple of 8; F32 / F16 / BF16 / F64 / BOOL, read back as 0.0 / 1.0).
  * tiny random checkpoints: configs with the fields `transformers` (4.51) writes for
    each model_type (sorted keys, 2-space indent), deterministic numpy weights.
  * forward passes (float32 or float64) and, as cross-checks, second implementations
    written differently (complex-number RoPE, per-head loops, torch.nn.functional
    layer_norm / gelu(approximate="tanh")).
  * token-level DePass in float64 for any of the families (components: one per input
    token, + a position component for GPT-2, + a bias component), and a loop-based
    second implementation.

Conventions (llama-like):
  x = E[ids];  per layer: h = rmsnorm(x) w_in;  q = h Wq^T (+bq), k = h Wk^T (+bk),
  v = h Wv^T (+bv), heads of width head_dim (config head_dim, else hidden/heads);
  RoPE "halves" layout (HF rotate_half): for pair i (i < hd/2) the elements i and
  i + hd/2 rotate by angle pos * inv_freq[i], inv_freq[i] = theta^(-2i/hd), rescaled by
  the llama3 rule when rope_scaling.rope_type == "llama3" (llama3_inv_freq below);
  cos/sin are computed in float64 and cast to the working dtype.
  A[h] = softmax(q_h k_{h // (H/G)}^T / sqrt(hd), causal);  x += concat_h(A v) Wo^T;
  h = rmsnorm(x) w_post;  x += (silu(h Wg^T) * (h Wu^T)) Wd^T;  logits = rmsnorm(x) w_f Wlm^T
  rmsnorm(x) = x / sqrt(mean(x^2) + eps); lm_head = embed_tokens when tied.
GPT-2:
  x = wte[ids] + wpe[0..N-1];  per layer: h = LN1(x);  qkv = h @ c_attn.W + c_attn.b
  (W is [D, 3D], Conv1D: y = x W + b), q|k|v = columns [0,D) [D,2D) [2D,3D), head h =
  columns h*hd..(h+1)*hd of each;  A = softmax(q k^T / sqrt(hd), causal);
  x += concat(A v) @ attn.c_proj.W + b;  h = LN2(x);  x += gelu_tanh(h @ c_fc.W + b) @
  mlp.c_proj.W + b;  logits = LN_f(x) @ wte^T.  LN(x) = (x - mean) / sqrt(var + eps) g + b
  with the biased variance; gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))).
Gemma (transformers 4.51 modeling_gemma.py; no biases, tied):
  x = E[ids] * s with s = sqrt(hidden) rounded to the working dtype (HF:
  torch.tensor(hidden ** 0.5, dtype)); every norm is gnorm(x, w) = x / sqrt(mean(x^2) + eps)
  * (1 + w) -- the checkpoint stores w (here drawn around 0), the model dicts below hold the
  gain 1 + w (float32: the same rounding as HF's 1.0 + w.float()).  Per layer:
  h = gnorm(x, input_layernorm);  q, k, v as llama-like with head_dim from the config (24
  here, not hidden/heads), RoPE halves;  A = softmax((q k^T) * head_dim^-0.5, causal) (HF
  multiplies by the scale);  x += concat(A v) Wo^T;  h = gnorm(x, post_attention_layernorm);
  x += (gelu_tanh(h Wg^T) * (h Wu^T)) Wd^T (GeGLU, gelu_pytorch_tanh);
  logits = gnorm(x, model.norm) E^T (the unscaled embedding).
Gemma 2 (modeling_gemma2.py), Gemma with:
  scores s = (q k^T) * query_pre_attn_scalar^-0.5, soft-capped s <- c_a tanh(s / c_a)
  (attn_logit_softcapping; HF: s / c_a, tanh, * c_a), then the causal mask and softmax;
  sandwich norms: x += gnorm(concat(A v) Wo^T, post_attention_layernorm);
  h = gnorm(x, pre_feedforward_layernorm);  x += gnorm(GeGLU(h), post_feedforward_layernorm);
  logits = c_f tanh(z / c_f), z = gnorm(x, model.norm) E^T (final_logit_softcapping);
  a sliding window on even layers: not modelled, every context here is shorter (asserted).
DePass for Gemma / Gemma 2 (these rules are ours, stated here):
  token component m = the scaled row E[id_m] s at position m; bias component (zeros) as for
  the llama-like families (no biases, but the sink merges into it under the path rule and
  undriven neurons go there).  Frozen norms use the 1 + w gain.  Gemma 2's output norms are
  frozen too: the block's update to component m, D_m, becomes D_m * r_out * (1 + w_post),
  r_out the per-position scale of the real block output, so the updates sum to the real
  normed update.  The attention soft cap only changes the (frozen) probabilities.  The final
  soft cap is frozen per logit: component logit = z_m * rho, rho = c_f tanh(z / c_f) / z
  (1 where z == 0) with z = sum_m z_m the real pre-cap logit (cap_logits).  MLP split on
  a = gelu_tanh(G) U: softmax / argmax / proportional on the gate parts g_m as for SwiGLU;
  path: share_m = cg g_m + cu u_m, cg = U (Phi(G) - p(G)), cu = G p(G), p(G) = int_0^1
  t Phi(t G) dt, gelu_tanh(x) = x Phi(x) (integrated gradients along 0 -> (G, U)).
GPT-NeoX (transformers 4.51 modeling_gpt_neox.py, GPTNeoXForCausalLM; biases everywhere):
  x = embed_in[ids] (no position rows);  per layer: h = LN1(x) (input_layernorm);
  qkv = h W_qkv^T + b_qkv viewed [N, H, 3 hd]: head h's q = [..., 0:hd], k = [..., hd:2hd],
  v = [..., 2hd:3hd] (rows h*3hd.. of W_qkv); partial rotary: the first rot = int(hd *
  rotary_pct) dims of q and k rotate, halves layout within them (pair i = (i, i + rot/2),
  inv_freq[i] = base^(-2i/rot)), the rest pass through;  A = softmax(q k^T hd^-0.5, causal);
  o = concat(A v) W_dense^T + b_dense;  MLP(t) = gelu_erf(LN2(t) W1^T + b1) W2^T + b2 with
  gelu_erf(x) = 0.5 x (1 + erf(x / sqrt 2));  parallel (use_parallel_residual): x <- x + o +
  MLP(x); sequential: h = x + o, x <- h + MLP(h);  logits = LN_f(x) embed_out^T (untied).
  Boundaries: 2l = layer input, 2l+1 = x + o (for a parallel layer DEFINED so: the MLP reads
  x, not this), 2l+2 = layer output.  The per-layer buffers of Pythia files
  (attention.bias, attention.masked_bias, attention.rotary_emb.inv_freq) are ignored.
DePass for GPT-NeoX (ours): token components = embed_in rows at their positions, + the
  bias component. LayerNorms frozen as GPT-2's (centre, real scale, gain; the LayerNorm
  bias to the bias component); attention probabilities frozen (q/k biases and the rotary
  act only through them); v bias and dense bias to the bias component. MLP split as GPT-2's
  non-gated MLP (b1 in the bias component's gate part, b2 to the bias component); path:
  share_m = Phi(G) g_m, Phi(G) = (1 + erf(G / sqrt 2)) / 2 = gelu_erf(G) / G. Parallel: both
  updates of layer l are computed from the components at the layer input and both added;
  components at 2l+1 = C_in + the attention update. A start at 2l+1 (heads(l),
  module(l, attention)) gives layer l's MLP the input decomposition residual member = x_in,
  every other member (and the bias component) zero; other starts at an odd boundary are
  undefined for a parallel model (start_components asserts).
"""
import json
import math
import os
import struct

import numpy as np
import torch

TRANSFORMERS_VERSION = "4.51.3"


# ----------------------------------------------------------------------------
# safetensors
# ----------------------------------------------------------------------------
def _f32_to_bf16_bits(a):
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (uint16)."""
    u = np.ascontiguousarray(a, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype("<u2")


def encode_tensor(a, dtype):
    a = np.asarray(a)
    if dtype == "F32":
        return np.ascontiguousarray(a, dtype="<f4").tobytes()
    if dtype == "F16":
        return np.ascontiguousarray(a, dtype="<f2").tobytes()
    if dtype == "F64":
        return np.ascontiguousarray(a, dtype="<f8").tobytes()
    if dtype == "BF16":
        return _f32_to_bf16_bits(a.astype(np.float32)).tobytes()
    if dtype == "BOOL":  # one byte per element, 0 or 1 (torch.bool buffers, e.g. GPT-NeoX's attention.bias)
        return np.ascontiguousarray(a != 0, dtype=np.uint8).tobytes()
    raise ValueError(dtype)


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: (array, dtype)}; data laid out in name order."""
    header = {"__metadata__": dict(metadata or {"format": "pt"})}
    blobs, off = [], 0
    for name in sorted(tensors):
        arr, dtype = tensors[name]
        b = encode_tensor(arr, dtype)
        header[name] = {"dtype": dtype, "shape": list(np.asarray(arr).shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """-> ({name: float64 torch tensor (exact widening)}, {name: dtype}, metadata)."""
    data = open(path, "rb").read()
    (hlen,) = struct.unpack_from("<Q", data, 0)
    assert hlen % 8 == 0
    header = json.loads(data[8:8 + hlen].decode("utf-8"))
    base = 8 + hlen
    out, dtypes, end = {}, {}, 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[base + a:base + b]
        dt = info["dtype"]
        if dt == "F32":
            t = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        elif dt == "F16":
            t = np.frombuffer(raw, dtype="<f2").astype(np.float64)
        elif dt == "F64":
            t = np.frombuffer(raw, dtype="<f8").astype(np.float64)
        elif dt == "BF16":
            t = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view("<f4")
            t = t.astype(np.float64)
        elif dt == "BOOL":
            raw_u8 = np.frombuffer(raw, dtype=np.uint8)
            assert np.all(raw_u8 <= 1), name
            t = raw_u8.astype(np.float64)
        else:
            raise ValueError(dt)
        shape = info["shape"]
        assert t.size == int(np.prod(shape)), name
        out[name] = torch.from_numpy(t.reshape(shape).copy())
        dtypes[name] = dt
        end = max(end, b)
    assert base + end == len(data), "trailing bytes"
    return out, dtypes, header.get("__metadata__", {})


# ----------------------------------------------------------------------------
# configs (as transformers' save_pretrained writes them: to_diff_dict, sorted keys)
# ----------------------------------------------------------------------------
def llama_config(vocab, bos, eos, tie, rope_theta=10000.0, rope_scaling=None,
                 torch_dtype="float32"):
    return {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False,
        "attention_dropout": 0.0, "bos_token_id": bos, "eos_token_id": eos,
        "head_dim": 16, "hidden_act": "silu", "hidden_size": 64,
        "initializer_range": 0.02, "intermediate_size": 96,
        "max_position_embeddings": 128, "mlp_bias": False, "model_type": "llama",
        "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": rope_scaling,
        "rope_theta": rope_theta, "tie_word_embeddings": tie, "torch_dtype": torch_dtype,
        "transformers_version": TRANSFORMERS_VERSION, "use_cache": True, "vocab_size": vocab}


def mistral_config(vocab, bos, eos):
    return {
        "architectures": ["MistralForCausalLM"], "attention_dropout": 0.0,
        "bos_token_id": bos, "eos_token_id": eos, "head_dim": 32, "hidden_act": "silu",
        "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 96,
        "max_position_embeddings": 128, "model_type": "mistral",
        "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": None,
        "tie_word_embeddings": False, "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION, "use_cache": True, "vocab_size": vocab}


def qwen2_config(vocab, bos, eos, tie):
    return {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0,
        "bos_token_id": bos, "eos_token_id": eos, "hidden_act": "silu", "hidden_size": 64,
        "initializer_range": 0.02, "intermediate_size": 96,
        "max_position_embeddings": 128, "max_window_layers": 2, "model_type": "qwen2",
        "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000.0,
        "sliding_window": None, "tie_word_embeddings": tie, "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION, "use_cache": True,
        "use_sliding_window": False, "vocab_size": vocab}


def qwen3_config(vocab, bos, eos):
    """Qwen3: Qwen2's layout with q/k RMSNorm per head before RoPE, head_dim given (here not
    D/H), no biases; tied."""
    cfg = qwen2_config(vocab, bos, eos, tie=True)
    cfg.update({"architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "head_dim": 24,
                "model_type": "qwen3"})
    return cfg


def phi3_config(vocab, bos, eos):
    """Phi-3: a Llama whose checkpoint fuses qkv_proj ([q; k; v] rows) and gate_up_proj
    ([gate; up] rows); GQA here, untied, a sliding window longer than the context."""
    return {
        "architectures": ["Phi3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": bos, "embd_pdrop": 0.0, "eos_token_id": eos, "hidden_act": "silu",
        "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 96,
        "max_position_embeddings": 128, "model_type": "phi3", "num_attention_heads": 4,
        "num_hidden_layers": 2, "num_key_value_heads": 2, "original_max_position_embeddings": 128,
        "pad_token_id": eos, "resid_pdrop": 0.0, "rms_norm_eps": 1e-05, "rope_scaling": None,
        "rope_theta": 10000.0, "sliding_window": 256, "tie_word_embeddings": False,
        "torch_dtype": "float32", "transformers_version": TRANSFORMERS_VERSION, "use_cache": True,
        "vocab_size": vocab}


def fuse_phi3(t, cfg):
    """Llama-layout tensors -> Phi-3's fused names (the same numbers, concatenated by rows)."""
    out = {}
    for k, v in t.items():
        if k.endswith("self_attn.q_proj.weight"):
            p = k[: -len("q_proj.weight")]
            out[p + "qkv_proj.weight"] = np.concatenate([v, t[p + "k_proj.weight"], t[p + "v_proj.weight"]], axis=0)
        elif k.endswith("mlp.gate_proj.weight"):
            p = k[: -len("gate_proj.weight")]
            out[p + "gate_up_proj.weight"] = np.concatenate([v, t[p + "up_proj.weight"]], axis=0)
        elif not (k.endswith("k_proj.weight") or k.endswith("v_proj.weight") or k.endswith("up_proj.weight")):
            out[k] = v
    return out


def gemma_config(vocab, bos, eos):
    """Gemma (GemmaConfig, transformers 4.51): head_dim given (24, not D/H), GeGLU MLP
    (`hidden_act` and `hidden_activation` both gelu_pytorch_tanh, so a reader of either key
    gets the tanh GELU), RMSNorm gains stored as w with the norm applying (1 + w), the
    embedding scaled by sqrt(hidden_size), tied. `tie_word_embeddings` is absent: True
    equals both GemmaConfig's and PretrainedConfig's default, so to_diff_dict drops it (as
    in the hub's gemma configs); GemmaConfig has no rope_scaling."""
    return {
        "architectures": ["GemmaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": bos, "eos_token_id": eos, "head_dim": 24, "hidden_act": "gelu_pytorch_tanh",
        "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 64, "initializer_range": 0.02,
        "intermediate_size": 96, "max_position_embeddings": 128, "model_type": "gemma",
        "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
        "pad_token_id": eos, "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION, "use_cache": True, "vocab_size": vocab}


# Gemma 2 soft caps of the tiny checkpoint: small enough that tanh is clearly nonlinear on
# these random weights (make_family_goldens.py reports the fraction of |s|/cap > 0.5).
GEMMA2_ATTN_SOFTCAP, GEMMA2_FINAL_SOFTCAP = 4.0, 2.0


def gemma2_config(vocab, bos, eos):
    """Gemma 2 (Gemma2Config, transformers 4.51): Gemma plus four norms per layer (sandwich:
    post_attention_layernorm on the attention output and post_feedforward_layernorm on the
    MLP output, before each residual add; pre_feedforward_layernorm before the MLP), scores
    scaled by query_pre_attn_scalar^-0.5 (32 here, deliberately != head_dim 24) and
    soft-capped, final logits soft-capped, a sliding window on even layers (4096: longer
    than any context here). `hidden_act` is not a Gemma2Config field; it is written as in
    the hub's gemma-2 configs (equal to hidden_activation)."""
    return {
        "architectures": ["Gemma2ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "attn_logit_softcapping": GEMMA2_ATTN_SOFTCAP, "bos_token_id": bos,
        "cache_implementation": "hybrid", "eos_token_id": eos,
        "final_logit_softcapping": GEMMA2_FINAL_SOFTCAP, "head_dim": 24,
        "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 96,
        "max_position_embeddings": 128, "model_type": "gemma2", "num_attention_heads": 4,
        "num_hidden_layers": 2, "num_key_value_heads": 2, "pad_token_id": eos,
        "query_pre_attn_scalar": 32, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
        "sliding_window": 4096, "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION, "use_cache": True, "vocab_size": vocab}


def gpt2_config(vocab, bos, eos):
    # tie_word_embeddings is absent: GPT2Config's default (True) equals PretrainedConfig's,
    # so to_diff_dict drops it (as in the hub's gpt2 config.json).
    return {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1, "bos_token_id": bos, "embd_pdrop": 0.1, "eos_token_id": eos,
        "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gpt2",
        "n_embd": 64, "n_head": 4, "n_inner": None, "n_layer": 2, "n_positions": 64,
        "reorder_and_upcast_attn": False, "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True,
        "summary_activation": None, "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True, "summary_type": "cls_index",
        "summary_use_proj": True, "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION, "use_cache": True, "vocab_size": vocab}


def gpt_neox_config(vocab, bos, eos, parallel=True, rotary_pct=0.25):
    """GPT-NeoX / Pythia (GPTNeoXConfig, transformers 4.51): LayerNorm with bias, fused
    query_key_value interleaved per head, partial rotary (the first int(head_size *
    rotary_pct) dims of each head), exact erf GELU MLP, parallel or sequential residual,
    untied embed_out. GPTNeoXConfig.__init__ also stores the aliases partial_rotary_factor
    (= rotary_pct) and rope_theta (= rotary_emb_base); they are not PretrainedConfig fields,
    so to_diff_dict writes them too. tie_word_embeddings false differs from
    PretrainedConfig's default and is written."""
    return {
        "architectures": ["GPTNeoXForCausalLM"], "attention_bias": True, "attention_dropout": 0.0,
        "bos_token_id": bos, "classifier_dropout": 0.1, "eos_token_id": eos, "hidden_act": "gelu",
        "hidden_dropout": 0.0, "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 256,
        "layer_norm_eps": 1e-05, "max_position_embeddings": 64, "model_type": "gpt_neox",
        "num_attention_heads": 4, "num_hidden_layers": 2, "partial_rotary_factor": rotary_pct,
        "rope_scaling": None, "rope_theta": 10000, "rotary_emb_base": 10000, "rotary_pct": rotary_pct,
        "tie_word_embeddings": False, "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION, "use_cache": True,
        "use_parallel_residual": parallel, "vocab_size": vocab}


def write_config(cfg, path):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------
# random weights (numpy RandomState: bit-stable across versions)
# ----------------------------------------------------------------------------
MAT_STD, NORM_STD, BIAS_STD = 0.08, 0.1, 0.1
# Query/key projections are drawn wider: with std 0.08 at hidden 64 the attention scores
# have std ~64 * 0.08^2 = 0.41 and the attention rows are nearly uniform (entropy ~0.99
# of log N); std 0.18 gives score std ~2 and clearly peaked, position-dependent rows.
QK_STD = 0.18


class Gen:
    def __init__(self, seed):
        self.rs = np.random.RandomState(seed)

    def mat(self, *shape, std=MAT_STD):
        return self.rs.normal(0.0, std, size=shape).astype(np.float32)

    def norm(self, n):
        return (1.0 + self.rs.normal(0.0, NORM_STD, size=(n,))).astype(np.float32)

    def bias(self, n):
        return self.rs.normal(0.0, BIAS_STD, size=(n,)).astype(np.float32)

    def norm_offset(self, n):
        """A Gemma norm weight w (the norm applies 1 + w): drawn around 0."""
        return self.rs.normal(0.0, NORM_STD, size=(n,)).astype(np.float32)


def llama_like_weights(cfg, seed, qkv_bias=False, lm_head=True, qk_norm=False):
    """HF tensor names -> float32 numpy arrays, generated in module order (qk_norm: Qwen3's
    per-head q_norm / k_norm gains, drawn after the layer's other attention weights)."""
    g = Gen(seed)
    D, V, I = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    H, G = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or D // H
    t = {"model.embed_tokens.weight": g.mat(V, D)}
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        t[p + "input_layernorm.weight"] = g.norm(D)
        t[p + "self_attn.q_proj.weight"] = g.mat(H * hd, D, std=QK_STD)
        t[p + "self_attn.k_proj.weight"] = g.mat(G * hd, D, std=QK_STD)
        t[p + "self_attn.v_proj.weight"] = g.mat(G * hd, D)
        if qkv_bias:
            t[p + "self_attn.q_proj.bias"] = g.bias(H * hd)
            t[p + "self_attn.k_proj.bias"] = g.bias(G * hd)
            t[p + "self_attn.v_proj.bias"] = g.bias(G * hd)
        t[p + "self_attn.o_proj.weight"] = g.mat(D, H * hd)
        if qk_norm:
            t[p + "self_attn.q_norm.weight"] = g.norm(hd)
            t[p + "self_attn.k_norm.weight"] = g.norm(hd)
        t[p + "post_attention_layernorm.weight"] = g.norm(D)
        t[p + "mlp.gate_proj.weight"] = g.mat(I, D)
        t[p + "mlp.up_proj.weight"] = g.mat(I, D)
        t[p + "mlp.down_proj.weight"] = g.mat(D, I)
    t["model.norm.weight"] = g.norm(D)
    if lm_head:
        t["lm_head.weight"] = g.mat(V, D)
    return t


def gemma_weights(cfg, seed):
    """Gemma / Gemma 2 tensors (HF names, float32), in module order: embedding; per layer
    input_layernorm, q/k/v/o (q, k at QK_STD), post_attention_layernorm,
    [Gemma 2: pre_feedforward_layernorm], gate/up/down, [Gemma 2:
    post_feedforward_layernorm]; model.norm. Norm weights normal(0, NORM_STD) (the norm
    multiplies by 1 + w). Tied: no lm_head.weight."""
    g = Gen(seed)
    D, V, I = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    H, G, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    two = cfg["model_type"] == "gemma2"
    t = {"model.embed_tokens.weight": g.mat(V, D)}
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        t[p + "input_layernorm.weight"] = g.norm_offset(D)
        t[p + "self_attn.q_proj.weight"] = g.mat(H * hd, D, std=QK_STD)
        t[p + "self_attn.k_proj.weight"] = g.mat(G * hd, D, std=QK_STD)
        t[p + "self_attn.v_proj.weight"] = g.mat(G * hd, D)
        t[p + "self_attn.o_proj.weight"] = g.mat(D, H * hd)
        t[p + "post_attention_layernorm.weight"] = g.norm_offset(D)
        if two:
            t[p + "pre_feedforward_layernorm.weight"] = g.norm_offset(D)
        t[p + "mlp.gate_proj.weight"] = g.mat(I, D)
        t[p + "mlp.up_proj.weight"] = g.mat(I, D)
        t[p + "mlp.down_proj.weight"] = g.mat(D, I)
        if two:
            t[p + "post_feedforward_layernorm.weight"] = g.norm_offset(D)
    t["model.norm.weight"] = g.norm_offset(D)
    return t


def gpt2_weights(cfg, seed):
    g = Gen(seed)
    D, V, P = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]
    I = cfg["n_inner"] or 4 * D
    t = {"transformer.wte.weight": g.mat(V, D), "transformer.wpe.weight": g.mat(P, D)}
    for l in range(cfg["n_layer"]):
        p = "transformer.h.%d." % l
        t[p + "ln_1.weight"] = g.norm(D)
        t[p + "ln_1.bias"] = g.bias(D)
        t[p + "attn.c_attn.weight"] = np.concatenate(
            [g.mat(D, D, std=QK_STD), g.mat(D, D, std=QK_STD), g.mat(D, D)], axis=1)
        t[p + "attn.c_attn.bias"] = g.bias(3 * D)
        t[p + "attn.c_proj.weight"] = g.mat(D, D)
        t[p + "attn.c_proj.bias"] = g.bias(D)
        t[p + "ln_2.weight"] = g.norm(D)
        t[p + "ln_2.bias"] = g.bias(D)
        t[p + "mlp.c_fc.weight"] = g.mat(D, I)
        t[p + "mlp.c_fc.bias"] = g.bias(I)
        t[p + "mlp.c_proj.weight"] = g.mat(I, D)
        t[p + "mlp.c_proj.bias"] = g.bias(D)
    t["transformer.ln_f.weight"] = g.norm(D)
    t["transformer.ln_f.bias"] = g.bias(D)
    return t


def gpt_neox_weights(cfg, seed, buffers=False):
    """GPT-NeoX tensors (HF names, float32, every Linear and LayerNorm with a bias), in
    module order: embed_in; per layer input_layernorm, post_attention_layernorm,
    attention.query_key_value (rows per head h: q at h*3hd, k at h*3hd+hd, v at h*3hd+2hd;
    q and k rows at QK_STD), attention.dense, mlp.dense_h_to_4h, mlp.dense_4h_to_h;
    final_layer_norm; embed_out (untied). buffers: also the non-weight buffers real Pythia
    files hold per layer (attention.bias BOOL [1, 1, P, P] lower-triangular,
    attention.masked_bias F32 [] = -1e9, attention.rotary_emb.inv_freq F32 [rot / 2]);
    returned as {name: (array, dtype)} for every tensor."""
    g = Gen(seed)
    D, V, I = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    H = cfg["num_attention_heads"]
    hd, P = D // H, cfg["max_position_embeddings"]
    rot = int(hd * cfg["rotary_pct"])
    t = {"gpt_neox.embed_in.weight": g.mat(V, D)}
    for l in range(cfg["num_hidden_layers"]):
        p = "gpt_neox.layers.%d." % l
        t[p + "input_layernorm.weight"] = g.norm(D)
        t[p + "input_layernorm.bias"] = g.bias(D)
        t[p + "post_attention_layernorm.weight"] = g.norm(D)
        t[p + "post_attention_layernorm.bias"] = g.bias(D)
        rows = []
        for _ in range(H):
            rows += [g.mat(hd, D, std=QK_STD), g.mat(hd, D, std=QK_STD), g.mat(hd, D)]
        t[p + "attention.query_key_value.weight"] = np.concatenate(rows, axis=0)
        t[p + "attention.query_key_value.bias"] = g.bias(3 * D)
        t[p + "attention.dense.weight"] = g.mat(D, D)
        t[p + "attention.dense.bias"] = g.bias(D)
        t[p + "mlp.dense_h_to_4h.weight"] = g.mat(I, D)
        t[p + "mlp.dense_h_to_4h.bias"] = g.bias(I)
        t[p + "mlp.dense_4h_to_h.weight"] = g.mat(D, I)
        t[p + "mlp.dense_4h_to_h.bias"] = g.bias(D)
    t["gpt_neox.final_layer_norm.weight"] = g.norm(D)
    t["gpt_neox.final_layer_norm.bias"] = g.bias(D)
    t["embed_out.weight"] = g.mat(V, D)
    out = {k: (v, "F32") for k, v in t.items()}
    if buffers:
        mask = np.tril(np.ones((P, P), dtype=bool)).reshape(1, 1, P, P)
        inv = (1.0 / (float(cfg["rotary_emb_base"]) ** (np.arange(0, rot, 2, dtype=np.float32) / rot))).astype(np.float32)
        for l in range(cfg["num_hidden_layers"]):
            p = "gpt_neox.layers.%d.attention." % l
            out[p + "bias"] = (mask, "BOOL")
            out[p + "masked_bias"] = (np.array(-1e9, dtype=np.float32), "F32")
            out[p + "rotary_emb.inv_freq"] = (inv, "F32")
    return out


# ----------------------------------------------------------------------------
# loading a family directory into a model dict
# ----------------------------------------------------------------------------
def load_model(d, dtype=torch.float64):
    """Reads config.json + model.safetensors of a family directory.  Weights are
    widened exactly from their stored dtype, then cast to `dtype`."""
    cfg = json.load(open(os.path.join(d, "config.json")))
    t, dts, meta = read_safetensors(os.path.join(d, "model.safetensors"))
    t = {k: v.to(dtype) for k, v in t.items()}
    mt = cfg["model_type"]
    if mt == "gpt2":
        return _load_gpt2(cfg, t, dtype)
    if mt in ("gemma", "gemma2"):
        return _load_gemma(cfg, t, dtype, dts, meta)
    if mt == "gpt_neox":
        return _load_gpt_neox(cfg, t, dtype, dts, meta)
    assert mt in ("llama", "mistral", "qwen2", "qwen3", "phi3"), mt
    if mt == "phi3":  # split the fused projections as Phi3Attention / Phi3MLP slice them
        D, H = cfg["hidden_size"], cfg["num_attention_heads"]
        G, hd, I = cfg.get("num_key_value_heads") or H, cfg.get("head_dim") or D // H, cfg["intermediate_size"]
        for l in range(cfg["num_hidden_layers"]):
            p = "model.layers.%d." % l
            qkv = t.pop(p + "self_attn.qkv_proj.weight")
            t[p + "self_attn.q_proj.weight"] = qkv[: H * hd]
            t[p + "self_attn.k_proj.weight"] = qkv[H * hd: (H + G) * hd]
            t[p + "self_attn.v_proj.weight"] = qkv[(H + G) * hd:]
            gate_up = t.pop(p + "mlp.gate_up_proj.weight")
            t[p + "mlp.gate_proj.weight"], t[p + "mlp.up_proj.weight"] = gate_up[:I], gate_up[I:]
    D, H = cfg["hidden_size"], cfg["num_attention_heads"]
    G = cfg.get("num_key_value_heads") or H
    hd = cfg.get("head_dim") or D // H
    emb = t["model.embed_tokens.weight"]
    tie = cfg.get("tie_word_embeddings", True)  # absent = PretrainedConfig default
    if tie:
        assert "lm_head.weight" not in t
        lm = emb
    else:
        lm = t["lm_head.weight"]
    layers = []
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        L = dict(in_norm=t[p + "input_layernorm.weight"],
                 wq=t[p + "self_attn.q_proj.weight"], wk=t[p + "self_attn.k_proj.weight"],
                 wv=t[p + "self_attn.v_proj.weight"], wo=t[p + "self_attn.o_proj.weight"],
                 post_norm=t[p + "post_attention_layernorm.weight"],
                 wg=t[p + "mlp.gate_proj.weight"], wu=t[p + "mlp.up_proj.weight"],
                 wd=t[p + "mlp.down_proj.weight"])
        for n in ("q", "k", "v"):
            L["b" + n] = t.get(p + "self_attn.%s_proj.bias" % n)
        L["q_norm"] = t.get(p + "self_attn.q_norm.weight")  # Qwen3, else None
        L["k_norm"] = t.get(p + "self_attn.k_norm.weight")
        layers.append(L)
    arch = dict(kind="llama", D=D, H=H, G=G, hd=hd, eps=cfg["rms_norm_eps"],
                inv_freq=rope_inv_freq(cfg, hd), vocab=cfg["vocab_size"])
    return dict(cfg=cfg, arch=arch, embed=emb, lm_head=lm, layers=layers,
                final_norm=t["model.norm.weight"], dtypes=dts, meta=meta)


def _load_gemma(cfg, t, dtype, dts, meta):
    """Gemma / Gemma 2 in the llama-like model dict. Norm gains are stored as the factor the
    norm applies, 1 + w (computed in the working dtype, as HF's `1.0 + weight.float()` in
    float32); the raw w are kept under "raw" for forward_alt. arch adds: embed_scale
    (sqrt(hidden) rounded to the working dtype, HF's torch.tensor(hidden**0.5, dtype)),
    act "gelu_tanh", attn_scale (head_dim^-0.5, Gemma 2 query_pre_attn_scalar^-0.5),
    attn_softcap / final_softcap (Gemma 2, else None), window (Gemma 2's sliding window).
    Gemma 2 layers add attn_out_norm / mlp_out_norm (post_attention_layernorm,
    post_feedforward_layernorm); post_norm is the norm before the MLP (Gemma:
    post_attention_layernorm, Gemma 2: pre_feedforward_layernorm)."""
    two = cfg["model_type"] == "gemma2"
    D, H = cfg["hidden_size"], cfg["num_attention_heads"]
    G = cfg.get("num_key_value_heads") or H
    hd = cfg.get("head_dim") or D // H
    act = cfg.get("hidden_activation") or cfg.get("hidden_act")
    assert act == "gelu_pytorch_tanh", act
    emb = t["model.embed_tokens.weight"]
    if cfg.get("tie_word_embeddings", True):
        assert "lm_head.weight" not in t
        lm = emb
    else:
        lm = t["lm_head.weight"]

    def gain(name):
        return 1.0 + t[name]

    layers = []
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        L = dict(in_norm=gain(p + "input_layernorm.weight"),
                 wq=t[p + "self_attn.q_proj.weight"], wk=t[p + "self_attn.k_proj.weight"],
                 wv=t[p + "self_attn.v_proj.weight"], wo=t[p + "self_attn.o_proj.weight"],
                 wg=t[p + "mlp.gate_proj.weight"], wu=t[p + "mlp.up_proj.weight"],
                 wd=t[p + "mlp.down_proj.weight"], bq=None, bk=None, bv=None)
        names = ["input_layernorm", "post_attention_layernorm"]
        if two:
            names += ["pre_feedforward_layernorm", "post_feedforward_layernorm"]
            L["attn_out_norm"] = gain(p + "post_attention_layernorm.weight")
            L["post_norm"] = gain(p + "pre_feedforward_layernorm.weight")
            L["mlp_out_norm"] = gain(p + "post_feedforward_layernorm.weight")
        else:
            L["post_norm"] = gain(p + "post_attention_layernorm.weight")
        L["raw"] = {n: t[p + n + ".weight"] for n in names}
        layers.append(L)
    arch = dict(kind="llama", family=cfg["model_type"], D=D, H=H, G=G, hd=hd, eps=cfg["rms_norm_eps"],
                inv_freq=rope_inv_freq(cfg, hd), vocab=cfg["vocab_size"],
                embed_scale=torch.tensor(D ** 0.5, dtype=dtype), act="gelu_tanh",
                attn_scale=(cfg["query_pre_attn_scalar"] if two else hd) ** -0.5,
                attn_softcap=cfg.get("attn_logit_softcapping") if two else None,
                final_softcap=cfg.get("final_logit_softcapping") if two else None,
                window=cfg.get("sliding_window") if two else None)
    return dict(cfg=cfg, arch=arch, embed=emb, lm_head=lm, layers=layers,
                final_norm=gain("model.norm.weight"), final_norm_raw=t["model.norm.weight"],
                dtypes=dts, meta=meta)


NEOX_BUFFERS = ("attention.bias", "attention.masked_bias", "attention.rotary_emb.inv_freq")


def _load_gpt_neox(cfg, t, dtype, dts, meta):
    """GPT-NeoX in its own model dict (arch kind "neox"). The per-layer buffers
    (attention.bias, attention.masked_bias, attention.rotary_emb.inv_freq) are ignored: the
    causal mask and the inverse frequencies come from the config. The fused
    query_key_value is kept (qkv_w [3D, D], qkv_b; forward_alt reads it) and also
    de-interleaved into wq / wk / wv [D, D] and bq / bk / bv (head h = rows h*hd.. of
    each), which forward and the DePass rules read. Keys wo (dense [D, D], [out, in]) and
    wd (dense_4h_to_h [D, I]) as for the llama-like dicts (masking a head / neuron zeroes
    their columns)."""
    D, H = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = D // H
    rot = int(hd * cfg["rotary_pct"])
    assert cfg.get("hidden_act", "gelu") == "gelu", cfg.get("hidden_act")
    assert not cfg.get("rope_scaling"), cfg.get("rope_scaling")
    assert not cfg.get("tie_word_embeddings", False)
    used = set()

    def get(name):
        used.add(name)
        return t[name]

    layers = []
    for l in range(cfg["num_hidden_layers"]):
        p = "gpt_neox.layers.%d." % l
        qkv_w, qkv_b = get(p + "attention.query_key_value.weight"), get(p + "attention.query_key_value.bias")
        w3, b3 = qkv_w.reshape(H, 3, hd, D), qkv_b.reshape(H, 3, hd)
        L = dict(ln1_w=get(p + "input_layernorm.weight"), ln1_b=get(p + "input_layernorm.bias"),
                 ln2_w=get(p + "post_attention_layernorm.weight"), ln2_b=get(p + "post_attention_layernorm.bias"),
                 qkv_w=qkv_w, qkv_b=qkv_b,
                 wq=w3[:, 0].reshape(D, D), wk=w3[:, 1].reshape(D, D), wv=w3[:, 2].reshape(D, D),
                 bq=b3[:, 0].reshape(D), bk=b3[:, 1].reshape(D), bv=b3[:, 2].reshape(D),
                 wo=get(p + "attention.dense.weight"), bo=get(p + "attention.dense.bias"),
                 w1=get(p + "mlp.dense_h_to_4h.weight"), b1=get(p + "mlp.dense_h_to_4h.bias"),
                 wd=get(p + "mlp.dense_4h_to_h.weight"), b2=get(p + "mlp.dense_4h_to_h.bias"))
        layers.append(L)
    theta = float(cfg.get("rotary_emb_base", cfg.get("rope_theta", 10000)))
    arch = dict(kind="neox", D=D, H=H, G=H, hd=hd, rot=rot, eps=cfg["layer_norm_eps"], vocab=cfg["vocab_size"],
                inv_freq=1.0 / theta ** (np.arange(0, rot, 2, dtype=np.float64) / rot),
                parallel=bool(cfg.get("use_parallel_residual", True)), act="gelu_erf")
    m = dict(cfg=cfg, arch=arch, embed=get("gpt_neox.embed_in.weight"), lm_head=get("embed_out.weight"),
             layers=layers, ln_f_w=get("gpt_neox.final_layer_norm.weight"),
             ln_f_b=get("gpt_neox.final_layer_norm.bias"), dtypes=dts, meta=meta)
    rest = set(t) - used
    assert all(any(k.endswith(b) for b in NEOX_BUFFERS) for k in rest), sorted(rest)
    return m


def _load_gpt2(cfg, t, dtype):
    pre = "transformer." if "transformer.wte.weight" in t else ""
    D, H = cfg["n_embd"], cfg["n_head"]
    layers = []
    for l in range(cfg["n_layer"]):
        p = pre + "h.%d." % l
        L = {k: t[p + k] for k in (
            "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
            "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
            "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")}
        layers.append(L)
    arch = dict(kind="gpt2", D=D, H=H, G=H, hd=D // H, eps=cfg["layer_norm_epsilon"],
                vocab=cfg["vocab_size"], n_positions=cfg["n_positions"])
    return dict(cfg=cfg, arch=arch, wte=t[pre + "wte.weight"], wpe=t[pre + "wpe.weight"],
                layers=layers, ln_f_w=t[pre + "ln_f.weight"], ln_f_b=t[pre + "ln_f.bias"])


# ----------------------------------------------------------------------------
# RoPE
# ----------------------------------------------------------------------------
def llama3_inv_freq(inv_freq, rs):
    """HF _compute_llama3_parameters, in float64.  Returns (new inv_freq, kinds) with
    kinds[i] in {"unchanged", "scaled", "smoothed"}."""
    factor = rs["factor"]
    low, high = rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    low_wl, high_wl = old / low, old / high
    out, kinds = [], []
    for f in inv_freq:
        wl = 2 * math.pi / f
        if wl < high_wl:
            out.append(f)
            kinds.append("unchanged")
        elif wl > low_wl:
            out.append(f / factor)
            kinds.append("scaled")
        else:
            s = (old / wl - low) / (high - low)
            out.append((1 - s) * f / factor + s * f)
            kinds.append("smoothed")
    return np.array(out, dtype=np.float64), kinds


def rope_inv_freq(cfg, hd):
    theta = float(cfg.get("rope_theta", 10000.0))
    inv = 1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    rs = cfg.get("rope_scaling")
    if rs:
        kind = rs.get("rope_type", rs.get("type"))
        if kind == "linear":
            # HF _compute_linear_scaling_rope_parameters: positions slowed by `factor`,
            # i.e. every inverse frequency divided by it.
            inv = inv / float(rs["factor"])
        else:
            assert kind == "llama3", kind
            inv, _ = llama3_inv_freq(inv, rs)
    return inv


def rope_cos_sin(inv_freq, n, dtype):
    ang = np.arange(n, dtype=np.float64)[:, None] * inv_freq[None, :]  # [N, hd/2]
    return torch.from_numpy(np.cos(ang)).to(dtype), torch.from_numpy(np.sin(ang)).to(dtype)


def rope_adjacent(x, cos, sin):
    """x [..., N, heads, hd]; llama2.c / Meta layout: pair i = elements (2i, 2i+1)."""
    c, s = cos[:, None, :], sin[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).reshape(x.shape)


def rope_halves(x, cos, sin):
    """x [..., N, heads, hd]; HF: x*cos + rotate_half(x)*sin, cos/sin repeated twice."""
    c = torch.cat([cos, cos], dim=-1)[:, None, :]
    s = torch.cat([sin, sin], dim=-1)[:, None, :]
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * c + rot * s


# ----------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------
def rms_scale(x, eps):
    return torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps)


def ln_scale(x, eps):
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
    return torch.rsqrt(var + eps)


def center(x):
    return x - x.mean(dim=-1, keepdim=True)


def silu(x):
    return x * torch.sigmoid(x)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_erf(x):
    """The exact GELU (GPT-NeoX's "gelu"): 0.5 x (1 + erf(x / sqrt 2))."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def plain_act(act, g):
    """The activation of a non-gated MLP: exact erf GELU (GPT-NeoX) or the tanh GELU (GPT-2)."""
    return gelu_erf(g) if act == "gelu_erf" else gelu_tanh(g)


def uses_layernorm(m):
    """GPT-2 and GPT-NeoX: LayerNorm with bias (centering, frozen scale, gain, offset)."""
    return m["arch"]["kind"] in ("gpt2", "neox")


def is_parallel(m):
    """GPT-NeoX with use_parallel_residual: the MLP of layer l reads the layer input."""
    return bool(m["arch"].get("parallel"))


def softcap(x, cap):
    """Gemma 2's soft cap, in HF's order of operations: tanh(x / cap) * cap."""
    return torch.tanh(x / cap) * cap


def cap_logits(m, z):
    """Gemma 2's final soft cap on the pre-cap logits z -> (capped logits, rho) with the
    frozen per-logit ratio rho = cap tanh(z / cap) / z (1 where z == 0): component logits
    z_m rho sum to the capped logits. Without a final cap: (z, None)."""
    cap = m["arch"].get("final_softcap")
    if not cap:
        return z, None
    y = softcap(z, cap)
    return y, torch.where(z == 0, torch.ones_like(z), y / torch.where(z == 0, torch.ones_like(z), z))


def gated_act(a, g):
    """The gate activation of a gated MLP: silu, or the tanh GELU for Gemma (GeGLU)."""
    return gelu_tanh(g) if a.get("act") == "gelu_tanh" else silu(g)


def causal_softmax(s):
    N = s.shape[-1]
    mask = torch.triu(torch.ones(N, N, dtype=torch.bool), diagonal=1)
    return torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1)


def mix_heads(A, v, H, G):
    """A [H,N,N], v [..., G, N, hd] -> [..., N, H*hd]."""
    kv = torch.arange(H) // (H // G)
    o = A @ v[..., kv, :, :]
    o = o.transpose(-3, -2)
    return o.reshape(*o.shape[:-2], -1)


def _attn_llama(h, L, a, cos, sin):
    """Real attention on normalised h [N, D] -> (A [H,N,N], v [G,N,hd])."""
    s, v = _scores_llama(h, L, a, cos, sin)
    if a.get("attn_softcap"):  # Gemma 2
        s = softcap(s, a["attn_softcap"])
    return causal_softmax(s), v


def _scores_llama(h, L, a, cos, sin):
    """The scaled attention scores before any soft cap and the causal mask -> (s [H,N,N],
    v [G,N,hd])."""
    N = h.shape[0]
    H, G, hd = a["H"], a["G"], a["hd"]
    q, k, v = h @ L["wq"].T, h @ L["wk"].T, h @ L["wv"].T
    if L["bq"] is not None:
        q, k, v = q + L["bq"], k + L["bk"], v + L["bv"]
    q, k = q.reshape(N, H, hd), k.reshape(N, G, hd)
    if L.get("q_norm") is not None:  # Qwen3: RMSNorm over each head's hd entries, before RoPE
        q = q * rms_scale(q, a["eps"]) * L["q_norm"]
        k = k * rms_scale(k, a["eps"]) * L["k_norm"]
    rope = rope_adjacent if a.get("rope_layout") == "adjacent" else rope_halves
    q = rope(q, cos, sin).permute(1, 0, 2)
    k = rope(k, cos, sin).permute(1, 0, 2)
    kv = torch.arange(H) // (H // G)
    if a.get("attn_scale") is None:
        s = q @ k[kv].transpose(1, 2) / math.sqrt(hd)
    else:  # Gemma: HF multiplies by the scale (Gemma 2: query_pre_attn_scalar^-0.5)
        s = (q @ k[kv].transpose(1, 2)) * a["attn_scale"]
    if a.get("window") is not None:  # Gemma 2's sliding window: every context here is shorter
        assert N <= a["window"], (N, a["window"])
    return s, v.reshape(N, G, hd).permute(1, 0, 2)


def softcap_inputs(m, ids):
    """What Gemma 2's soft caps see in the real float forward: the attention scores of every
    layer at the causal (query, key) pairs, flattened, and the pre-cap logits [N, V]."""
    a, eps = m["arch"], m["arch"]["eps"]
    _, hidden = forward(m, ids, return_hidden=True)
    cos, sin = rope_cos_sin(a["inv_freq"], len(ids), hidden[0].dtype)
    keep = ~torch.triu(torch.ones(len(ids), len(ids), dtype=torch.bool), diagonal=1)
    scores = []
    for l, L in enumerate(m["layers"]):
        x = hidden[2 * l]
        s, _ = _scores_llama(x * rms_scale(x, eps) * L["in_norm"], L, a, cos, sin)
        scores.append(s[:, keep].reshape(-1))
    x = hidden[-1]
    return torch.cat(scores), (x * rms_scale(x, eps) * m["final_norm"]) @ m["lm_head"].T


def _attn_gpt2(h, L, a):
    N, D, H, hd = h.shape[0], a["D"], a["H"], a["hd"]
    qkv = h @ L["attn.c_attn.weight"] + L["attn.c_attn.bias"]
    q, k, v = (qkv[:, i * D:(i + 1) * D].reshape(N, H, hd).permute(1, 0, 2) for i in range(3))
    A = causal_softmax(q @ k.transpose(1, 2) / math.sqrt(hd))
    return A, v


def _attn_neox(h, L, a, cos, sin):
    """GPT-NeoX attention on the normalised h [N, D] -> (A [H,N,N], v [H,N,hd] with its
    bias). Partial rotary: the first `rot` dims of each head's q and k rotate in the halves
    layout within those dims (pair i = (i, i + rot/2)); the rest pass through. Scores
    multiplied by head_size^-0.5 (HF's scaling; = 1/4 exactly here)."""
    N, H, hd, rot = h.shape[0], a["H"], a["hd"], a["rot"]
    q = (h @ L["wq"].T + L["bq"]).reshape(N, H, hd)
    k = (h @ L["wk"].T + L["bk"]).reshape(N, H, hd)
    v = (h @ L["wv"].T + L["bv"]).reshape(N, H, hd)
    q = torch.cat([rope_halves(q[..., :rot], cos, sin), q[..., rot:]], dim=-1).permute(1, 0, 2)
    k = torch.cat([rope_halves(k[..., :rot], cos, sin), k[..., rot:]], dim=-1).permute(1, 0, 2)
    A = causal_softmax((q @ k.transpose(1, 2)) * hd ** -0.5)
    return A, v.permute(1, 0, 2)


def _forward_neox(m, ids, hidden, attn):
    """GPT-NeoX forward (appends to hidden / attn) -> logits. Boundaries: 2l = layer input
    x; 2l+1 = x + attention output (sequential: what the MLP reads; parallel: defined so,
    the MLP reads x); 2l+2 = layer output."""
    a = m["arch"]
    N, eps = len(ids), a["eps"]
    cos, sin = rope_cos_sin(a["inv_freq"], N, m["embed"].dtype)
    x = m["embed"][torch.tensor(ids, dtype=torch.long)]
    hidden.append(x)
    for L in m["layers"]:
        h = center(x) * ln_scale(x, eps) * L["ln1_w"] + L["ln1_b"]
        A, v = _attn_neox(h, L, a, cos, sin)
        attn.append(A)
        mid = x + (mix_heads(A, v, a["H"], a["G"]) @ L["wo"].T + L["bo"])
        hidden.append(mid)
        src = x if a["parallel"] else mid
        h = center(src) * ln_scale(src, eps) * L["ln2_w"] + L["ln2_b"]
        x = mid + (gelu_erf(h @ L["w1"].T + L["b1"]) @ L["wd"].T + L["b2"])
        hidden.append(x)
    return (center(x) * ln_scale(x, eps) * m["ln_f_w"] + m["ln_f_b"]) @ m["lm_head"].T


def forward(m, ids, return_hidden=False, return_attn=False):
    a = m["arch"]
    N = len(ids)
    idx = torch.tensor(ids, dtype=torch.long)
    hidden, attn = [], []
    if a["kind"] == "neox":
        logits = _forward_neox(m, ids, hidden, attn)
    elif a["kind"] == "gpt2":
        eps = a["eps"]
        x = m["wte"][idx] + m["wpe"][:N]
        hidden.append(x)
        for L in m["layers"]:
            h = center(x) * ln_scale(x, eps) * L["ln_1.weight"] + L["ln_1.bias"]
            A, v = _attn_gpt2(h, L, a)
            attn.append(A)
            x = x + mix_heads(A, v, a["H"], a["G"]) @ L["attn.c_proj.weight"] + L["attn.c_proj.bias"]
            hidden.append(x)
            h = center(x) * ln_scale(x, eps) * L["ln_2.weight"] + L["ln_2.bias"]
            act = gelu_tanh(h @ L["mlp.c_fc.weight"] + L["mlp.c_fc.bias"])
            x = x + act @ L["mlp.c_proj.weight"] + L["mlp.c_proj.bias"]
            hidden.append(x)
        y = center(x) * ln_scale(x, eps) * m["ln_f_w"] + m["ln_f_b"]
        logits = y @ m["wte"].T
    else:
        eps = a["eps"]
        dt = m["embed"].dtype
        cos, sin = rope_cos_sin(a["inv_freq"], N, dt)
        x = m["embed"][idx]
        if a.get("embed_scale") is not None:  # Gemma: E[ids] * sqrt(hidden)
            x = x * a["embed_scale"]
        hidden.append(x)
        for L in m["layers"]:
            h = x * rms_scale(x, eps) * L["in_norm"]
            A, v = _attn_llama(h, L, a, cos, sin)
            attn.append(A)
            o = mix_heads(A, v, a["H"], a["G"]) @ L["wo"].T
            if L.get("attn_out_norm") is not None:  # Gemma 2: norm on the attention output
                o = o * rms_scale(o, eps) * L["attn_out_norm"]
            x = x + o
            hidden.append(x)
            h = x * rms_scale(x, eps) * L["post_norm"]
            act = gated_act(a, h @ L["wg"].T) * (h @ L["wu"].T)
            o = act @ L["wd"].T
            if L.get("mlp_out_norm") is not None:  # Gemma 2: norm on the MLP output
                o = o * rms_scale(o, eps) * L["mlp_out_norm"]
            x = x + o
            hidden.append(x)
        logits = (x * rms_scale(x, eps) * m["final_norm"]) @ m["lm_head"].T
        if a.get("final_softcap"):
            logits = softcap(logits, a["final_softcap"])
    out = [logits]
    if return_hidden:
        out.append(hidden)
    if return_attn:
        out.append(attn)
    return out[0] if len(out) == 1 else tuple(out)


def forward_alt(m, ids):
    """Second forward implementation, written differently on purpose: complex-number
    RoPE on (x_i, x_{i+hd/2}) pairs, per-head Python loops with repeat of kv heads,
    RMS via vector norms, torch.nn.functional.layer_norm / gelu(approximate="tanh") /
    linear for GPT-2.  Used only to cross-check `forward`."""
    F = torch.nn.functional
    a = m["arch"]
    N = len(ids)
    idx = torch.tensor(ids, dtype=torch.long)
    if a["kind"] == "neox":
        return _forward_alt_neox(m, ids)
    if a["kind"] == "gpt2":
        D, H, hd, eps = a["D"], a["H"], a["hd"], a["eps"]
        x = F.embedding(idx, m["wte"]) + F.embedding(torch.arange(N), m["wpe"])
        for L in m["layers"]:
            h = F.layer_norm(x, (D,), L["ln_1.weight"], L["ln_1.bias"], eps)
            qkv = F.linear(h, L["attn.c_attn.weight"].T, L["attn.c_attn.bias"])
            q, k, v = qkv.split(D, dim=-1)
            heads = []
            for hh in range(H):
                sl = slice(hh * hd, (hh + 1) * hd)
                s = q[:, sl] @ k[:, sl].T / math.sqrt(hd)
                s = s + torch.triu(torch.full((N, N), float("-inf"), dtype=x.dtype), 1)
                heads.append(torch.softmax(s, -1) @ v[:, sl])
            x = x + F.linear(torch.cat(heads, -1), L["attn.c_proj.weight"].T, L["attn.c_proj.bias"])
            h = F.layer_norm(x, (D,), L["ln_2.weight"], L["ln_2.bias"], eps)
            g = F.gelu(F.linear(h, L["mlp.c_fc.weight"].T, L["mlp.c_fc.bias"]), approximate="tanh")
            x = x + F.linear(g, L["mlp.c_proj.weight"].T, L["mlp.c_proj.bias"])
        return F.linear(F.layer_norm(x, (D,), m["ln_f_w"], m["ln_f_b"], a["eps"]), m["wte"])
    D, H, G, hd, eps = a["D"], a["H"], a["G"], a["hd"], a["eps"]
    cdt = torch.complex128 if m["embed"].dtype == torch.float64 else torch.complex64
    ang = torch.from_numpy(np.outer(np.arange(N, dtype=np.float64), a["inv_freq"]))
    rot = torch.polar(torch.ones_like(ang), ang).to(cdt)  # [N, hd/2]

    def rope(t):  # t [N, hd]
        z = torch.complex(t[:, :hd // 2], t[:, hd // 2:]) * rot
        return torch.cat([z.real, z.imag], -1)

    def rms(t, w):
        return t / (torch.linalg.vector_norm(t, dim=-1, keepdim=True) / math.sqrt(D)
                    ).pow(2).add(eps).sqrt() * w

    gemma = a.get("family") in ("gemma", "gemma2")
    if gemma:
        return _forward_alt_gemma(m, ids, rope, rms)
    x = F.embedding(idx, m["embed"])
    for L in m["layers"]:
        h = rms(x, L["in_norm"])
        q = F.linear(h, L["wq"], L["bq"])
        k = F.linear(h, L["wk"], L["bk"])
        v = F.linear(h, L["wv"], L["bv"])
        def head_norm(t, w):  # Qwen3's per-head RMSNorm, written with the vector norm
            return t if w is None else t / (torch.linalg.vector_norm(t, dim=-1, keepdim=True) / math.sqrt(hd)
                                             ).pow(2).add(eps).sqrt() * w

        heads = []
        for hh in range(H):
            g = hh * G // H
            qh = rope(head_norm(q[:, hh * hd:(hh + 1) * hd], L.get("q_norm")))
            kh = rope(head_norm(k[:, g * hd:(g + 1) * hd], L.get("k_norm")))
            s = qh @ kh.T / math.sqrt(hd)
            s = s + torch.triu(torch.full((N, N), float("-inf"), dtype=x.dtype), 1)
            heads.append(torch.softmax(s, -1) @ v[:, g * hd:(g + 1) * hd])
        x = x + F.linear(torch.cat(heads, -1), L["wo"])
        h = rms(x, L["post_norm"])
        x = x + F.linear(F.silu(F.linear(h, L["wg"])) * F.linear(h, L["wu"]), L["wd"])
    return F.linear(rms(x, m["final_norm"]), m["lm_head"])


def _forward_alt_neox(m, ids):
    """forward_alt for GPT-NeoX, from the raw fused query_key_value (viewed [N, H, 3 hd] and
    chunked per head, as HF does; never split into separate matrices), complex-number rotary
    on (x_i, x_{i + rot/2}) of the first rot dims, per-head loops, scores divided by
    sqrt(head_size), torch.nn.functional layer_norm / gelu (exact) / linear, and the residual
    sums in HF's order (parallel: mlp + attn + x; sequential: a = attn + x, mlp + a)."""
    F = torch.nn.functional
    a = m["arch"]
    N, D, H, hd, rot, eps = len(ids), a["D"], a["H"], a["hd"], a["rot"], a["eps"]
    cdt = torch.complex128 if m["embed"].dtype == torch.float64 else torch.complex64
    ang = torch.from_numpy(np.outer(np.arange(N, dtype=np.float64), a["inv_freq"]))
    turn = torch.polar(torch.ones_like(ang), ang).to(cdt)  # [N, rot/2]

    def rotary(t):  # t [N, hd]
        z = torch.complex(t[:, :rot // 2], t[:, rot // 2:rot]) * turn
        return torch.cat([z.real, z.imag, t[:, rot:]], -1)

    x = F.embedding(torch.tensor(ids, dtype=torch.long), m["embed"])
    mask = torch.triu(torch.full((N, N), float("-inf"), dtype=x.dtype), 1)
    for L in m["layers"]:
        h = F.layer_norm(x, (D,), L["ln1_w"], L["ln1_b"], eps)
        qkv = F.linear(h, L["qkv_w"], L["qkv_b"]).view(N, H, 3 * hd)
        heads = []
        for hh in range(H):
            q, k, v = qkv[:, hh].chunk(3, dim=-1)
            s = rotary(q) @ rotary(k).T / math.sqrt(hd) + mask
            heads.append(torch.softmax(s, -1) @ v)
        attn = F.linear(torch.cat(heads, -1), L["wo"], L["bo"])

        def mlp(t):
            return F.linear(F.gelu(F.linear(F.layer_norm(t, (D,), L["ln2_w"], L["ln2_b"], eps), L["w1"], L["b1"])),
                            L["wd"], L["b2"])

        if a["parallel"]:
            x = mlp(x) + attn + x
        else:
            r = attn + x
            x = mlp(r) + r
    return F.linear(F.layer_norm(x, (D,), m["ln_f_w"], m["ln_f_b"], eps), m["lm_head"])


def _forward_alt_gemma(m, ids, rope, rms):
    """forward_alt for Gemma / Gemma 2, from the raw checkpoint weights: every norm as
    rms(t, 1 + w) with the stored w, the embedding scale as math.sqrt(hidden) in the working
    dtype, scores divided by sqrt(head_dim) / sqrt(query_pre_attn_scalar), the soft cap as
    cap (1 - 2 / (exp(2 s / cap) + 1)), GELU through torch.nn.functional.gelu."""
    F = torch.nn.functional
    a, cfg = m["arch"], m["cfg"]
    N, D, H, G, hd = len(ids), a["D"], a["H"], a["G"], a["hd"]
    two = cfg["model_type"] == "gemma2"
    dt = m["embed"].dtype
    div = math.sqrt(cfg["query_pre_attn_scalar"] if two else hd)

    def cap(t, c):
        return c * (1.0 - 2.0 / (torch.exp(2.0 * t / c) + 1.0))

    x = F.embedding(torch.tensor(ids, dtype=torch.long), m["embed"]) * torch.tensor(math.sqrt(D), dtype=dt)
    for L in m["layers"]:
        w = L["raw"]
        h = rms(x, 1.0 + w["input_layernorm"])
        q, k, v = F.linear(h, L["wq"]), F.linear(h, L["wk"]), F.linear(h, L["wv"])
        heads = []
        for hh in range(H):
            g = hh * G // H
            s = rope(q[:, hh * hd:(hh + 1) * hd]) @ rope(k[:, g * hd:(g + 1) * hd]).T / div
            if two:
                s = cap(s, cfg["attn_logit_softcapping"])
            s = s + torch.triu(torch.full((N, N), float("-inf"), dtype=x.dtype), 1)
            heads.append(torch.softmax(s, -1) @ v[:, g * hd:(g + 1) * hd])
        o = F.linear(torch.cat(heads, -1), L["wo"])
        if two:
            x = x + rms(o, 1.0 + w["post_attention_layernorm"])
            h = rms(x, 1.0 + w["pre_feedforward_layernorm"])
        else:
            x = x + o
            h = rms(x, 1.0 + w["post_attention_layernorm"])
        o = F.linear(F.gelu(F.linear(h, L["wg"]), approximate="tanh") * F.linear(h, L["wu"]), L["wd"])
        x = x + (rms(o, 1.0 + w["post_feedforward_layernorm"]) if two else o)
    logits = F.linear(rms(x, 1.0 + m["final_norm_raw"]), m["lm_head"])
    return cap(logits, cfg["final_logit_softcapping"]) if two else logits


# ----------------------------------------------------------------------------
# DePass (token level, float64)
# ----------------------------------------------------------------------------
def split_softmax(gm, temperature, bos_sink, bias_idx):
    """gm [M, N, I] -> weights [M, N, I] summing to 1 over M.  Eligible: g_m != 0
    exactly; with bos_sink, component 0 is not eligible at positions > 0.  A neuron with
    no eligible component goes wholly to the bias component."""
    M, N, I = gm.shape
    elig = gm != 0
    if bos_sink and N > 1:
        elig[0, 1:, :] = False
    z = torch.where(elig, gm / temperature, torch.tensor(float("-inf"), dtype=gm.dtype))
    zmax = z.max(dim=0, keepdim=True).values
    zmax = torch.where(torch.isfinite(zmax), zmax, torch.zeros_like(zmax))
    e = torch.where(elig, torch.exp(z - zmax), torch.zeros_like(gm))
    den = e.sum(dim=0, keepdim=True)
    w = e / torch.where(den > 0, den, torch.ones_like(den))
    none = ~elig.any(dim=0)
    w[bias_idx] = torch.where(none, torch.ones_like(w[bias_idx]), w[bias_idx])
    return w


def initial_components(m, ids):
    """-> (x, C, names): token components at their own position; GPT-2 adds a
    position component (wpe, all positions); last = bias component (zeros)."""
    a = m["arch"]
    N = len(ids)
    idx = torch.tensor(ids, dtype=torch.long)
    if a["kind"] == "gpt2":
        tok = m["wte"][idx]
        pos = m["wpe"][:N]
        C = torch.zeros(N + 2, N, a["D"], dtype=tok.dtype)
        C[torch.arange(N), torch.arange(N)] = tok
        C[N] = pos
        x = tok + pos
        names = ["tok%d" % i for i in range(N)] + ["position", "bias"]
    else:
        tok = embed(m, ids)  # Gemma: the scaled rows E[id] * sqrt(hidden)
        C = torch.zeros(N + 1, N, a["D"], dtype=tok.dtype)
        C[torch.arange(N), torch.arange(N)] = tok
        x = tok
        names = ["tok%d" % i for i in range(N)] + ["bias"]
    return x, C, names


def depass(m, ids, temperature=0.1, bos_sink=True):
    """Vectorised token-level DePass.  Returns (comp_logits [M, N, V], logits [N, V],
    names, info with the relative invariant error at every block boundary)."""
    a = m["arch"]
    N = len(ids)
    eps = a["eps"]
    H, G, hd = a["H"], a["G"], a["hd"]
    x, C, names = initial_components(m, ids)
    M = C.shape[0]
    B = M - 1
    errs = []

    def err():
        errs.append(((C.sum(0) - x).abs().max() / x.abs().max()).item())

    if a["kind"] == "neox":
        comp, logits, errs = _depass_neox(m, ids, x, C, temperature, bos_sink)
        lerr = ((comp.sum(0) - logits).abs().max() / logits.abs().max()).item()
        return comp, logits, names, dict(state_errs=errs, max_rel_state_err=max(errs),
                                         max_rel_logit_err=lerr)
    err()
    if a["kind"] == "gpt2":
        for L in m["layers"]:
            # attention: frozen LayerNorm (centre each component, real scale), + b for bias
            r = ln_scale(x, eps)
            h = center(x) * r * L["ln_1.weight"] + L["ln_1.bias"]
            A, v = _attn_gpt2(h, L, a)
            x = x + mix_heads(A, v, H, G) @ L["attn.c_proj.weight"] + L["attn.c_proj.bias"]
            Cn = center(C) * r * L["ln_1.weight"]
            Cn[B] = Cn[B] + L["ln_1.bias"]
            Wv = L["attn.c_attn.weight"][:, 2 * a["D"]:]
            Vm = Cn @ Wv
            Vm[B] = Vm[B] + L["attn.c_attn.bias"][2 * a["D"]:]
            Vm = Vm.reshape(M, N, H, hd).permute(0, 2, 1, 3)
            C = C + mix_heads(A, Vm, H, G) @ L["attn.c_proj.weight"]
            C[B] = C[B] + L["attn.c_proj.bias"]
            err()
            # MLP
            r = ln_scale(x, eps)
            h = center(x) * r * L["ln_2.weight"] + L["ln_2.bias"]
            act = gelu_tanh(h @ L["mlp.c_fc.weight"] + L["mlp.c_fc.bias"])
            x = x + act @ L["mlp.c_proj.weight"] + L["mlp.c_proj.bias"]
            Cn = center(C) * r * L["ln_2.weight"]
            Cn[B] = Cn[B] + L["ln_2.bias"]
            gm = Cn @ L["mlp.c_fc.weight"]
            gm[B] = gm[B] + L["mlp.c_fc.bias"]
            w = split_softmax(gm, temperature, bos_sink, B)
            C = C + (w * act) @ L["mlp.c_proj.weight"]
            C[B] = C[B] + L["mlp.c_proj.bias"]
            err()
        r = ln_scale(x, eps)
        logits = (center(x) * r * m["ln_f_w"] + m["ln_f_b"]) @ m["wte"].T
        Cn = center(C) * r * m["ln_f_w"]
        Cn[B] = Cn[B] + m["ln_f_b"]
        comp = Cn @ m["wte"].T
    else:
        cos, sin = rope_cos_sin(a["inv_freq"], N, x.dtype)
        for L in m["layers"]:
            r = rms_scale(x, eps)
            h = x * r * L["in_norm"]
            A, v = _attn_llama(h, L, a, cos, sin)
            o = mix_heads(A, v, H, G) @ L["wo"].T
            Vm = (C * r * L["in_norm"]) @ L["wv"].T
            if L["bv"] is not None:
                Vm[B] = Vm[B] + L["bv"]
            Vm = Vm.reshape(M, N, G, hd).permute(0, 2, 1, 3)
            dC = mix_heads(A, Vm, H, G) @ L["wo"].T
            if L.get("attn_out_norm") is not None:  # Gemma 2: the output norm, frozen
                ro = rms_scale(o, eps)
                o, dC = o * ro * L["attn_out_norm"], dC * ro * L["attn_out_norm"]
            x = x + o
            C = C + dC
            err()
            r = rms_scale(x, eps)
            h = x * r * L["post_norm"]
            act = gated_act(a, h @ L["wg"].T) * (h @ L["wu"].T)
            o = act @ L["wd"].T
            gm = (C * r * L["post_norm"]) @ L["wg"].T
            w = split_softmax(gm, temperature, bos_sink, B)
            dC = (w * act) @ L["wd"].T
            if L.get("mlp_out_norm") is not None:
                ro = rms_scale(o, eps)
                o, dC = o * ro * L["mlp_out_norm"], dC * ro * L["mlp_out_norm"]
            x = x + o
            C = C + dC
            err()
        r = rms_scale(x, eps)
        logits = (x * r * m["final_norm"]) @ m["lm_head"].T
        comp = (C * r * m["final_norm"]) @ m["lm_head"].T
        logits, rho = cap_logits(m, logits)
        if rho is not None:  # Gemma 2: the final soft cap frozen per logit
            comp = comp * rho
    lerr = ((comp.sum(0) - logits).abs().max() / logits.abs().max()).item()
    return comp, logits, names, dict(state_errs=errs, max_rel_state_err=max(errs),
                                     max_rel_logit_err=lerr)


def _depass_neox(m, ids, x, C, temperature, bos_sink):
    """Token-level DePass for GPT-NeoX (vectorised). LayerNorms frozen as GPT-2's (centre
    each component, the real row's scale, gain; the LayerNorm bias to the bias component);
    attention: values norm(C) Wv^T (+ bv for the bias component) mixed with the real A per
    head, then dense (its bias to the bias component); q/k biases and the partial rotary
    act only through A. MLP: gate parts g_m = norm(C_m) W1^T (+ b1 for the bias
    component), split_softmax, neuron values gelu_erf(G) of the real gate; b2 to the bias
    component. Parallel residual: both updates are computed from the components at the
    layer input and both added. -> (comp_logits [M, N, V], logits [N, V], relative
    errors at every boundary)."""
    a = m["arch"]
    N, eps, H, hd = len(ids), a["eps"], a["H"], a["hd"]
    M = C.shape[0]
    B = M - 1
    cos, sin = rope_cos_sin(a["inv_freq"], N, x.dtype)
    errs = [((C.sum(0) - x).abs().max() / x.abs().max()).item()]
    for L in m["layers"]:
        x_in, C_in = x, C
        r = ln_scale(x_in, eps)
        A, v = _attn_neox(center(x_in) * r * L["ln1_w"] + L["ln1_b"], L, a, cos, sin)
        x = x_in + (mix_heads(A, v, H, H) @ L["wo"].T + L["bo"])
        Cn = center(C_in) * r * L["ln1_w"]
        Cn[B] = Cn[B] + L["ln1_b"]
        Vm = Cn @ L["wv"].T
        Vm[B] = Vm[B] + L["bv"]
        dC = mix_heads(A, Vm.reshape(M, N, H, hd).permute(0, 2, 1, 3), H, H) @ L["wo"].T
        dC[B] = dC[B] + L["bo"]
        C = C_in + dC
        errs.append(((C.sum(0) - x).abs().max() / x.abs().max()).item())
        sx, sC = (x_in, C_in) if a["parallel"] else (x, C)
        r = ln_scale(sx, eps)
        act = gelu_erf((center(sx) * r * L["ln2_w"] + L["ln2_b"]) @ L["w1"].T + L["b1"])
        x = x + (act @ L["wd"].T + L["b2"])
        Cn = center(sC) * r * L["ln2_w"]
        Cn[B] = Cn[B] + L["ln2_b"]
        gm = Cn @ L["w1"].T
        gm[B] = gm[B] + L["b1"]
        w = split_softmax(gm, temperature, bos_sink, B)
        C = C + (w * act) @ L["wd"].T
        C[B] = C[B] + L["b2"]
        errs.append(((C.sum(0) - x).abs().max() / x.abs().max()).item())
    r = ln_scale(x, eps)
    logits = (center(x) * r * m["ln_f_w"] + m["ln_f_b"]) @ m["lm_head"].T
    Cn = center(C) * r * m["ln_f_w"]
    Cn[B] = Cn[B] + m["ln_f_b"]
    return Cn @ m["lm_head"].T, logits, errs


def _depass_naive_neox(m, ids, temperature, bos_sink):
    """Loop implementation of _depass_neox: one component at a time, each head's values from
    its own rows of the raw fused query_key_value (h*3hd+2hd ..) and through its own columns
    of dense before mixing with A, the LayerNorm written out with mean and scale per row,
    the neuron split per (position, neuron) with math.exp, the parallel residual as
    'every update from the saved layer-input list'."""
    a = m["arch"]
    N, eps, D, H, hd = len(ids), a["eps"], a["D"], a["H"], a["hd"]
    x, C0, _ = initial_components(m, ids)
    comps = [C0[i].clone() for i in range(C0.shape[0])]
    M = len(comps)
    B = M - 1
    cos, sin = rope_cos_sin(a["inv_freq"], N, x.dtype)

    def scale(t):  # 1 / sqrt(var + eps) per row, from the real state
        mu = t.mean(-1, keepdim=True)
        return 1.0 / torch.sqrt(((t - mu) * (t - mu)).mean(-1, keepdim=True) + eps)

    def ln_part(c, r, g, b, is_bias):
        y = (c - c.mean(-1, keepdim=True)) * r * g
        return y + b if is_bias else y

    for L in m["layers"]:
        ins = [c.clone() for c in comps]
        r1 = scale(x)
        A, _ = _attn_neox(ln_part(x, r1, L["ln1_w"], L["ln1_b"], True), L, a, cos, sin)
        adds = []
        for i, c in enumerate(ins):
            hn = ln_part(c, r1, L["ln1_w"], L["ln1_b"], i == B)
            add = torch.zeros(N, D, dtype=x.dtype)
            for hh in range(H):
                rows = slice(hh * 3 * hd + 2 * hd, hh * 3 * hd + 3 * hd)
                vh = hn @ L["qkv_w"][rows].T
                if i == B:
                    vh = vh + L["qkv_b"][rows]
                add = add + A[hh] @ (vh @ L["wo"][:, hh * hd:(hh + 1) * hd].T)
            if i == B:
                add = add + L["bo"]
            adds.append(add)
        x_in = x
        x = x + sum(adds)
        comps = [c + d for c, d in zip(ins, adds)]
        src_x, src = (x_in, ins) if a["parallel"] else (x, comps)
        r2 = scale(src_x)
        act = gelu_erf(ln_part(src_x, r2, L["ln2_w"], L["ln2_b"], True) @ L["w1"].T + L["b1"])
        gms = []
        for i, c in enumerate(src):
            g = ln_part(c, r2, L["ln2_w"], L["ln2_b"], i == B) @ L["w1"].T
            gms.append((g + L["b1"] if i == B else g).tolist())
        av = act.tolist()
        I = len(av[0])
        coef = [[[0.0] * I for _ in range(N)] for _ in range(M)]
        for p in range(N):
            for k in range(I):
                el = [i for i in range(M) if gms[i][p][k] != 0.0 and not (bos_sink and i == 0 and p > 0)]
                if not el:
                    coef[B][p][k] = av[p][k]
                    continue
                top = max(gms[i][p][k] for i in el)
                ex = {i: math.exp((gms[i][p][k] - top) / temperature) for i in el}
                tot = sum(ex.values())
                for i, e in ex.items():
                    coef[i][p][k] = e / tot * av[p][k]
        new = []
        for i, c in enumerate(comps):
            d = torch.tensor(coef[i], dtype=x.dtype) @ L["wd"].T
            new.append(c + d + (L["b2"] if i == B else 0))
        comps = new
        x = x + act @ L["wd"].T + L["b2"]
    r = scale(x)
    return torch.stack([ln_part(c, r, m["ln_f_w"], m["ln_f_b"], i == B) @ m["lm_head"].T
                        for i, c in enumerate(comps)])


def depass_naive(m, ids, temperature=0.1, bos_sink=True):
    """Loop-based second implementation: one component at a time, each head through its
    own slice of the output projection before mixing, neuron weights computed per
    (position, neuron) with math.exp.  Returns comp_logits [M, N, V]."""
    a = m["arch"]
    if a["kind"] == "neox":
        return _depass_naive_neox(m, ids, temperature, bos_sink)
    N = len(ids)
    eps = a["eps"]
    D, H, G, hd = a["D"], a["H"], a["G"], a["hd"]
    x, C0, names = initial_components(m, ids)
    comps = [C0[i].clone() for i in range(C0.shape[0])]
    M = len(comps)
    B = M - 1
    gpt2 = a["kind"] == "gpt2"
    if not gpt2:
        cos, sin = rope_cos_sin(a["inv_freq"], N, x.dtype)

    def norm(t, r, w, b, is_bias):
        if gpt2:
            y = (t - t.mean(-1, keepdim=True)) * r * w
            return y + b if is_bias else y
        return t * r * w

    def split(gm_list, act, W2):  # gm_list: M tensors [N, I]; W2: [I, D] (input-major)
        I = act.shape[1]
        outs = [torch.zeros(N, D, dtype=x.dtype) for _ in range(M)]
        for i in range(N):
            for k in range(I):
                el = [mm for mm in range(M) if gm_list[mm][i, k].item() != 0.0
                      and not (bos_sink and mm == 0 and i > 0)]
                if not el:
                    wts = {B: 1.0}
                else:
                    zs = [gm_list[mm][i, k].item() / temperature for mm in el]
                    zmax = max(zs)
                    es = [math.exp(z - zmax) for z in zs]
                    s = sum(es)
                    wts = {mm: e / s for mm, e in zip(el, es)}
                for mm, wt in wts.items():
                    outs[mm][i] += (wt * act[i, k].item()) * W2[k]
        return outs

    for L in m["layers"]:
        if gpt2:
            r = ln_scale(x, eps)
            h = center(x) * r * L["ln_1.weight"] + L["ln_1.bias"]
            A, v = _attn_gpt2(h, L, a)
            x = x + mix_heads(A, v, H, G) @ L["attn.c_proj.weight"] + L["attn.c_proj.bias"]
            Wv, bv = L["attn.c_attn.weight"][:, 2 * D:], L["attn.c_attn.bias"][2 * D:]
            Wo, bo = L["attn.c_proj.weight"], L["attn.c_proj.bias"]  # [in, out]
            g1, b1 = L["ln_1.weight"], L["ln_1.bias"]
        else:
            r = rms_scale(x, eps)
            h = x * r * L["in_norm"]
            A, v = _attn_llama(h, L, a, cos, sin)
            o = mix_heads(A, v, H, G) @ L["wo"].T
            post = None
            if L.get("attn_out_norm") is not None:  # Gemma 2: frozen post-attention norm
                post = rms_scale(o, eps) * L["attn_out_norm"]
                o = o * post
            x = x + o
            Wv, bv = L["wv"].T, L["bv"]
            Wo, bo = L["wo"].T, None
            g1, b1 = L["in_norm"], None
        for mm in range(M):
            hn = norm(comps[mm], r, g1, b1, mm == B)
            vm = hn @ Wv
            if mm == B and bv is not None:
                vm = vm + bv
            add = torch.zeros(N, D, dtype=x.dtype)
            for hh in range(H):
                g = hh // (H // G)
                proj = vm[:, g * hd:(g + 1) * hd] @ Wo[hh * hd:(hh + 1) * hd, :]  # [N, D]
                add = add + A[hh] @ proj
            if mm == B and bo is not None:
                add = add + bo
            if not gpt2 and post is not None:
                add = add * post
            comps[mm] = comps[mm] + add
        if gpt2:
            r = ln_scale(x, eps)
            h = center(x) * r * L["ln_2.weight"] + L["ln_2.bias"]
            act = gelu_tanh(h @ L["mlp.c_fc.weight"] + L["mlp.c_fc.bias"])
            x = x + act @ L["mlp.c_proj.weight"] + L["mlp.c_proj.bias"]
            W1, bf, W2, bp = (L["mlp.c_fc.weight"], L["mlp.c_fc.bias"], L["mlp.c_proj.weight"],
                              L["mlp.c_proj.bias"])
            g2, b2 = L["ln_2.weight"], L["ln_2.bias"]
        else:
            r = rms_scale(x, eps)
            h = x * r * L["post_norm"]
            g_in = h @ L["wg"].T
            act = (gelu_tanh(g_in) if a.get("act") == "gelu_tanh" else silu(g_in)) * (h @ L["wu"].T)
            o = act @ L["wd"].T
            post = None
            if L.get("mlp_out_norm") is not None:
                post = rms_scale(o, eps) * L["mlp_out_norm"]
                o = o * post
            x = x + o
            W1, bf, W2, bp = L["wg"].T, None, L["wd"].T, None
            g2, b2 = L["post_norm"], None
        gms = []
        for mm in range(M):
            gmm = norm(comps[mm], r, g2, b2, mm == B) @ W1
            if mm == B and bf is not None:
                gmm = gmm + bf
            gms.append(gmm)
        outs = split(gms, act, W2)
        for mm in range(M):
            comps[mm] = comps[mm] + (outs[mm] * post if not gpt2 and post is not None else outs[mm])
            if mm == B and bp is not None:
                comps[mm] = comps[mm] + bp
    if gpt2:
        r = ln_scale(x, eps)
        res = [norm(c, r, m["ln_f_w"], m["ln_f_b"], i == B) @ m["wte"].T
               for i, c in enumerate(comps)]
    else:
        r = rms_scale(x, eps)
        res = [(c * r * m["final_norm"]) @ m["lm_head"].T for c in comps]
        cap = a.get("final_softcap")
        if cap:  # Gemma 2: each logit's ratio cap tanh(z / cap) / z, z the real pre-cap logit
            z = (x * r * m["final_norm"]) @ m["lm_head"].T
            ratio = torch.tensor([[cap * math.tanh(v / cap) / v if v != 0 else 1.0 for v in row]
                                  for row in z.tolist()], dtype=z.dtype)
            res = [t * ratio for t in res]
    return torch.stack(res)


# ----------------------------------------------------------------------------
# DePass with every option (float64): initialisations, start and end boundaries,
# split rules, temperature, attention sink, chunked runs
# ----------------------------------------------------------------------------
# Written from docs/depass-method.md (sections 1-6) and the method choices the README
# documents (proportional cancel guard, chunk remainder and chunk residual, learned
# positions as their own component, sink on token-level runs only).
#
# Boundaries are numbered by the blocks in front of them: before the attention of layer
# l = 2l, before its MLP = 2l + 1, the output (final norm and unembedding follow) = 2L.
#
# A pass carries C [M, N, D] with one bias component (index `bias`) that holds every
# bias and norm offset, and per layer a list of sinks, pairs (component c, position j):
# component c drives no MLP neuron of that layer at positions > j (the BOS sink is
# (member 0, position 0); attention-derived sinks below add token members at their own
# positions).
#
# Attention-derived sinks (sink_ratio > 0, token-level runs only): position j is a sink
# of layer l when the later queries i (j < i < N) attend to it, averaged over them and
# over all H query heads of layer l's real attention, at least sink_ratio times as much
# as uniform attention would: r_j = mean_i (i + 1) mean_h A_h[i, j] >= sink_ratio
# ((i + 1) A[i, j] = 1 for uniform attention, so r_j = 1 there). At least
# SINK_MIN_QUERIES later queries are required, so that a few rows do not decide. A
# parallel-residual model uses the same layer's attention too. Layer l's sink set is
# {0} (bos_sink) united with those; the sink is token j's member, in a chunked run only
# in the pass holding it, never the bias, remainder or positions component.
#
# Initialisations (what the components are at the start, section 6). The unit-level ones
# (module, heads, neurons) start right after their block and split its output so that a
# unit's component is exactly what masking that unit removes from the state (section 7:
# a head is masked by zeroing its columns of Wo, a neuron by zeroing its column of W2, a
# module by dropping its output); what no unit's mask removes -- the output-projection
# bias for heads, the down-projection bias for neurons -- starts in the bias component.
#   tokens(start):   member m = row m of the state at `start`, at position m only. At the
#                    embeddings of a model with learned positions, member m is the token
#                    embedding alone and one more member "positions" holds wpe[0..N-1].
#   module(l, site): [state before the block, the block's whole output].
#   heads(l):        [state before the attention, head 0, ..., head H-1], head h =
#                    (A_h v_h) Wo[:, h-th slice]^T with v including its bias; bias = bo.
#   neurons(l, sel): [state before the MLP, a[:,k] W2[:,k] for k in sel (in order), the
#                    unselected neurons' sum ("other neurons")]; bias = b2. sel empty = all.
#   With an output norm (Gemma 2's post_attention / post_feedforward norms) each head's,
#   neuron's and the bias's part is multiplied by the frozen r_out * gain of the real
#   output (what masking the unit removes is then no longer exactly its component: the
#   norm's scale would change).
#   subspace(start, bases | projections): member s = x P_s (x a row vector; P_s the
#                    orthogonal projection B (B^T B)^-1 B^T onto span(B_s), or the given
#                    D x D matrix), then the remainder x - sum_s x P_s.
# Every other start: bias component zero.
#
# Chunked runs (chunk_size c > 0): members go through in groups of c (in member order);
# each pass carries [its members..., remainder, bias] with remainder = state - bias_start
# - sum(its members), so that every pass is lossless; a sink (token-level) applies only
# in the pass that holds its token's member. Merged result: every member from its own
# pass, the bias component from the first pass, and a "chunk residual" = state - bias -
# sum of all members (at the output: of the final-normed state and components).

def n_layers(m):
    return len(m["layers"])


def embed(m, ids):
    """The embedding output x0 (Gemma: the rows scaled by sqrt(hidden))."""
    idx = torch.tensor(ids, dtype=torch.long)
    if m["arch"]["kind"] == "gpt2":
        return m["wte"][idx] + m["wpe"][:len(ids)]
    x = m["embed"][idx]
    return x * m["arch"]["embed_scale"] if m["arch"].get("embed_scale") is not None else x


def layer_view(m, l):
    """Family-independent view of layer l: norms (gain, offset or None), value / output /
    MLP weights input-major ([in, out]: y = x W), biases or None, MLP kind (W3 None: plain
    GELU; else the gate activation `act`, silu or gelu_tanh), and the gains of the norms on
    the blocks' outputs (Gemma 2's post_attention / post_feedforward norms; else None)."""
    L = m["layers"][l]
    if m["arch"]["kind"] == "gpt2":
        D = m["arch"]["D"]
        return dict(norm1=(L["ln_1.weight"], L["ln_1.bias"]), Wv=L["attn.c_attn.weight"][:, 2 * D:],
                    bv=L["attn.c_attn.bias"][2 * D:], Wo=L["attn.c_proj.weight"], bo=L["attn.c_proj.bias"],
                    norm2=(L["ln_2.weight"], L["ln_2.bias"]), W1=L["mlp.c_fc.weight"], b1=L["mlp.c_fc.bias"],
                    W3=None, W2=L["mlp.c_proj.weight"], b2=L["mlp.c_proj.bias"], out1=None, out2=None,
                    act="gelu_tanh")
    if m["arch"]["kind"] == "neox":
        return dict(norm1=(L["ln1_w"], L["ln1_b"]), Wv=L["wv"].T, bv=L["bv"], Wo=L["wo"].T, bo=L["bo"],
                    norm2=(L["ln2_w"], L["ln2_b"]), W1=L["w1"].T, b1=L["b1"], W3=None, W2=L["wd"].T,
                    b2=L["b2"], out1=None, out2=None, act="gelu_erf")
    return dict(norm1=(L["in_norm"], None), Wv=L["wv"].T, bv=L["bv"], Wo=L["wo"].T, bo=None,
                norm2=(L["post_norm"], None), W1=L["wg"].T, b1=None, W3=L["wu"].T, W2=L["wd"].T, b2=None,
                out1=L.get("attn_out_norm"), out2=L.get("mlp_out_norm"), act=m["arch"].get("act", "silu"))


def final_view(m):
    if m["arch"]["kind"] == "gpt2":
        return (m["ln_f_w"], m["ln_f_b"]), m["wte"]
    if m["arch"]["kind"] == "neox":
        return (m["ln_f_w"], m["ln_f_b"]), m["lm_head"]
    return (m["final_norm"], None), m["lm_head"]


def norm_scale(m, x):
    """The frozen per-row scale r of the family's norm, from the real state x."""
    eps = m["arch"]["eps"]
    return ln_scale(x, eps) if uses_layernorm(m) else rms_scale(x, eps)


def norm_linear(m, t, r, gain):
    """The linear part of the norm with frozen scale r: LayerNorm centres each row of t
    first (centering is linear); the offset is not applied here."""
    return (center(t) if uses_layernorm(m) else t) * r * gain


def attention_real(m, l, x):
    """The real attention block of layer l on x: frozen scale r, probabilities A, the
    mixed heads [N, H*hd] (values with their bias), the block output (with bo)."""
    a, V = m["arch"], layer_view(m, l)
    (gain, off), r = V["norm1"], norm_scale(m, x)
    h = norm_linear(m, x, r, gain) + (off if off is not None else 0)
    if a["kind"] == "gpt2":
        A, v = _attn_gpt2(h, m["layers"][l], a)
    elif a["kind"] == "neox":
        cos, sin = rope_cos_sin(a["inv_freq"], x.shape[0], x.dtype)
        A, v = _attn_neox(h, m["layers"][l], a, cos, sin)
    else:
        cos, sin = rope_cos_sin(a["inv_freq"], x.shape[0], x.dtype)
        A, v = _attn_llama(h, m["layers"][l], a, cos, sin)
    mixed = mix_heads(A, v, a["H"], a["G"])
    out = mixed @ V["Wo"] + (V["bo"] if V["bo"] is not None else 0)
    out, r_out = out_norm(m, out, V["out1"])
    return dict(r=r, A=A, mixed=mixed, out=out, r_out=r_out)


def out_norm(m, t, gain):
    """Gemma 2's norm on a block's output (its scale r_out from the real output t) ->
    (normed t, r_out); without one (t, None)."""
    if gain is None:
        return t, None
    r_out = rms_scale(t, m["arch"]["eps"])
    return t * r_out * gain, r_out


def mlp_real(m, l, x):
    """The real MLP block of layer l on x: frozen scale r, neuron values act [N, I], output."""
    V = layer_view(m, l)
    (gain, off), r = V["norm2"], norm_scale(m, x)
    h = norm_linear(m, x, r, gain) + (off if off is not None else 0)
    g = h @ V["W1"] + (V["b1"] if V["b1"] is not None else 0)
    act = plain_act(V["act"], g) if V["W3"] is None else gated_act(m["arch"], g) * (h @ V["W3"])
    out = act @ V["W2"] + (V["b2"] if V["b2"] is not None else 0)
    out, r_out = out_norm(m, out, V["out2"])
    return dict(r=r, act=act, out=out, r_out=r_out)


def add_update(C, delta, bias, b_out, gain, r_out):
    """C + the block's update delta [M, N, D], its output bias to the bias component; with
    an output norm (Gemma 2) the update goes through it frozen: delta * r_out * gain, r_out
    the real output's scale, so the updates still sum to the real normed output."""
    if gain is not None:
        if b_out is not None:
            delta[bias] = delta[bias] + b_out
        return C + delta * r_out * gain
    C = C + delta
    if b_out is not None:
        C[bias] = C[bias] + b_out
    return C


def real_block(m, b, x, x_in=None):
    """Block b on the state x at boundary b. In a parallel-residual model the MLP (odd b)
    reads the layer input x_in (the state at boundary b - 1), which must be given."""
    if b % 2 == 0:
        return attention_real(m, b // 2, x)
    if is_parallel(m):
        assert x_in is not None
        return mlp_real(m, b // 2, x_in)
    return mlp_real(m, b // 2, x)


def advance(m, x, b_from, b_to, x_in=None):
    """The real state from boundary b_from to b_to -> (state at b_to, the layer input: the
    state at the last even boundary <= b_to). A parallel model starting at an odd b_from
    needs x_in."""
    for b in range(b_from, b_to):
        if b % 2 == 0:
            x_in = x
        x = x + real_block(m, b, x, x_in)["out"]
    if b_to % 2 == 0:
        x_in = x
    return x, x_in


def split_weights(gm, split, temperature, sinks, bias):
    """gm [M, N, I] gate contributions -> weights [M, N, I] summing to 1 over M.
    Eligible: g_m != 0 exactly, and a sink component c of sinks [(c, j), ...] only at
    positions <= j. Rules:
    softmax(g_m / T); argmax (ties -> lowest index); proportional g_m / sum g (softmax
    where |sum g| <= CANCEL_RATIO * sum |g|). A neuron with no eligible component goes
    wholly to the bias component."""
    M, N, I = gm.shape
    elig = gm != 0
    for c, j in sinks:
        elig[c, j + 1:, :] = False
    z = torch.where(elig, gm / temperature, torch.tensor(float("-inf"), dtype=gm.dtype))
    zmax = z.max(dim=0, keepdim=True).values
    zmax = torch.where(torch.isfinite(zmax), zmax, torch.zeros_like(zmax))
    e = torch.where(elig, torch.exp(z - zmax), torch.zeros_like(gm))
    den = e.sum(dim=0, keepdim=True)
    soft = e / torch.where(den > 0, den, torch.ones_like(den))
    if split == "softmax":
        w = soft
    elif split == "argmax":
        g = torch.where(elig, gm, torch.tensor(float("-inf"), dtype=gm.dtype))
        hit = elig & (g == g.max(dim=0, keepdim=True).values)
        idx = torch.arange(M).view(M, 1, 1).expand(M, N, I)
        first = torch.where(hit, idx, torch.full_like(idx, M)).min(dim=0, keepdim=True).values
        w = (idx == first).to(gm.dtype)
    elif split == "proportional":
        ge = torch.where(elig, gm, torch.zeros_like(gm))
        s, mag = ge.sum(dim=0, keepdim=True), ge.abs().sum(dim=0, keepdim=True)
        ok = s.abs() > CANCEL_RATIO * mag
        w = torch.where(ok, ge / torch.where(ok, s, torch.ones_like(s)), soft)
    else:
        raise ValueError(split)
    w = torch.where(elig, w, torch.zeros_like(w))
    w[bias] = torch.where(~elig.any(dim=0), torch.ones_like(w[bias]), w[bias])
    return w


# Proportional split: below this |sum g| / sum |g| the split falls back to softmax
# (README "Method choices": the signed shares would exceed 1000 and amplify rounding).
CANCEL_RATIO = 1e-3


# The path rule: integrated gradients of each neuron a(g, u) (a = silu(g) u, Gemma's GeGLU
# a = gelu_tanh(g) u, or gelu(g) with no up input) along the straight path from 0 to the
# real (g, u), the components' parts g_m, u_m as the inputs:
# share_m = int_0^1 (da/dg(t g, t u) g_m + da/du(t g, t u) u_m) dt.
# Here by composite Gauss-Legendre (PATH_PANELS panels of PATH_NODES nodes) with autograd
# derivatives; the loop implementation below uses a closed form instead. With sinks, each
# sink's contributions past its position join the bias component's first (so its shares
# there go to the bias and the sum stays exact).
PATH_PANELS, PATH_NODES = 64, 16


def path_coefficients_quadrature(G, U, act="silu"):
    """G, U [N, I] (U None: GELU) -> (A, B) with share_m = A g_m + B u_m; act: the gate
    activation of a gated MLP (silu, or gelu_tanh for GeGLU), or of a plain one (gelu_tanh
    for GPT-2, gelu_erf for GPT-NeoX)."""
    import numpy as np
    x, w = np.polynomial.legendre.leggauss(PATH_NODES)
    A, B = torch.zeros_like(G), torch.zeros_like(G)
    for j in range(PATH_PANELS):
        lo = j / PATH_PANELS
        for xi, wi in zip(x, w):
            t = lo + (xi + 1) / (2 * PATH_PANELS)
            wt = wi / (2 * PATH_PANELS)
            g = (t * G).clone().requires_grad_(True)
            if U is None:
                a = plain_act(act, g)
                (dg,) = torch.autograd.grad(a.sum(), g)
                A += wt * dg
            else:
                u = (t * U).clone().requires_grad_(True)
                a = (gelu_tanh(g) if act == "gelu_tanh" else silu(g)) * u
                dg, du = torch.autograd.grad(a.sum(), (g, u))
                A += wt * dg
                B += wt * du
    return A, B


def merge_sink(t, sinks, bias):
    """Each sink (c, j)'s rows past position j added to the bias component's (in the
    order of sinks), then zeroed."""
    t = t.clone()
    for c, j in sinks:
        t[bias, j + 1:] = t[bias, j + 1:] + t[c, j + 1:]
        t[c, j + 1:] = 0
    return t


def propagate(m, b, real, C, bias, sinks, split="softmax", temperature=0.1, src=None):
    """Block b's component rule with the real block's coefficients frozen -> new C.
    sinks: the MLP's [(component, position), ...] (see split_weights). src:
    the components the block reads (default C; a parallel-residual MLP reads those at the
    layer input), its update is added to C."""
    V = layer_view(m, b // 2)
    gain, off = V["norm1"] if b % 2 == 0 else V["norm2"]
    Cn = norm_linear(m, C if src is None else src, real["r"], gain)
    if off is not None:
        Cn[bias] = Cn[bias] + off
    if b % 2 == 0:
        a = m["arch"]
        M, N = C.shape[0], C.shape[1]
        Vm = Cn @ V["Wv"]
        if V["bv"] is not None:
            Vm[bias] = Vm[bias] + V["bv"]
        Vm = Vm.reshape(M, N, a["G"], a["hd"]).permute(0, 2, 1, 3)
        return add_update(C, mix_heads(real["A"], Vm, a["H"], a["G"]) @ V["Wo"], bias, V["bo"],
                          V["out1"], real["r_out"])
    gm = Cn @ V["W1"]
    if V["b1"] is not None:
        gm[bias] = gm[bias] + V["b1"]
    if split == "path":
        um = None
        if V["W3"] is not None:
            um = Cn @ V["W3"]
        if sinks:
            gm = merge_sink(gm, sinks, bias)
            um = merge_sink(um, sinks, bias) if um is not None else None
        with torch.enable_grad():
            A, B = path_coefficients_quadrature(gm.sum(0), um.sum(0) if um is not None else None, V["act"])
        shares = A * gm + (B * um if um is not None else 0)
        return add_update(C, shares @ V["W2"], bias, V["b2"], V["out2"], real["r_out"])
    w = split_weights(gm, split, temperature, sinks, bias)
    return add_update(C, (w * real["act"]) @ V["W2"], bias, V["b2"], V["out2"], real["r_out"])


def propagate_naive(m, b, real, comps, bias, sinks, split="softmax", temperature=0.1, src=None):
    """Second implementation of `propagate`: one component at a time, each head through
    its own slice of Wo before mixing, the split per (position, neuron) with math.exp.
    comps: list of [N, D] tensors -> new list. src: the list the block reads (parallel
    residual MLP: the components at the layer input), default comps."""
    a, V = m["arch"], layer_view(m, b // 2)
    H, G, hd = a["H"], a["G"], a["hd"]
    gain, off = V["norm1"] if b % 2 == 0 else V["norm2"]
    gpt2 = uses_layernorm(m)
    r = real["r"]
    reads = comps if src is None else list(src)

    def norm(t, is_bias):
        y = ((t - t.mean(-1, keepdim=True)) if gpt2 else t) * r * gain
        return y + off if (is_bias and off is not None) else y

    out = []
    if b % 2 == 0:
        for i, c in enumerate(comps):
            v = norm(c, i == bias) @ V["Wv"]
            if i == bias and V["bv"] is not None:
                v = v + V["bv"]
            add = torch.zeros_like(c)
            for h in range(H):
                g = h // (H // G)
                add = add + real["A"][h] @ (v[:, g * hd:(g + 1) * hd] @ V["Wo"][h * hd:(h + 1) * hd, :])
            if i == bias and V["bo"] is not None:
                add = add + V["bo"]
            if V["out1"] is not None:  # Gemma 2: the frozen output norm
                add = add * real["r_out"] * V["out1"]
            out.append(c + add)
        return out
    gms = []
    ums = []
    for i, c in enumerate(reads):
        g = norm(c, i == bias) @ V["W1"]
        if i == bias and V["b1"] is not None:
            g = g + V["b1"]
        gms.append(g.tolist())
        if V["W3"] is not None:
            ums.append((norm(c, i == bias) @ V["W3"]).tolist())
    act = real["act"].tolist()
    N, I, M = len(act), len(act[0]), len(comps)
    coef = [[[0.0] * I for _ in range(N)] for _ in range(M)]
    if split == "path":
        path_naive(gms, ums, coef, bias, sinks, V["act"])
    for p in range(N if split != "path" else 0):
        for k in range(I):
            vals = [gms[i][p][k] for i in range(M)]
            el = [i for i in range(M) if vals[i] != 0.0 and not any(i == c and p > j for c, j in sinks)]
            if not el:
                wts = {bias: 1.0}
            else:
                top = max(vals[i] for i in el)
                ex = {i: math.exp((vals[i] - top) / temperature) for i in el}
                tot = sum(ex.values())
                wts = {i: e / tot for i, e in ex.items()}
                if split == "argmax":
                    wts = {min(el, key=lambda i: (-vals[i], i)): 1.0}
                elif split == "proportional":
                    s, mag = sum(vals[i] for i in el), sum(abs(vals[i]) for i in el)
                    if abs(s) > CANCEL_RATIO * mag:
                        wts = {i: vals[i] / s for i in el}
            for i, wt in wts.items():
                coef[i][p][k] = wt * act[p][k]
    for i, c in enumerate(comps):
        add = torch.tensor(coef[i], dtype=c.dtype) @ V["W2"]
        if V["out2"] is not None:
            if i == bias and V["b2"] is not None:
                add = add + V["b2"]
            out.append(c + add * real["r_out"] * V["out2"])
            continue
        new = c + add
        if i == bias and V["b2"] is not None:
            new = new + V["b2"]
        out.append(new)
    return out


def silu_path_q(G):
    """q(G) = int_0^1 t sigmoid(t G) dt by 400-point Gauss-Legendre (math, per neuron)."""
    import numpy as np
    if not hasattr(silu_path_q, "rule"):
        silu_path_q.rule = np.polynomial.legendre.leggauss(400)
    x, w = silu_path_q.rule
    return sum(0.5 * wi * t / (1 + math.exp(-t * G)) if t * G > -700 else 0.0
               for wi, t in zip(w, 0.5 * (x + 1)))


def gelu_path_p(G):
    """p(G) = int_0^1 t Phi(t G) dt with gelu_tanh(x) = x Phi(x), Phi(x) = (1 + tanh(sqrt(2/pi)
    (x + 0.044715 x^3))) / 2, by 400-point Gauss-Legendre (math, per neuron; checked against
    mpmath.quad in make_option_goldens.py)."""
    import numpy as np
    if not hasattr(gelu_path_p, "rule"):
        gelu_path_p.rule = np.polynomial.legendre.leggauss(400)
    x, w = gelu_path_p.rule
    c = math.sqrt(2.0 / math.pi)
    return sum(0.25 * wi * t * (1 + math.tanh(c * (t * G + 0.044715 * (t * G) ** 3)))
               for wi, t in zip(w, 0.5 * (x + 1)))


def path_naive(gms, ums, coef, bias, sinks, act="silu"):
    """The path rule per (position, neuron) in closed form: gated a = silu(g) u gives
    share_m = U (sigmoid(G) - q) g_m + G q u_m with q = int_0^1 t sigmoid(t G) dt (integrate
    the two terms of IG by parts); GeGLU a = gelu_tanh(g) u = g Phi(g) u the same with Phi
    for sigmoid: U (Phi(G) - p) g_m + G p u_m, p = int_0^1 t Phi(t G) dt; GELU gives
    share_m = g_m gelu(G) / G."""
    M, N, I = len(gms), len(gms[0]), len(gms[0][0])
    c = math.sqrt(2.0 / math.pi)
    for p in range(N):
        for k in range(I):
            g = [gms[i][p][k] for i in range(M)]
            u = [ums[i][p][k] for i in range(M)] if ums else None
            for s, j in sinks:  # past its position a sink's parts go to the bias component
                if p > j:
                    g[bias] += g[s]
                    g[s] = 0.0
                    if u:
                        u[bias] += u[s]
                        u[s] = 0.0
            G = sum(g)
            if u is None:
                if act == "gelu_erf":  # GPT-NeoX: gelu(G) / G = Phi(G), exactly
                    ratio = 0.5 * (1 + math.erf(G / math.sqrt(2.0)))
                else:
                    ratio = 0.5 * (1 + math.tanh(c * (G + 0.044715 * G ** 3)))
                for i in range(M):
                    coef[i][p][k] = ratio * g[i]
                continue
            if act == "gelu_tanh":
                U, q = sum(u), gelu_path_p(G)
                sig = 0.5 * (1 + math.tanh(c * (G + 0.044715 * G ** 3)))
            else:
                U, q = sum(u), silu_path_q(G)
                sig = 1 / (1 + math.exp(-G)) if G > -700 else 0.0
            for i in range(M):
                coef[i][p][k] = U * (sig - q) * g[i] + G * q * u[i]


def projection(basis, given):
    """D x D projection: the given matrix, or the orthogonal projection onto span(basis)."""
    if given:
        return basis
    return basis @ torch.linalg.solve(basis.T @ basis, basis.T)


def start_components(m, ids, init):
    """-> (start boundary index, real state there [N, D], members [K, N, D], labels,
    bias component at the start [N, D], read); see the comment above for each kind. read:
    None, or for a parallel-residual model started at boundary 2l+1 (heads(l),
    module(l, attention)) the pair (layer input x_in [N, D], members' parts of x_in
    [K, N, D]: the residual member x_in, every other member zero) that layer l's MLP reads
    (the bias component reads zero there: the attention output bias does not feed it)."""
    kind = init["kind"]
    x = embed(m, ids)
    N, D = x.shape
    zero = torch.zeros(N, D, dtype=x.dtype)
    if kind in ("tokens", "subspace"):
        b0 = init["start"]
        # a parallel model's odd boundary is an intermediate the MLP does not read: no start there
        assert not (is_parallel(m) and b0 % 2 == 1), "start at an odd boundary of a parallel-residual model"
        x, _ = advance(m, x, 0, b0)
        if kind == "tokens":
            rows = x
            members = []
            if b0 == 0 and m["arch"]["kind"] == "gpt2":
                rows = m["wte"][torch.tensor(ids, dtype=torch.long)]
            for i in range(N):
                c = zero.clone()
                c[i] = rows[i]
                members.append(c)
            labels = ["token %d" % i for i in range(N)]
            if b0 == 0 and m["arch"]["kind"] == "gpt2":
                members.append(m["wpe"][:N].clone())
                labels.append("positions")
            return b0, x, torch.stack(members), labels, zero, None
        parts = [x @ projection(B, init.get("projections", False)) for B in init["bases"]]
        rest = x - sum(parts)
        labels = ["subspace %d" % s for s in range(len(parts))] + ["remainder"]
        return b0, x, torch.stack(parts + [rest]), labels, zero, None
    l = init["layer"]
    block = 2 * l + (1 if kind == "neurons" or (kind == "module" and init["site"] == "mlp") else 0)
    x, x_in = advance(m, x, 0, block)
    real = real_block(m, block, x, x_in)
    after = x + real["out"]
    V = layer_view(m, l)

    def read(K):  # parallel residual, start at 2l+1: layer l's MLP reads x_in, all of it the residual member's
        if not (is_parallel(m) and block % 2 == 0):
            return None
        parts = torch.zeros(K, N, D, dtype=x.dtype)
        parts[0] = x
        return x, parts

    if kind == "module":
        return block + 1, after, torch.stack([x, real["out"]]), ["residual", "module"], zero, read(2)
    if kind == "heads":
        a = m["arch"]
        hd = a["hd"]
        heads = [real["mixed"][:, h * hd:(h + 1) * hd] @ V["Wo"][h * hd:(h + 1) * hd, :] for h in range(a["H"])]
        bias = zero + (V["bo"] if V["bo"] is not None else 0)
        if V["out1"] is not None:  # Gemma 2: each head's share of the output norm, frozen
            post = real["r_out"] * V["out1"]
            heads, bias = [t * post for t in heads], bias * post
        return (block + 1, after, torch.stack([x] + heads),
                ["residual"] + ["head %d" % h for h in range(a["H"])], bias, read(1 + a["H"]))
    assert kind == "neurons", kind
    I = real["act"].shape[1]
    sel = list(init["neurons"]) or list(range(I))
    rest = [k for k in range(I) if k not in sel]
    units = [torch.outer(real["act"][:, k], V["W2"][k]) for k in sel]
    others = real["act"][:, rest] @ V["W2"][rest] if rest else zero.clone()
    bias = zero + (V["b2"] if V["b2"] is not None else 0)
    if V["out2"] is not None:  # Gemma 2: each neuron's share of the output norm, frozen
        post = real["r_out"] * V["out2"]
        units, others, bias = [t * post for t in units], others * post, bias * post
    return (block + 1, after, torch.stack([x] + units + [others]),
            ["residual"] + ["neuron %d" % k for k in sel] + ["other neurons"], bias, None)


def run_pass(m, b0, x, C, bias, sinks, end, split, temperature, naive=False, x_in=None, C_in=None):
    """One pass from boundary b0 to `end`; at the output the state and components are
    final-normed (frozen scale, the offset to the bias component). sinks: per layer the
    MLP's [(component, position), ...]. Parallel residual: the
    MLP of layer l reads the state and components at the layer input (boundary 2l) and
    its update is added to those at 2l+1; a pass starting at 2l+1 is given them (x_in,
    C_in). Returns (state, C, relative completeness errors at every boundary)."""
    errs = []
    par = is_parallel(m)

    def err(C_, x_):
        errs.append(((C_.sum(0) - x_).abs().max() / x_.abs().max()).item())

    err(C, x)
    for b in range(b0, min(end, 2 * n_layers(m))):
        if b % 2 == 0:
            x_in, C_in = x, C
        real = real_block(m, b, x, x_in)
        src = C_in if (par and b % 2 == 1) else None
        if naive:
            C = torch.stack(propagate_naive(m, b, real, list(C), bias, sinks[b // 2], split, temperature,
                                            src=None if src is None else list(src)))
        else:
            C = propagate(m, b, real, C, bias, sinks[b // 2], split, temperature, src=src)
        x = x + real["out"]
        err(C, x)
    if end == 2 * n_layers(m):
        (gain, off), _ = final_view(m)
        r = norm_scale(m, x)
        x = norm_linear(m, x, r, gain) + (off if off is not None else 0)
        C = norm_linear(m, C, r, gain)
        if off is not None:
            C[bias] = C[bias] + off
        err(C, x)
    return x, C, errs


# Attention-derived sinks need this many later queries (see the comment above n_layers).
SINK_MIN_QUERIES = 8


def attention_sinks(A, ratio):
    """A [H, N, N] real probabilities of one layer -> sorted positions j with at least
    SINK_MIN_QUERIES later queries and r_j = mean_{i > j} (i + 1) mean_h A[h, i, j] >= ratio."""
    N = A.shape[1]
    rel = A.mean(0) * torch.arange(1, N + 1, dtype=A.dtype)[:, None]  # (i + 1) mean_h A[i, j]
    return [j for j in range(N - SINK_MIN_QUERIES) if rel[j + 1:, j].mean().item() >= ratio]


def attention_sinks_naive(A, ratio):
    """attention_sinks by loops over the nested lists (the naive=True cross-check)."""
    H, N = len(A), len(A[0])
    out = []
    for j in range(N):
        later = range(j + 1, N)
        if len(later) < SINK_MIN_QUERIES:
            continue
        r = sum((i + 1) * sum(A[h][i][j] for h in range(H)) / H for i in later) / len(later)
        if r >= ratio:
            out.append(j)
    return out


def sink_sets(m, ids, kind, bos_sink, ratio, naive=False):
    """Per layer the sorted sink positions of a run with init kind `kind`: token level
    only, {0} with bos_sink, plus (ratio > 0) the attention sinks of the layer's real
    attention on the prompt (the A the attention rule freezes)."""
    L = n_layers(m)
    base = [0] if (kind == "tokens" and bos_sink) else []
    if kind != "tokens" or ratio <= 0:
        return [list(base) for _ in range(L)]
    x, out = embed(m, ids), []
    for l in range(L):
        A = attention_real(m, l, x)["A"]
        found = attention_sinks_naive(A.tolist(), ratio) if naive else attention_sinks(A, ratio)
        out.append(sorted(set(base) | set(found)))
        x, _ = advance(m, x, 2 * l, 2 * l + 2)
    return out


def sink_members(sets, first, size):
    """Sink positions per layer -> the pass's (component, position) pairs: token j is
    member j, component j - first in the pass holding members first..first+size-1 (the
    positions member, index N, is never a sink position)."""
    return [[(j - first, j) for j in js if first <= j < first + size] for js in sets]


def decompose(m, ids, init=None, end=None, split="softmax", temperature=0.1, bos_sink=True,
              chunk_size=0, naive=False, sink_ratio=0.0):
    """DePass with every option. init: dict (see start_components; default token level at
    the embeddings); end: boundary index (default the output); sink_ratio > 0 adds the
    attention-derived sinks (token level). Returns dict(labels, members [K, N, D], bias
    [N, D], chunk_residual [N, D] or None, state [N, D] at the end (final-normed at the
    output), unembedding [V, D], chunks, max_rel_err, sinks: per layer the sorted sink
    positions)."""
    init = init or {"kind": "tokens", "start": 0}
    L2 = 2 * n_layers(m)
    end = L2 if end is None else end
    b0, x, members, labels, bias0, read = start_components(m, ids, init)
    assert b0 <= end <= L2, (b0, end)
    K = members.shape[0]
    sinks = sink_sets(m, ids, init["kind"], bos_sink, sink_ratio, naive)
    _, U = final_view(m)
    x_in, zero = (read[0] if read else None), torch.zeros_like(x)
    if not chunk_size:
        C = torch.cat([members, bias0[None]])
        C_in = torch.cat([read[1], zero[None]]) if read else None
        state, C, errs = run_pass(m, b0, x, C, K, sink_members(sinks, 0, K), end, split, temperature, naive,
                                  x_in, C_in)
        return dict(labels=labels, members=C[:K], bias=C[K], chunk_residual=None, state=state,
                    unembedding=U, chunks=1, max_rel_err=max(errs), sinks=sinks)
    out, bias, errs, chunks = torch.zeros_like(members[:, :, :] if end < L2 else members), None, [], 0
    for first in range(0, K, chunk_size):
        part = members[first:first + chunk_size]
        rest = x - bias0 - part.sum(0)
        C = torch.cat([part, rest[None], bias0[None]])
        C_in = None
        if read:  # the members' parts of the layer input; the remainder reads the rest of it
            rp = read[1][first:first + chunk_size]
            C_in = torch.cat([rp, (x_in - rp.sum(0))[None], zero[None]])
        sk = sink_members(sinks, first, part.shape[0])
        state, C, e = run_pass(m, b0, x, C, C.shape[0] - 1, sk, end, split, temperature, naive, x_in, C_in)
        out[first:first + part.shape[0]] = C[:part.shape[0]]
        if first == 0:
            bias = C[-1]
        errs += e
        chunks += 1
    residual = state - bias - out.sum(0)
    return dict(labels=labels, members=out, bias=bias, chunk_residual=residual, state=state,
                unembedding=U, chunks=chunks, max_rel_err=max(errs), sinks=sinks)
