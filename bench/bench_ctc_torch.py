"""bench/bench_ctc_torch.py - F.ctc_loss on bench_ctc.c's data, one thread:
forward and forward+backward, median of 15, one JSON line.

    /usr/bin/python3 bench/bench_ctc_torch.py [T [S]]
"""
import sys, time, math, torch, torch.nn.functional as F
torch.set_num_threads(1)
T = int(sys.argv[1]) if len(sys.argv) > 1 else 50; S = int(sys.argv[2]) if len(sys.argv) > 2 else 10
N, C = 16, 20
i = torch.arange(T * N)[:, None]; c = torch.arange(C)[None, :]
lp = (-math.log(C) + 0.01 * (((i * 7 + c * 13) % 17) - 8)).float().reshape(T, N, C)
tg = (1 + (torch.arange(N * S) * 5) % (C - 1)).reshape(N, S)
il = torch.tensor([T - b % 3 for b in range(N)]); tl = torch.tensor([S - b % 2 for b in range(N)])
f, fb = [], []
for rep in range(15):
    x = lp.clone().requires_grad_()
    t0 = time.perf_counter(); out = F.ctc_loss(x, tg, il, tl); t1 = time.perf_counter(); out.backward(); t2 = time.perf_counter()
    f.append(t1 - t0); fb.append(t2 - t0)
    if rep == 0: print("loss", out.item(), file=sys.stderr)
f.sort(); fb.sort()
print('{"bench":"ctc_loss","path":"torch","T":%d,"N":%d,"C":%d,"S":%d,"fwd_ms":%.3f,"fwd_bwd_ms":%.3f}' % (T, N, C, S, 1e3 * f[7], 1e3 * fb[7]))
