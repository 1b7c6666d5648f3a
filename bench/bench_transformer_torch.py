#!/usr/bin/env python3
"""The PyTorch side of bench_transformer, for quoting the two in one run.

Run with Debian's torch, one thread:
    OMP_NUM_THREADS=1 /usr/bin/python3 bench/bench_transformer_torch.py [REPS]
Prints JSON lines like bench_transformer: nn.TransformerEncoderLayer(256, 8)
(dim_feedforward 2048, dropout 0.1, relu, post-norm, [S, N, E]) on seq 128,
batch 8:
  torch_transformer_encoder_layer_fwd      eval, no_grad (batch_first=False:
                                           1.13's math path, as nnmod's)
  torch_transformer_encoder_layer_fwd_causal  the same with src_mask =
                                           triu(-inf, 1) (nnmod's is_causal)
  torch_transformer_encoder_layer_fwd_bwd  train (dropout on), forward +
                                           backward of sum(y * g) (grads of the
                                           input and every parameter)
  torch_transformer_encoder_layer_fwd_fastpath  eval, no_grad, batch_first=True:
                                           1.13's fused encoder fast path
                                           (torch._transformer_encoder_layer_fwd),
                                           for reference
ms (wall) and cpu_ms (process CPU time), medians of REPS after a warm-up.
"""
import json
import statistics
import sys
import time

import torch

torch.set_num_threads(1)
D, H, S, N = 256, 8, 128, 8


def timed(fn, reps):
    fn()  # warm-up
    t, c = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        t.append(time.perf_counter() - t0)
        c.append(time.process_time() - c0)
    return statistics.median(t), statistics.median(c)


def emit(name, tc):
    d = {"bench": name, "value": round(tc[0] * 1e3, 4), "unit": "ms", "cpu_ms": round(tc[1] * 1e3, 4),
         "d_model": D, "nhead": H, "seq": S, "batch": N, "threads": 1, "torch": torch.__version__}
    print(json.dumps(d), flush=True)


def filled(shape, v):
    n = 1
    for s in shape:
        n *= s
    i = torch.arange(n, dtype=torch.int64)
    return (v * ((i * 37) % 101 - 50).to(torch.float32) / 50.0).reshape(shape)


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(D, H)
    x = filled((S, N, D), 1.0)
    g = filled((S, N, D), 0.01)
    layer.eval()
    with torch.no_grad():
        emit("torch_transformer_encoder_layer_fwd", timed(lambda: layer(x), reps))
        causal = torch.triu(torch.full((S, S), float("-inf")), 1)
        emit("torch_transformer_encoder_layer_fwd_causal", timed(lambda: layer(x, src_mask=causal), reps))
    layer.train()
    xg = x.clone().requires_grad_(True)

    def step():
        layer.zero_grad()
        xg.grad = None
        layer(xg).backward(g)

    emit("torch_transformer_encoder_layer_fwd_bwd", timed(step, reps))
    fast = torch.nn.TransformerEncoderLayer(D, H, batch_first=True).eval()
    xb = x.transpose(0, 1).contiguous()
    with torch.no_grad():
        emit("torch_transformer_encoder_layer_fwd_fastpath", timed(lambda: fast(xb), reps))


if __name__ == "__main__":
    main()
