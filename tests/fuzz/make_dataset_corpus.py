#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_dataset (tests/fuzz/corpus_dataset/): small
IDX pairs (each element type, gzipped by the harness or not, inputs alone,
counts that disagree, a zero-width sample, a NaN) and safetensors datasets.
Plain Python; run from the repository root:
    python3 tests/fuzz/make_dataset_corpus.py
The input format is described in tests/fuzz/fuzz_dataset.c."""
import json
import os
import struct

OUT = "tests/fuzz/corpus_dataset"

SIZES = {0x08: ("B", 1), 0x09: ("b", 1), 0x0B: (">h", 2), 0x0C: (">i", 4), 0x0D: (">f", 4), 0x0E: (">d", 8)}


def idx(type_byte, dims, values):
    head = bytes([0, 0, type_byte, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    fmt, _ = SIZES[type_byte]
    return head + b"".join(struct.pack(fmt, v) for v in values)


def pair(mode, inputs, targets=b""):
    return bytes([mode]) + struct.pack("<H", len(inputs)) + inputs + targets


def st(tensors, meta=None):
    """tensors: name -> (dtype, shape, raw bytes); the harness's 0x80 form."""
    head, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        head[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if meta:
        head["__metadata__"] = meta
    text = json.dumps(head, separators=(",", ":")).encode()
    return bytes([0x80]) + struct.pack("<H", len(data)) + text + data


def main():
    os.makedirs(OUT, exist_ok=True)
    img = idx(0x08, [6, 2, 3], [i * 11 % 256 for i in range(36)])
    lab = idx(0x08, [6], [0, 1, 2, 3, 1, 0])
    seeds = {
        "idx_u8_plain": pair(0x00, img, lab),
        "idx_u8_gz": pair(0x03, img, lab),
        "idx_inputs_only": pair(0x04, img),
        "idx_i8_inputs": pair(0x00, idx(0x09, [4, 2], [-1, 2, -3, 4, 5, -6, 7, 8]), idx(0x08, [4], [0, 1, 0, 1])),
        "idx_i16_i32": pair(0x01, idx(0x0B, [3, 2], [-300, 2, 3, 4, 5, 600]), idx(0x0C, [3], [2, 1, 0])),
        "idx_f32_f64": pair(0x02, idx(0x0D, [2, 2], [0.5, -1.5, 2.0, 1e30]), idx(0x0E, [2, 2], [1.0, 2.0, 3.0, 4.0])),
        "idx_i8_ignore": pair(0x00, idx(0x08, [3, 1], [1, 2, 3]), idx(0x09, [3], [-100, 1, 2])),
        "idx_nan": pair(0x00, idx(0x0D, [2, 1], [float("nan"), 1.0]), idx(0x08, [2], [0, 1])),
        "idx_nan_allowed": pair(0x10, idx(0x0D, [2, 1], [float("inf"), 1.0]), idx(0x08, [2], [0, 1])),
        "idx_mismatch": pair(0x00, img, idx(0x08, [5], [0, 1, 2, 3, 4])),
        "idx_zero_width": pair(0x00, idx(0x08, [100000000, 0], []), idx(0x08, [2], [0, 1])),
        "idx_over_limit": pair(0x20, img, lab),
        "idx_truncated": pair(0x01, img[:-5], lab),
        "st_u8_i64": st({"inputs": ("U8", [3, 2], bytes(range(6))),
                         "targets": ("I64", [3], struct.pack("<3q", 0, 2, 1))}),
        "st_f16_f32": st({"inputs": ("F16", [2, 2], struct.pack("<4H", 0x3C00, 0x4000, 0xBC00, 0x7C00)),
                          "targets": ("F32", [2, 1], struct.pack("<2f", 0.5, -1.0))}),
        "st_bf16_u16": st({"inputs": ("BF16", [2, 1], struct.pack("<2H", 0x3F80, 0x4000)),
                           "targets": ("U16", [2], struct.pack("<2H", 1, 0))}, {"k": "v"}),
        "st_f64_i32": st({"inputs": ("F64", [1, 2], struct.pack("<2d", 1e300, 2.0)),
                          "targets": ("I32", [1], struct.pack("<i", -100))}),
        "st_zero_width": st({"inputs": ("U8", [1099511627776, 0], b""),
                             "targets": ("U8", [1099511627776, 0], b"")}),
    }
    for name, data in seeds.items():
        with open(os.path.join(OUT, name + ".bin"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
