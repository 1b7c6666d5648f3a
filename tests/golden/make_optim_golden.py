#!/usr/bin/env python3
"""Writes tests/golden/optim_golden.h: PyTorch reference trajectories for the
optimizers (torch.optim.SGD, Adam, AdamW).

Run with a Python that has torch (the tests themselves never need it):
    /usr/bin/python3 tests/golden/make_optim_golden.py

Each case builds a small model (nn.Linear(4, 3), or nn.Sequential of
nn.Linear(4, 3) and nn.Linear(3, 2) for the parameter-group cases), sets every
parameter's .grad from fixed values, and takes 3 optimizer steps. It records
the initial parameters, the gradients of each step, the parameters after each
step and the optimizer state after the last step, all float32 on the CPU,
flattened and concatenated in named_parameters() order. The output is
deterministic (fixed seed), small and meant to be committed. Floats are printed
with 9 significant digits, which round-trips every float32 exactly.
"""
import os

import torch
import torch.nn as nn

SEED = 20240607
STEPS = 3

# name, model, optimizer kind, torch kwargs, group (prefix, lr, weight_decay) or
# None, grad scale per step (decreasing magnitudes make amsgrad's max matter).
CASES = [
    ("sgd_plain", "linear", "sgd", dict(lr=0.1), None, (1.0, 1.0, 1.0)),
    ("sgd_momentum", "linear", "sgd", dict(lr=0.1, momentum=0.9), None, (1.0, 1.0, 1.0)),
    ("sgd_dampening", "linear", "sgd", dict(lr=0.1, momentum=0.9, dampening=0.1), None,
     (1.0, 1.0, 1.0)),
    ("sgd_nesterov", "linear", "sgd", dict(lr=0.1, momentum=0.9, nesterov=True), None,
     (1.0, 1.0, 1.0)),
    ("sgd_weight_decay", "linear", "sgd", dict(lr=0.1, momentum=0.9, weight_decay=0.05), None,
     (1.0, 1.0, 1.0)),
    ("sgd_wd_no_momentum", "linear", "sgd", dict(lr=0.05, weight_decay=0.1), None,
     (1.0, 1.0, 1.0)),
    ("adam", "linear", "adam", dict(lr=0.01), None, (1.0, 1.0, 1.0)),
    ("adam_betas_wd", "linear", "adam",
     dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1), None, (1.0, 1.0, 1.0)),
    ("adam_amsgrad", "linear", "adam", dict(lr=0.01, amsgrad=True), None, (1.0, 0.02, 0.01)),
    ("adamw_default", "linear", "adamw", dict(lr=0.01), None, (1.0, 1.0, 1.0)),
    ("adamw_wd", "linear", "adamw", dict(lr=0.01, weight_decay=0.1), None, (1.0, 1.0, 1.0)),
    ("adamw_amsgrad", "linear", "adamw", dict(lr=0.01, weight_decay=0.1, amsgrad=True), None,
     (1.0, 0.02, 0.01)),
    ("sgd_groups", "seq", "sgd", dict(lr=0.1, momentum=0.9), ("1.", 0.01, 0.1),
     (1.0, 1.0, 1.0)),
    ("adamw_groups", "seq", "adamw", dict(lr=0.01, weight_decay=0.01), ("0.", 0.05, 0.0),
     (1.0, 1.0, 1.0)),
]

STATE_KEYS = {"sgd": ["momentum_buffer"],
              "adam": ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
              "adamw": ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]}


def c_float(v):
    s = "%.9g" % v
    if s in ("inf", "-inf", "nan"):
        raise ValueError("non-finite value in a fixture")
    if not any(ch in s for ch in ".eE"):
        s += ".0"
    return s + "f"


def c_floats(vals):
    body = []
    for i in range(0, len(vals), 6):
        body.append("    " + " ".join(c_float(v) + "," for v in vals[i:i + 6]))
    return "\n".join(body)


def c_double(v):
    return repr(float(v))


def flat(tensors):
    out = []
    for t in tensors:
        out.extend(t.detach().to(torch.float32).reshape(-1).tolist())
    return out


def build(model, g):
    if model == "linear":
        m = nn.Linear(4, 3)
    else:
        m = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    # Deterministic weights independent of torch's init RNG stream.
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.rand(p.shape, generator=g) * 2 - 1)
    return m


def make_opt(kind, kwargs, named, group):
    if group is None:
        groups = [{"params": [p for _, p in named]}]
    else:
        prefix, glr, gwd = group
        rest = [p for n, p in named if not n.startswith(prefix)]
        moved = [p for n, p in named if n.startswith(prefix)]
        groups = [{"params": rest}, {"params": moved, "lr": glr, "weight_decay": gwd}]
    kwargs = dict(kwargs, foreach=False)
    if kind == "sgd":
        return torch.optim.SGD(groups, **kwargs)
    if kind == "adam":
        return torch.optim.Adam(groups, **kwargs)
    return torch.optim.AdamW(groups, **kwargs)


def run_case(case, g):
    name, model, kind, kwargs, group, scales = case
    m = build(model, g)
    named = list(m.named_parameters())
    opt = make_opt(kind, kwargs, named, group)
    hp = opt.defaults
    init = flat([p for _, p in named])
    grads, after = [], []
    for s in range(STEPS):
        for _, p in named:
            p.grad = (torch.randn(p.shape, generator=g) * scales[s]).to(torch.float32)
        grads.append(flat([p.grad for _, p in named]))
        opt.step()
        after.append(flat([p for _, p in named]))
    # State after the last step, by "<param>.<key>" in named_parameters order.
    state = []
    for pname, p in named:
        st = opt.state[p]
        for key in STATE_KEYS[kind]:
            if key in st and st[key] is not None:
                state.append(("%s.%s" % (pname, key), flat([st[key]])))
        if "step" in st:
            state.append(("%s.step" % pname, [float(st["step"])]))
    return {
        "name": name, "model": model, "kind": kind, "hp": hp, "group": group,
        "names": [n for n, _ in named], "numel": [p.numel() for _, p in named],
        "init": init, "grads": grads, "after": after, "state": state,
    }


def emit(cases):
    out = []
    out.append("/* tests/golden/optim_golden.h - GENERATED by make_optim_golden.py with\n"
               " * torch %s; do not edit. Regenerate with\n"
               " *     /usr/bin/python3 tests/golden/make_optim_golden.py\n"
               " * Parameters are flattened and concatenated in named_parameters() order;\n"
               " * grads[s] is what .grad held before step s + 1 and after[s] the parameters\n"
               " * after it. State is the optimizer's after the last step. */\n"
               % torch.__version__)
    out.append("#ifndef NNM_TESTS_OPTIM_GOLDEN_H\n#define NNM_TESTS_OPTIM_GOLDEN_H\n")
    out.append("#include <stddef.h>\n#include <stdint.h>\n")
    out.append("#define OG_STEPS %d\n" % STEPS)
    out.append("enum og_kind { OG_SGD, OG_ADAM, OG_ADAMW };\n")
    out.append("enum og_model { OG_LINEAR_4_3, OG_SEQ_4_3_2 };\n")
    out.append("""typedef struct og_state {
    const char *name;           /* "<param>.<key>" */
    int64_t numel;
    const float *values;
} og_state;

typedef struct og_case {
    const char *name;
    int kind;                   /* enum og_kind */
    int model;                  /* enum og_model */
    double lr, momentum, dampening, weight_decay;
    int nesterov, amsgrad;
    double beta1, beta2, eps;
    const char *group_prefix;   /* NULL: one group */
    double group_lr, group_weight_decay;
    int n_params;
    const char *const *names;
    const int64_t *numel;
    int64_t total;              /* elements over all parameters */
    const float *init;          /* [total] */
    const float *grads;         /* [OG_STEPS][total] */
    const float *after;         /* [OG_STEPS][total] */
    int n_state;
    const og_state *state;
} og_case;
""")
    kinds = {"sgd": "OG_SGD", "adam": "OG_ADAM", "adamw": "OG_ADAMW"}
    models = {"linear": "OG_LINEAR_4_3", "seq": "OG_SEQ_4_3_2"}
    for c in cases:
        n = c["name"]
        total = sum(c["numel"])
        out.append("/* ---- %s ---- */" % n)
        out.append("static const char *const og_%s_names[] = {%s};" %
                   (n, ", ".join('"%s"' % x for x in c["names"])))
        out.append("static const int64_t og_%s_numel[] = {%s};" %
                   (n, ", ".join(str(x) for x in c["numel"])))
        out.append("static const float og_%s_init[%d] = {\n%s\n};" % (n, total, c_floats(c["init"])))
        g = [v for s in c["grads"] for v in s]
        out.append("static const float og_%s_grads[%d] = {\n%s\n};" % (n, len(g), c_floats(g)))
        a = [v for s in c["after"] for v in s]
        out.append("static const float og_%s_after[%d] = {\n%s\n};" % (n, len(a), c_floats(a)))
        for i, (sname, vals) in enumerate(c["state"]):
            out.append("static const float og_%s_s%d[%d] = {\n%s\n};" %
                       (n, i, len(vals), c_floats(vals)))
        if c["state"]:
            out.append("static const og_state og_%s_state[] = {" % n)
            for i, (sname, vals) in enumerate(c["state"]):
                out.append('    {"%s", %d, og_%s_s%d},' % (sname, len(vals), n, i))
            out.append("};\n")
        else:
            out.append("/* no state (torch keeps none for plain SGD) */\n")
    out.append("static const og_case og_cases[] = {")
    for c in cases:
        n, hp = c["name"], c["hp"]
        betas = hp.get("betas", (0.0, 0.0))
        grp = c["group"]
        out.append("    {\"%s\", %s, %s," % (n, kinds[c["kind"]], models[c["model"]]))
        out.append("     %s, %s, %s, %s," % (c_double(hp["lr"]), c_double(hp.get("momentum", 0.0)),
                                               c_double(hp.get("dampening", 0.0)),
                                               c_double(hp.get("weight_decay", 0.0))))
        out.append("     %d, %d, %s, %s, %s," % (int(hp.get("nesterov", False)),
                                                 int(hp.get("amsgrad", False)),
                                                 c_double(betas[0]), c_double(betas[1]),
                                                 c_double(hp.get("eps", 0.0))))
        if grp is None:
            out.append("     NULL, 0.0, 0.0,")
        else:
            out.append('     "%s", %s, %s,' % (grp[0], c_double(grp[1]), c_double(grp[2])))
        out.append("     %d, og_%s_names, og_%s_numel, %d, og_%s_init, og_%s_grads, og_%s_after,"
                   % (len(c["names"]), n, n, sum(c["numel"]), n, n, n))
        if c["state"]:
            out.append("     %d, og_%s_state}," % (len(c["state"]), n))
        else:
            out.append("     0, NULL},")
    out.append("};\n")
    out.append("#define OG_NCASES ((int)(sizeof og_cases / sizeof og_cases[0]))\n")
    out.append("#endif /* NNM_TESTS_OPTIM_GOLDEN_H */\n")
    return "\n".join(out)


def main():
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    cases = [run_case(c, g) for c in CASES]
    # amsgrad must actually take the max somewhere, or the case proves nothing.
    for c in cases:
        if c["hp"].get("amsgrad"):
            st = dict(c["state"])
            mx = [st[k] for k in st if k.endswith("max_exp_avg_sq")]
            sq = [st[k] for k in st if k.endswith(".exp_avg_sq")]
            assert any(a != b for m1, s1 in zip(mx, sq) for a, b in zip(m1, s1)), c["name"]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim_golden.h")
    with open(path, "w") as f:
        f.write(emit(cases))
    print("wrote", path)


if __name__ == "__main__":
    main()
