#!/usr/bin/env python3
"""The PyTorch side of bench_rnn (bench/bench_rnn.sh runs both in one go).

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 /usr/bin/python3 bench/bench_rnn_torch.py [REPS]

nn.LSTM and nn.GRU, 2 layers, input 256, hidden 256, sequence 64, batch 32
(time-major), one thread: forward (no_grad) and forward + backward of the
output (grads of x and every parameter); medians of REPS repetitions after a
warm-up. JSON lines like bench_rnn's.
"""
import json
import statistics
import sys
import time

import torch
import torch.nn as nn

torch.set_num_threads(1)
T, B, I, H, L = 64, 32, 256, 256, 2


def timed(fn, reps):
    fn()  # warm-up
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return statistics.median(t)


def emit(name, ms):
    print(json.dumps({"bench": name, "value": round(ms, 3), "unit": "ms", "seq": T, "batch": B, "input": I,
                      "hidden": H, "layers": L, "threads": 1, "impl": "torch", "torch": torch.__version__}),
          flush=True)


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    torch.manual_seed(0)
    for name, cls in (("lstm", nn.LSTM), ("gru", nn.GRU)):
        m = cls(I, H, num_layers=L)
        x = torch.rand(T, B, I) - 0.5
        g = torch.rand(T, B, H) - 0.5

        def fwd():
            with torch.no_grad():
                m(x)

        emit(f"{name}_fwd", 1e3 * timed(fwd, reps))
        xg = x.clone().requires_grad_(True)

        def fwd_bwd():
            m.zero_grad(set_to_none=True)
            xg.grad = None
            y, _ = m(xg)
            y.backward(g)

        emit(f"{name}_fwd_bwd", 1e3 * timed(fwd_bwd, reps))


if __name__ == "__main__":
    main()
