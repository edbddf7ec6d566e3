"""Reference dequantisers and quantisers for ggml's block formats (GGUF tensor types).

Written from the public description of the block layouts (ggml-common.h: field order and
sizes; the dequantisation formulas of ggml's reference `dequantize_row_*`), independently
of depass's C++ (include/depass/detail/io/GgmlQuants.hpp). Used by make_quant_goldens.py
to write tests/golden/ggml_quants.json.

Dequantisation is done in float32 with the operations in ggml's order, so results are
bit-exact: `dequantize(type, raw_bytes) -> np.float32 array`.

The quantisers are our own (simple, deterministic, not llama.cpp's search-based ones):
they exist to make valid blocks from real-valued data, with a known reconstruction error.
`quantize(type, np.float32 array) -> bytes`.

Requirements: numpy only.
"""
import struct

import numpy as np

F32 = np.float32

# name: (ggml type number, elements per block, bytes per block)
TYPES = {
    "Q4_0": (2, 32, 18),
    "Q4_1": (3, 32, 20),
    "Q5_0": (6, 32, 22),
    "Q5_1": (7, 32, 24),
    "Q8_0": (8, 32, 34),
    "Q2_K": (10, 256, 84),
    "Q3_K": (11, 256, 110),
    "Q4_K": (12, 256, 144),
    "Q5_K": (13, 256, 176),
    "Q6_K": (14, 256, 210),
    "Q8_K": (15, 256, 292),
    "IQ4_NL": (20, 32, 18),
    "IQ4_XS": (23, 256, 136),
}

IQ4NL_LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10,
                         1, 13, 25, 38, 53, 69, 89, 113], dtype=np.int32)


def half(raw, at):
    """The little-endian binary16 at byte `at`, widened exactly to float32."""
    return F32(np.frombuffer(raw[at:at + 2], dtype="<f2")[0])


def to_half_bytes(x):
    return np.array([x], dtype="<f2").tobytes()


def nibbles(raw, at, n):
    """Bytes [at, at+n): their low nibbles then their high nibbles (2n values)."""
    b = np.frombuffer(raw[at:at + n], dtype=np.uint8).astype(np.int32)
    return np.concatenate([b & 0xF, b >> 4])


# ------------------------------------------------------------------------------------------
# dequantisers: one block of raw bytes -> float32 values
# ------------------------------------------------------------------------------------------
def deq_q4_0(raw):
    d = half(raw, 0)
    return np.array([F32(q - 8) * d for q in nibbles(raw, 2, 16)], dtype=F32)


def deq_q4_1(raw):
    d, m = half(raw, 0), half(raw, 2)
    return np.array([F32(q) * d + m for q in nibbles(raw, 4, 16)], dtype=F32)


def q5_quants(raw, qh_at, qs_at):
    qh = struct.unpack_from("<I", raw, qh_at)[0]
    low = nibbles(raw, qs_at, 16)
    return [int(low[j]) | (((qh >> j) & 1) << 4) for j in range(32)]


def deq_q5_0(raw):
    d = half(raw, 0)
    return np.array([F32(q - 16) * d for q in q5_quants(raw, 2, 6)], dtype=F32)


def deq_q5_1(raw):
    d, m = half(raw, 0), half(raw, 2)
    return np.array([F32(q) * d + m for q in q5_quants(raw, 4, 8)], dtype=F32)


def deq_q8_0(raw):
    d = half(raw, 0)
    q = np.frombuffer(raw[2:34], dtype=np.int8)
    return np.array([F32(int(v)) * d for v in q], dtype=F32)


def deq_iq4_nl(raw):
    d = half(raw, 0)
    return np.array([d * F32(IQ4NL_LEVELS[i]) for i in nibbles(raw, 2, 16)], dtype=F32)


def two_bit_quants(qs):
    """The 256 2-bit quants of Q2_K / Q3_K: two halves of 128, each from 32 bytes; element
    32*k + l of a half is bits 2k..2k+1 of that half's byte l."""
    out = []
    for half_ in range(2):
        for k in range(4):
            for l in range(32):
                out.append((qs[32 * half_ + l] >> (2 * k)) & 3)
    return out


def deq_q2_k(raw):
    scales = raw[0:16]
    q = two_bit_quants(raw[16:80])
    d, dmin = half(raw, 80), half(raw, 82)
    y = []
    for e in range(256):
        sc = scales[e // 16]
        dl = d * F32(sc & 0xF)
        ml = dmin * F32(sc >> 4)
        y.append(dl * F32(q[e]) - ml)
    return np.array(y, dtype=F32)


def q3_k_scales(packed):
    """16 signed 6-bit scales from 12 bytes: scales 0-7 take the low nibbles of bytes 0-7,
    scales 8-15 their high nibbles; the two high bits of scale s are bits 2*(s//4) of byte
    8 + s%4; the stored value is offset by 32."""
    out = []
    for s in range(16):
        low = packed[s] & 0xF if s < 8 else packed[s - 8] >> 4
        high = (packed[8 + s % 4] >> (2 * (s // 4))) & 3
        out.append((low | (high << 4)) - 32)
    return out


def deq_q3_k(raw):
    hmask = raw[0:32]
    q = two_bit_quants(raw[32:96])
    scales = q3_k_scales(raw[96:108])
    d = half(raw, 108)
    y = []
    for e in range(256):
        high_set = (hmask[e % 32] >> (e // 32)) & 1
        v = q[e] - (0 if high_set else 4)
        y.append(d * F32(scales[e // 16]) * F32(v))
    return np.array(y, dtype=F32)


def k4_scales_mins(packed):
    """The 8 (scale, min) pairs of Q4_K / Q5_K, 6 bits each, from 12 bytes."""
    out = []
    for s in range(8):
        if s < 4:
            out.append((packed[s] & 63, packed[s + 4] & 63))
        else:
            out.append(((packed[s + 4] & 0xF) | ((packed[s - 4] >> 6) << 4),
                        (packed[s + 4] >> 4) | ((packed[s] >> 6) << 4)))
    return out


def deq_q4_k(raw):
    d, dmin = half(raw, 0), half(raw, 2)
    sm = k4_scales_mins(raw[4:16])
    qs = raw[16:144]
    y = []
    for s in range(8):
        dl, ml = d * F32(sm[s][0]), dmin * F32(sm[s][1])
        for l in range(32):
            b = qs[32 * (s // 2) + l]
            q = b & 0xF if s % 2 == 0 else b >> 4
            y.append(dl * F32(q) - ml)
    return np.array(y, dtype=F32)


def deq_q5_k(raw):
    d, dmin = half(raw, 0), half(raw, 2)
    sm = k4_scales_mins(raw[4:16])
    qh = raw[16:48]
    qs = raw[48:176]
    y = []
    for s in range(8):
        dl, ml = d * F32(sm[s][0]), dmin * F32(sm[s][1])
        for l in range(32):
            b = qs[32 * (s // 2) + l]
            q = (b & 0xF if s % 2 == 0 else b >> 4) | (((qh[l] >> s) & 1) << 4)
            y.append(dl * F32(q) - ml)
    return np.array(y, dtype=F32)


def deq_q6_k(raw):
    ql, qh = raw[0:128], raw[128:192]
    scales = np.frombuffer(raw[192:208], dtype=np.int8)
    d = half(raw, 208)
    y = []
    for e in range(256):
        h, k, l = e // 128, (e % 128) // 32, e % 32
        b = ql[64 * h + 32 * (k % 2) + l]
        low = b & 0xF if k < 2 else b >> 4
        high = (qh[32 * h + l] >> (2 * k)) & 3
        q = (low | (high << 4)) - 32
        y.append(d * F32(int(scales[e // 16])) * F32(q))
    return np.array(y, dtype=F32)


def deq_q8_k(raw):
    d = F32(struct.unpack_from("<f", raw, 0)[0])
    q = np.frombuffer(raw[4:260], dtype=np.int8)
    return np.array([d * F32(int(v)) for v in q], dtype=F32)


def deq_iq4_xs(raw):
    d = half(raw, 0)
    scales_h = struct.unpack_from("<H", raw, 2)[0]
    scales_l = raw[4:8]
    y = []
    for s in range(8):
        ls = ((scales_l[s // 2] >> (4 * (s % 2))) & 0xF) | (((scales_h >> (2 * s)) & 3) << 4)
        dl = d * F32(ls - 32)
        for i in nibbles(raw, 8 + 16 * s, 16):
            y.append(dl * F32(IQ4NL_LEVELS[i]))
    return np.array(y, dtype=F32)


DEQUANTIZERS = {
    "Q4_0": deq_q4_0, "Q4_1": deq_q4_1, "Q5_0": deq_q5_0, "Q5_1": deq_q5_1,
    "Q8_0": deq_q8_0, "Q2_K": deq_q2_k, "Q3_K": deq_q3_k, "Q4_K": deq_q4_k,
    "Q5_K": deq_q5_k, "Q6_K": deq_q6_k, "Q8_K": deq_q8_k, "IQ4_NL": deq_iq4_nl,
    "IQ4_XS": deq_iq4_xs,
}


def dequantize(name, raw):
    """All blocks of `raw` (a whole number of blocks) as one float32 array."""
    _, n, size = TYPES[name]
    assert len(raw) % size == 0
    with np.errstate(all="ignore"):  # inf/NaN scales are legal inputs here
        parts = [DEQUANTIZERS[name](bytes(raw[i:i + size])) for i in range(0, len(raw), size)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=F32)


# ------------------------------------------------------------------------------------------
# quantisers: float32 values -> raw bytes (our own simple choice of scales)
# ------------------------------------------------------------------------------------------
def f16(x):
    """x rounded to binary16 and back (what a stored scale really is)."""
    return F32(np.float16(x))


def signed_absmax(x):
    """The element of largest magnitude, with its sign."""
    return F32(x[int(np.argmax(np.abs(x)))])


def rint(x):
    return int(np.rint(x))


def clip(v, lo, hi):
    return max(lo, min(hi, v))


def safe_div(x, d):
    return F32(x) / d if d != 0 else F32(0)


def pack_nibbles(q):
    """2n 4-bit values -> n bytes: value j low nibble, value j+n high nibble."""
    n = len(q) // 2
    return bytes((int(q[j]) & 0xF) | ((int(q[j + n]) & 0xF) << 4) for j in range(n))


def q_q4_0(x):
    d = f16(signed_absmax(x) / F32(-8))
    q = [clip(rint(safe_div(v, d)) + 8, 0, 15) for v in x]
    return to_half_bytes(d) + pack_nibbles(q)


def q_q4_1(x):
    lo, hi = F32(x.min()), F32(x.max())
    d, m = f16((hi - lo) / F32(15)), f16(lo)
    q = [clip(rint(safe_div(v - m, d)), 0, 15) for v in x]
    return to_half_bytes(d) + to_half_bytes(m) + pack_nibbles(q)


def q5_fields(q):
    qh = sum(((v >> 4) & 1) << j for j, v in enumerate(q))
    return struct.pack("<I", qh) + pack_nibbles([v & 0xF for v in q])


def q_q5_0(x):
    d = f16(signed_absmax(x) / F32(-16))
    q = [clip(rint(safe_div(v, d)) + 16, 0, 31) for v in x]
    return to_half_bytes(d) + q5_fields(q)


def q_q5_1(x):
    lo, hi = F32(x.min()), F32(x.max())
    d, m = f16((hi - lo) / F32(31)), f16(lo)
    q = [clip(rint(safe_div(v - m, d)), 0, 31) for v in x]
    return to_half_bytes(d) + to_half_bytes(m) + q5_fields(q)


def q_q8_0(x):
    d = f16(F32(np.abs(x).max()) / F32(127))
    q = [clip(rint(safe_div(v, d)), -127, 127) for v in x]
    return to_half_bytes(d) + np.array(q, dtype=np.int8).tobytes()


def q_iq4_nl(x):
    d = f16(signed_absmax(x) / F32(-127))
    idx = [int(np.argmin(np.abs(IQ4NL_LEVELS * d - v))) for v in x]
    return to_half_bytes(d) + pack_nibbles(idx)


def pack_two_bit(q):
    """256 2-bit values -> 64 bytes (inverse of two_bit_quants)."""
    out = bytearray(64)
    for e, v in enumerate(q):
        h, k, l = e // 128, (e % 128) // 32, e % 32
        out[32 * h + l] |= (v & 3) << (2 * k)
    return bytes(out)


def affine_sub_scales(x, n_sub, levels):
    """Per sub-block (scale, min >= 0) with x ~ scale*q - min, q in [0, levels]."""
    subs = x.reshape(n_sub, -1)
    mins = np.maximum(F32(0), -subs.min(axis=1)).astype(F32)
    scales = ((subs.max(axis=1) + mins) / F32(levels)).astype(F32)
    return subs, scales, mins


def q_q2_k(x):
    subs, scales, mins = affine_sub_scales(x, 16, 3)
    d, dmin = f16(scales.max() / F32(15)), f16(mins.max() / F32(15))
    sc = [clip(rint(safe_div(s, d)), 0, 15) for s in scales]
    mc = [clip(rint(safe_div(m, dmin)), 0, 15) for m in mins]
    q = []
    for s in range(16):
        dl, ml = d * F32(sc[s]), dmin * F32(mc[s])
        q += [clip(rint(safe_div(v + ml, dl)), 0, 3) for v in subs[s]]
    return (bytes(sc[s] | (mc[s] << 4) for s in range(16)) + pack_two_bit(q) +
            to_half_bytes(d) + to_half_bytes(dmin))


def q_q3_k(x):
    subs = x.reshape(16, 16)
    scales = np.array([signed_absmax(s) / F32(-4) for s in subs], dtype=F32)
    d = f16(signed_absmax(scales) / F32(-32))
    sc = [clip(rint(safe_div(s, d)), -32, 31) for s in scales]
    q = []
    for s in range(16):
        dl = d * F32(sc[s])
        q += [clip(rint(safe_div(v, dl)), -4, 3) for v in subs[s]]
    hmask = bytearray(32)
    for e, v in enumerate(q):
        if v >= 0:  # stored 2-bit value v with the high bit set; v + 4 without it
            hmask[e % 32] |= 1 << (e // 32)
    low = [v & 3 for v in q]  # v in [-4, 3]: (v + 4) & 3 == v & 3
    packed = bytearray(12)
    for s, v in enumerate(sc):
        u = v + 32
        if s < 8:
            packed[s] |= u & 0xF
        else:
            packed[s - 8] |= (u & 0xF) << 4
        packed[8 + s % 4] |= ((u >> 4) & 3) << (2 * (s // 4))
    return bytes(hmask) + pack_two_bit(low) + bytes(packed) + to_half_bytes(d)


def pack_k4_scales_mins(sc, mn):
    """Inverse of k4_scales_mins: 8 scales and 8 mins of 6 bits -> 12 bytes."""
    p = bytearray(12)
    for s in range(8):
        if s < 4:
            p[s] |= sc[s] & 63
            p[s + 4] |= mn[s] & 63
        else:
            p[s + 4] |= (sc[s] & 0xF) | ((mn[s] & 0xF) << 4)
            p[s - 4] |= (sc[s] >> 4) << 6
            p[s] |= (mn[s] >> 4) << 6
    return bytes(p)


def q_k_affine(x, bits):
    levels = (1 << bits) - 1
    subs, scales, mins = affine_sub_scales(x, 8, levels)
    d, dmin = f16(scales.max() / F32(63)), f16(mins.max() / F32(63))
    sc = [clip(rint(safe_div(s, d)), 0, 63) for s in scales]
    mn = [clip(rint(safe_div(m, dmin)), 0, 63) for m in mins]
    q = []
    for s in range(8):
        dl, ml = d * F32(sc[s]), dmin * F32(mn[s])
        q.append([clip(rint(safe_div(v + ml, dl)), 0, levels) for v in subs[s]])
    return d, dmin, pack_k4_scales_mins(sc, mn), q


def q_q4_k(x):
    d, dmin, packed, q = q_k_affine(x, 4)
    qs = b"".join(pack_nibbles(q[2 * p] + q[2 * p + 1]) for p in range(4))
    return to_half_bytes(d) + to_half_bytes(dmin) + packed + qs


def q_q5_k(x):
    d, dmin, packed, q = q_k_affine(x, 5)
    qh = bytearray(32)
    for s in range(8):
        for l in range(32):
            qh[l] |= ((q[s][l] >> 4) & 1) << s
    qs = b"".join(pack_nibbles([v & 0xF for v in q[2 * p] + q[2 * p + 1]]) for p in range(4))
    return to_half_bytes(d) + to_half_bytes(dmin) + packed + bytes(qh) + qs


def q_q6_k(x):
    subs = x.reshape(16, 16)
    scales = np.array([signed_absmax(s) / F32(-32) for s in subs], dtype=F32)
    d = f16(signed_absmax(scales) / F32(-128))
    sc = [clip(rint(safe_div(s, d)), -128, 127) for s in scales]
    q = []
    for s in range(16):
        dl = d * F32(sc[s])
        q += [clip(rint(safe_div(v, dl)), -32, 31) + 32 for v in subs[s]]
    ql, qh = bytearray(128), bytearray(64)
    for e, v in enumerate(q):
        h, k, l = e // 128, (e % 128) // 32, e % 32
        ql[64 * h + 32 * (k % 2) + l] |= (v & 0xF) << (0 if k < 2 else 4)
        qh[32 * h + l] |= (v >> 4) << (2 * k)
    return bytes(ql) + bytes(qh) + np.array(sc, dtype=np.int8).tobytes() + to_half_bytes(d)


def q_q8_k(x):
    d = F32(np.abs(x).max()) / F32(127)
    q = [clip(rint(safe_div(v, d)), -127, 127) for v in x]
    sums = [sum(q[16 * g:16 * g + 16]) for g in range(16)]
    return (struct.pack("<f", d) + np.array(q, dtype=np.int8).tobytes() +
            np.array(sums, dtype="<i2").tobytes())


def q_iq4_xs(x):
    subs = x.reshape(8, 32)
    scales = np.array([signed_absmax(s) / F32(-127) for s in subs], dtype=F32)
    d = f16(signed_absmax(scales) / F32(-32))
    ls = [clip(rint(safe_div(s, d)), -32, 31) for s in scales]
    scales_h, scales_l, qs = 0, bytearray(4), b""
    for s in range(8):
        u = ls[s] + 32
        scales_l[s // 2] |= (u & 0xF) << (4 * (s % 2))
        scales_h |= ((u >> 4) & 3) << (2 * s)
        dl = d * F32(ls[s])
        qs += pack_nibbles([int(np.argmin(np.abs(IQ4NL_LEVELS * dl - v))) for v in subs[s]])
    return to_half_bytes(d) + struct.pack("<H", scales_h) + bytes(scales_l) + qs


QUANTIZERS = {
    "Q4_0": q_q4_0, "Q4_1": q_q4_1, "Q5_0": q_q5_0, "Q5_1": q_q5_1, "Q8_0": q_q8_0,
    "Q2_K": q_q2_k, "Q3_K": q_q3_k, "Q4_K": q_q4_k, "Q5_K": q_q5_k, "Q6_K": q_q6_k,
    "Q8_K": q_q8_k, "IQ4_NL": q_iq4_nl, "IQ4_XS": q_iq4_xs,
}


def quantize(name, x):
    """float32 values (a whole number of blocks) -> the raw bytes of their blocks."""
    _, n, size = TYPES[name]
    x = np.asarray(x, dtype=F32)
    assert x.size % n == 0
    out = b"".join(QUANTIZERS[name](x[i:i + n]) for i in range(0, x.size, n))
    assert len(out) == x.size // n * size
    return out
