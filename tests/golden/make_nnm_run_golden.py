#!/usr/bin/env python3
"""PyTorch fixtures for `nnm run` end to end (tests/tools/test_nnm.sh).

Writes, under tests/golden/nnm_run/ (small, deterministic, committed):

  mha_kpm.manifest.json   nn.MultiheadAttention(4, 2) as an nnmod manifest
                          (multihead_attention + its out_proj linear child),
                          weights mha_kpm.safetensors
  mha_kpm.safetensors     its state_dict (random non-zero biases)
  mha_kpm_io.safetensors  "query" [2,2,4], "key" [3,2,4], "value" [3,2,4],
                          "mask" [2,3] BOOL (key_padding_mask, true: ignore),
                          "output" [2,2,4] and "weights" [2,2,3] (PyTorch's
                          attn_output and head-averaged attention weights)

  mha_kv.manifest.json    nn.MultiheadAttention(4, 2, kdim=3, vdim=5,
                          add_bias_kv=True, add_zero_attn=True, batch_first=True),
                          weights mha_kv.safetensors (q/k/v_proj_weight, bias_k,
                          bias_v: PyTorch's names, loaded strictly)
  mha_kv.safetensors      its state_dict
  mha_kv_io.safetensors   "query" [2,3,4], "key" [2,4,3], "value" [2,4,5],
                          "none" [0] (an absent key_padding_mask), "attn_mask"
                          [3,4] f32 (added), "output" [2,3,4], "weights" [2,3,6]:
                          the attn_mask-only call of an outside tester

The mask is BOOL in the file: `nnm run --input-file` must hand it to the
layer as a bool tensor (it used to turn every non-float dtype into i64,
which multihead_attention rightly refuses).

No safetensors package is needed: the format is written by hand.

Usage: /usr/bin/python3 tests/golden/make_nnm_run_golden.py
"""
import json
import os
import struct

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nnm_run")
DTYPES = {torch.float32: "F32", torch.int64: "I64", torch.bool: "BOOL"}


def write_st(path, tensors):
    hdr, data = {}, b""
    for k, t in tensors.items():
        t = t.detach().contiguous()
        raw = t.numpy().tobytes()
        hdr[k] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                  "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(hdr, sort_keys=True).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    m = torch.nn.MultiheadAttention(4, 2).eval()
    with torch.no_grad():
        m.in_proj_bias.uniform_(-1, 1)
        m.out_proj.bias.uniform_(-1, 1)
    q, k, v = torch.randn(2, 2, 4), torch.randn(3, 2, 4), torch.randn(3, 2, 4)
    mask = torch.tensor([[False, True, False], [True, False, False]])
    with torch.no_grad():
        out, w = m(q, k, v, key_padding_mask=mask)
    write_st(os.path.join(OUT, "mha_kpm.safetensors"), m.state_dict())
    write_st(os.path.join(OUT, "mha_kpm_io.safetensors"),
             {"query": q, "key": k, "value": v, "mask": mask, "output": out, "weights": w})
    doc = {"format": "nnmod.manifest", "version": 1,
           "plugins": {"multihead_attention": "^1", "linear": "^1"},
           "root": {"type": "multihead_attention", "config": {"embed_dim": 4, "num_heads": 2},
                    "children": [{"name": "out_proj", "type": "linear",
                                  "config": {"in_features": 4, "out_features": 4}}]},
           "weights": {"path": "mha_kpm.safetensors"}}
    with open(os.path.join(OUT, "mha_kpm.manifest.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")

    # attn_mask alone (key_padding_mask absent: a 0-element tensor), kdim/vdim,
    # add_bias_kv, add_zero_attn; after the model above, whose draws stay as
    # they were
    m = torch.nn.MultiheadAttention(4, 2, kdim=3, vdim=5, add_bias_kv=True, add_zero_attn=True,
                                    batch_first=True).eval()
    with torch.no_grad():
        m.in_proj_bias.uniform_(-1, 1)
        m.out_proj.bias.uniform_(-1, 1)
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 4, 3), torch.randn(2, 4, 5)
    am = torch.randn(3, 4)
    with torch.no_grad():
        out, w = m(q, k, v, attn_mask=am)
    write_st(os.path.join(OUT, "mha_kv.safetensors"), m.state_dict())
    write_st(os.path.join(OUT, "mha_kv_io.safetensors"),
             {"query": q, "key": k, "value": v, "none": torch.empty(0), "attn_mask": am,
              "output": out, "weights": w})
    cfg = {"embed_dim": 4, "num_heads": 2, "kdim": 3, "vdim": 5, "add_bias_kv": True,
           "add_zero_attn": True, "batch_first": True}
    doc = {"format": "nnmod.manifest", "version": 1,
           "plugins": {"multihead_attention": "^1.1", "linear": "^1"},
           "root": {"type": "multihead_attention", "config": cfg,
                    "children": [{"name": "out_proj", "type": "linear",
                                  "config": {"in_features": 4, "out_features": 4}}]},
           "weights": {"path": "mha_kv.safetensors"}}
    with open(os.path.join(OUT, "mha_kv.manifest.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
