#!/usr/bin/env python3
"""examples/bindings/python/mlp_example.py - the Python twin of
examples/bindings/c/mlp_example.c: the same steps and byte for byte the same
output (a test compares them).

    python3 mlp_example.py examples/manifests/mlp.json

Loads the manifest (parameters from the default seed), registers a global
forward hook that prints each module's output shape, runs a forward on a
fixed input, computes loss = mean(y * y), runs backward, prints each
parameter's gradient sums, takes one SGD step (lr 0.1) and prints the loss
again.
"""
import sys

import numpy as np

import nnmod


def shape(t):
    return "[" + ", ".join(str(d) for d in t.shape) + "]"


def sums(t):
    # Summed in order in double precision, as the C program does.
    s = a = 0.0
    for v in t.numpy().ravel().tolist():
        s += v
        a += abs(v)
    return s, a


def main(argv):
    if len(argv) != 2:
        print("usage: mlp_example.py <manifest>", file=sys.stderr)
        return 2
    model = nnmod.from_manifest(argv[1])
    print(f"model {model.layer_type}, {model.num_parameters()} parameters")

    # x[i] = ((5 i) mod 11 - 5) / 8: exact in f32, the same in every language
    x = nnmod.tensor(np.array([((i * 5) % 11 - 5) / 8 for i in range(8)],
                              np.float32).reshape(2, 4))
    print(f"input {shape(x)}")

    def print_output_shape(module, args, output):
        outs = output if isinstance(output, tuple) else (output,)
        print(f"hook {module.path or '(root)'} ({module.layer_type}) -> "
              + "".join(shape(o) for o in outs))

    hook = nnmod.register_module_forward_hook(print_output_shape)
    y = model(x)
    hook.remove()

    print(f"output {shape(y)}")
    for row in y.numpy().tolist():
        print("  " + " ".join(f"{v:.6f}" for v in row))

    loss = (y * y).mean()
    print(f"loss {loss.item():.6f}")
    loss.backward()
    for name, p in model.named_parameters():
        s, a = sums(p.grad)
        print(f"grad {name} {shape(p)} sum {s:.6f} abs {a:.6f}")

    opt = nnmod.optim.SGD(model.parameters(), lr=0.1)
    opt.step()
    print(f"sgd step lr {0.1:.6f}")
    for name, p in model.named_parameters():
        s, a = sums(p)
        print(f"param {name} sum {s:.6f} abs {a:.6f}")

    y2 = model(x)
    print(f"loss after step {(y2 * y2).mean().item():.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
