#!/usr/bin/env python3
"""PyTorch state dicts and outputs for tests/layers/test_recurrent.c: a
PyTorch-trained recurrent model's weights must load into nnmod strictly
(nnm_module_load(..., strict=1): exactly PyTorch's state_dict keys) and give
PyTorch's outputs.

Writes tests/golden/recurrent/<name>.state.safetensors (model.state_dict(),
as safetensors.torch.save_file would) and <name>.io.safetensors (x, and the
outputs y, h_n, c_n with grad mode off), for:
  lstm_proj_bidir  nn.LSTM(5, 8, num_layers=2, bidirectional=True, proj_size=3, batch_first=True)
  gru_2layer       nn.GRU(4, 6, num_layers=2)
  rnn_relu_bidir   nn.RNN(3, 5, nonlinearity="relu", bidirectional=True)

Usage: /usr/bin/python3 tests/golden/make_recurrent_golden.py
"""
import os
import sys

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_conformance_golden import write_safetensors  # noqa: E402

OUT = os.path.join(HERE, "recurrent")

MODELS = {
    "lstm_proj_bidir": (lambda: nn.LSTM(5, 8, num_layers=2, bidirectional=True, proj_size=3, batch_first=True),
                        (2, 7, 5)),
    "gru_2layer": (lambda: nn.GRU(4, 6, num_layers=2), (9, 3, 4)),
    "rnn_relu_bidir": (lambda: nn.RNN(3, 5, nonlinearity="relu", bidirectional=True), (6, 2, 3)),
}


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    for i, (name, (make, xshape)) in enumerate(sorted(MODELS.items())):
        torch.manual_seed(20261207 + i)
        m = make().eval()
        x = torch.randn(xshape)
        with torch.no_grad():
            out = m(x)
        y, rest = out
        io = {"x": x, "y": y}
        if isinstance(rest, tuple):
            io["h_n"], io["c_n"] = rest
        else:
            io["h_n"] = rest
        meta = {"generator": "tests/golden/make_recurrent_golden.py", "torch": torch.__version__,
                "repr": repr(m)}
        write_safetensors(os.path.join(OUT, f"{name}.state.safetensors"), dict(m.state_dict()), meta)
        write_safetensors(os.path.join(OUT, f"{name}.io.safetensors"), io, meta)
        print(name, list(m.state_dict().keys()))


if __name__ == "__main__":
    main()
