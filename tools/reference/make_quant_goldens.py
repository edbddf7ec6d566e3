#!/usr/bin/env python3
"""Writes tests/golden/ggml_quants.json: blocks of every supported GGUF quantised type with
their dequantised values, computed by the reference in ggml_quants.py (numpy, independent of
the C++).

Per type:
  * `source_hex`: the two shared 256-value source tiles (`source`), quantised by our own
    quantiser; `source_values`: those blocks dequantised. The C++ round-trip test builds
    a model out of these tiles (F32 from `source`, quantised from `source_hex`).
  * `crafted`: blocks that reach every code path whatever the quantiser does: random
    bytes (every quant, high bit, packed 6-bit scale and min pattern) with random finite
    scales of both signs, all-0xFF bytes (largest indices, every high bit set) with a
    negative scale and a subnormal min, all-zero bytes with a tiny scale.
  * `scale_fields`: [name, byte offset, encoding] of each scale in a block, so the C++
    tests can plant NaN/inf in each one.

Floats are written as the shortest decimal that reads back (through float64) as the
float32 value; the script asserts that for every number.

    /usr/bin/python3 tools/reference/make_quant_goldens.py [--out tests/golden]
"""
import argparse
import json
import os
import struct

import numpy as np

import ggml_quants as gq

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))

SCALE_FIELDS = {
    "Q4_0": [["d", 0, "f16"]],
    "Q4_1": [["d", 0, "f16"], ["m", 2, "f16"]],
    "Q5_0": [["d", 0, "f16"]],
    "Q5_1": [["d", 0, "f16"], ["m", 2, "f16"]],
    "Q8_0": [["d", 0, "f16"]],
    "Q2_K": [["d", 80, "f16"], ["dmin", 82, "f16"]],
    "Q3_K": [["d", 108, "f16"]],
    "Q4_K": [["d", 0, "f16"], ["dmin", 2, "f16"]],
    "Q5_K": [["d", 0, "f16"], ["dmin", 2, "f16"]],
    "Q6_K": [["d", 208, "f16"]],
    "Q8_K": [["d", 0, "f32"]],
    "IQ4_NL": [["d", 0, "f16"]],
    "IQ4_XS": [["d", 0, "f16"]],
}


class F32Text(float):
    """A float32 written as its shortest decimal (which parses back to it via float64)."""

    def __repr__(self):
        if self == 0 and np.signbit(self):
            return "-0.0"  # "-0" would read back as the integer 0
        text = np.format_float_positional(np.float32(self), unique=True, trim="-")
        assert np.float32(float(text)) == np.float32(self), text
        return text


def floats(a):
    return [F32Text(v) for v in np.asarray(a, dtype=np.float32)]


def source_tiles(rng):
    """Two 256-value tiles with the structure real weights have: one centred, one with an
    offset and outliers (so the min/affine paths and large scales are exercised)."""
    a = rng.standard_normal(256).astype(np.float32) * np.float32(0.05)
    b = (rng.standard_normal(256) * 0.03 + 0.01).astype(np.float32)
    b[::37] *= np.float32(6.0)
    return a, b


def set_scale(raw, field, value):
    _, at, enc = field
    if enc == "f16":
        raw[at:at + 2] = np.array([value], dtype="<f2").tobytes()
    else:
        raw[at:at + 4] = struct.pack("<f", value)


def crafted_blocks(name, rng):
    _, n, size = gq.TYPES[name]
    fields = SCALE_FIELDS[name]
    out = []
    raw = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    for f in fields:
        set_scale(raw, f, float(rng.choice([-1, 1]) * rng.uniform(0.001, 0.1)))
    out.append(("random bytes, random finite scales", bytes(raw)))
    raw = bytearray(b"\xff" * size)
    set_scale(raw, fields[0], -0.5)
    for f in fields[1:]:
        raw[f[1]:f[1] + 2] = b"\x01\x00"  # the smallest subnormal half, 2^-24
    out.append(("all 0xFF, negative scale, subnormal min", bytes(raw)))
    if n == 32:
        raw = bytearray(size)
        set_scale(raw, fields[0], 2.0 ** -20)
        out.append(("all zero, tiny scale", bytes(raw)))
    return out


def dump(value):
    """Compact JSON with F32Text numbers in their short form."""
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k) + ":" + dump(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    if isinstance(value, F32Text):
        return repr(value)
    return json.dumps(value)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden"))
    args = ap.parse_args()
    rng = np.random.default_rng(20261201)
    tiles = source_tiles(rng)
    source = np.concatenate(tiles)
    golden = {"source": [floats(t) for t in tiles], "types": {}}
    for name, (number, n, size) in gq.TYPES.items():
        q = gq.quantize(name, source)
        entry = {
            "type": number, "block_elements": n, "block_bytes": size,
            "scale_fields": SCALE_FIELDS[name],
            "source_hex": q.hex(),
            "source_values": floats(gq.dequantize(name, q)),
            "crafted": [{"what": what, "hex": raw.hex(), "values": floats(gq.dequantize(name, raw))}
                        for what, raw in crafted_blocks(name, rng)],
        }
        err = np.abs(np.array(entry["source_values"]) - source).max()
        print("%-7s %4d bytes for 512 values, max |error| %.4g" % (name, len(q), err))
        golden["types"][name] = entry
    path = os.path.join(args.out, "ggml_quants.json")
    with open(path, "w") as f:
        f.write(dump(golden))
        f.write("\n")
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
