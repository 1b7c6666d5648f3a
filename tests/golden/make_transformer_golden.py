#!/usr/bin/env python3
"""Writes tests/golden/transformer/*.safetensors: PyTorch 1.13 reference cases
for the transformer plugin's layers (transformer_encoder_layer, ...), read by
tests/layers/test_transformer.c.

Run with a Python that has torch (the tests never need it):
    /usr/bin/python3 tests/golden/make_transformer_golden.py
Deterministic (fixed seeds, float32, CPU, one thread); the files are small
and committed. Each file is one case:

  metadata  manifest     a one-module nnmod manifest (JSON) building the layer
            mode         "train" or "eval"
            n_inputs     number of inputs nnmod gets; input_<i> each (PyTorch
                         may have had more: a mask nnmod's config makes)
            bool_inputs  comma-separated indices of inputs that are bool masks
                         (stored as f32 0/1; the test makes them bool)
            grad_inputs  comma-separated indices of the inputs that require grad
            repr         PyTorch's repr(module), which print(model) must match
  tensors   state.<name>     the PyTorch module's state_dict, loaded strictly
            input_<i>        the call's inputs
            output_0         its output
            upstream_0       W: the gradients are those of sum(output_0 * W)
            grad_input_<i>   d/d input_i
            grad.<param>     d/d each parameter

Every case is computed with autograd recording (inputs that require grad), so
PyTorch takes its "slow path", the maths of the documented forward (1.13's
fused eval fast path applies only under no_grad). Train-mode cases use
dropout = 0 (the masks cannot match another generator's).
"""
import json
import os
import struct

import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "transformer")
torch.set_num_threads(1)


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    blobs, off = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.float32).contiguous()
        b = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def manifest(layer_type, config):
    return json.dumps({
        "format": "nnmod.manifest", "version": 1,
        "plugins": {layer_type: "^1.0"},
        "root": {"type": layer_type, "config": config},
    }, sort_keys=True)


def causal_float(n):
    return torch.triu(torch.full((n, n), float("-inf")), diagonal=1)


def causal_bool(n):
    return torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)


def padding(batch, length, lengths):
    m = torch.zeros(batch, length, dtype=torch.bool)
    for b, n in enumerate(lengths):
        m[b, n:] = True
    return m


def case(name, module, layer_type, config, mode, inputs, grad_inputs, nnm_inputs=None):
    """inputs: list of tensors (None: absent, passed as an empty tensor)."""
    module.train(mode == "train")
    ins, bools = [], []
    for i, t in enumerate(inputs):
        if t is None:
            ins.append(None)
            continue
        if t.dtype == torch.bool:
            bools.append(i)
            ins.append(t)
        else:
            ins.append(t.clone().requires_grad_(i in grad_inputs))
    out = module(*ins)
    gen = torch.Generator().manual_seed(99)
    w = torch.randn(out.shape, generator=gen)
    (out * w).sum().backward()
    tensors = {"output_0": out, "upstream_0": w}
    for k, v in module.state_dict().items():
        tensors["state." + k] = v
    for k, p in module.named_parameters():
        tensors["grad." + k] = p.grad if p.grad is not None else torch.zeros_like(p)
    for i, t in enumerate(ins):
        tensors["input_%d" % i] = torch.zeros(0) if t is None else t.to(torch.float32)
        if i in grad_inputs:
            tensors["grad_input_%d" % i] = t.grad
    meta = {
        "manifest": manifest(layer_type, config),
        "mode": mode,
        "n_inputs": str(len(ins) if nnm_inputs is None else nnm_inputs),
        "bool_inputs": ",".join(str(i) for i in bools),
        "grad_inputs": ",".join(str(i) for i in grad_inputs),
        "repr": repr(module),
    }
    write_safetensors(os.path.join(OUT, name + ".safetensors"), tensors, meta)
    print(name, tuple(out.shape))


def main():
    os.makedirs(OUT, exist_ok=True)
    E, H, FF, S, T, N = 16, 4, 32, 5, 4, 3

    def x(*shape, seed):
        return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))

    # encoder layer, post-norm, [S, N, E], eval (dropout 0.1 inactive), float causal mask + bool padding
    torch.manual_seed(1)
    m = nn.TransformerEncoderLayer(E, H, FF, dropout=0.1)
    cfg = {"d_model": E, "nhead": H, "dim_feedforward": FF}
    case("enc_layer_masks_eval", m, "transformer_encoder_layer", cfg, "eval",
         [x(S, N, E, seed=2), causal_float(S), padding(N, S, [5, 3, 4])], [0])

    # encoder layer, pre-norm, batch_first, gelu, train (dropout 0), bool padding only
    torch.manual_seed(3)
    m = nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, activation="gelu", batch_first=True,
                                   norm_first=True, layer_norm_eps=1e-6)
    cfg = {"d_model": E, "nhead": H, "dim_feedforward": FF, "dropout": 0.0, "activation": "gelu",
           "batch_first": True, "norm_first": True, "layer_norm_eps": 1e-6}
    case("enc_layer_prenorm_bf_gelu_train", m, "transformer_encoder_layer", cfg, "train",
         [x(N, S, E, seed=4), None, padding(N, S, [2, 5, 4])], [0])

    # encoder layer, unbatched [S, E], train (dropout 0), no mask
    torch.manual_seed(5)
    m = nn.TransformerEncoderLayer(E, H, FF, dropout=0.0)
    cfg = {"d_model": E, "nhead": H, "dim_feedforward": FF, "dropout": 0.0}
    case("enc_layer_unbatched_train", m, "transformer_encoder_layer", cfg, "train",
         [x(S, E, seed=6)], [0])

    # encoder layer with is_causal (nnmod's config) against PyTorch's causal mask
    torch.manual_seed(7)
    m = nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, batch_first=True)
    cfg = {"d_model": E, "nhead": H, "dim_feedforward": FF, "dropout": 0.0, "batch_first": True,
           "is_causal": True}
    case("enc_layer_is_causal", m, "transformer_encoder_layer", cfg, "train",
         [x(N, S, E, seed=8), causal_bool(S)], [0], nnm_inputs=1)

    # decoder layer, post-norm, eval: bool causal tgt mask, memory padding
    torch.manual_seed(9)
    m = nn.TransformerDecoderLayer(E, H, FF, dropout=0.1)
    cfg = {"d_model": E, "nhead": H, "dim_feedforward": FF}
    case("dec_layer_masks_eval", m, "transformer_decoder_layer", cfg, "eval",
         [x(T, N, E, seed=10), x(S, N, E, seed=11), causal_bool(T), None, None,
          padding(N, S, [5, 4, 2])], [0, 1])

    # decoder layer, pre-norm, batch_first, train (dropout 0), float memory mask, tgt padding
    torch.manual_seed(12)
    m = nn.TransformerDecoderLayer(E, H, FF, dropout=0.0, batch_first=True, norm_first=True)
    cfg = {"d_model": E, "nhead": H, "dim_feedforward": FF, "dropout": 0.0, "batch_first": True,
           "norm_first": True}
    mm = x(T, S, seed=13) * 0.5
    case("dec_layer_prenorm_bf_train", m, "transformer_decoder_layer", cfg, "train",
         [x(N, T, E, seed=14), x(N, S, E, seed=15), None, mm, padding(N, T, [4, 3, 4]), None],
         [0, 1])

    # encoder stack of 2 with a final norm, eval, masks
    torch.manual_seed(16)
    layer = nn.TransformerEncoderLayer(E, H, FF, dropout=0.1)
    m = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(E))
    cfg = {"d_model": E, "nhead": H, "dim_feedforward": FF, "num_layers": 2, "norm": True}
    case("encoder_2_norm_eval", m, "transformer_encoder", cfg, "eval",
         [x(S, N, E, seed=17), causal_float(S), padding(N, S, [5, 2, 3])], [0])

    # decoder stack of 2 without a final norm, train (dropout 0), batch_first, gelu
    torch.manual_seed(18)
    layer = nn.TransformerDecoderLayer(E, H, FF, dropout=0.0, batch_first=True, activation="gelu")
    m = nn.TransformerDecoder(layer, 2)
    cfg = {"d_model": E, "nhead": H, "dim_feedforward": FF, "num_layers": 2, "dropout": 0.0,
           "batch_first": True, "activation": "gelu"}
    case("decoder_2_train", m, "transformer_decoder", cfg, "train",
         [x(N, T, E, seed=19), x(N, S, E, seed=20), causal_float(T)], [0, 1])

    # the whole nn.Transformer, 2 + 1 layers, eval, the usual masks
    torch.manual_seed(21)
    m = nn.Transformer(d_model=E, nhead=2, num_encoder_layers=2, num_decoder_layers=1,
                       dim_feedforward=FF, dropout=0.1)
    cfg = {"d_model": E, "nhead": 2, "num_encoder_layers": 2, "num_decoder_layers": 1,
           "dim_feedforward": FF}
    case("transformer_eval", m, "transformer", cfg, "eval",
         [x(S, N, E, seed=22), x(T, N, E, seed=23), None, causal_float(T), None,
          padding(N, S, [5, 4, 3]), None, padding(N, S, [5, 4, 3])], [0, 1])

    # the whole nn.Transformer, pre-norm, batch_first, train (dropout 0)
    torch.manual_seed(24)
    m = nn.Transformer(d_model=E, nhead=4, num_encoder_layers=1, num_decoder_layers=2,
                       dim_feedforward=FF, dropout=0.0, batch_first=True, norm_first=True)
    cfg = {"d_model": E, "nhead": 4, "num_encoder_layers": 1, "num_decoder_layers": 2,
           "dim_feedforward": FF, "dropout": 0.0, "batch_first": True, "norm_first": True}
    case("transformer_prenorm_bf_train", m, "transformer", cfg, "train",
         [x(N, S, E, seed=25), x(N, T, E, seed=26), None, causal_bool(T)], [0, 1])


if __name__ == "__main__":
    main()
