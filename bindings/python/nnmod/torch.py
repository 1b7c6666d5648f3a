"""nnmod.torch: PyTorch models to nnmod manifests.

    import nnmod.torch
    manifest, weights = nnmod.torch.export(model, "model.json", example_input)
    m = nnmod.from_manifest(manifest)          # same outputs as model(x)

A model made only of layers nnmod has, in containers (nn.Sequential,
ModuleList, ModuleDict), is written as that tree. Any other nn.Module is
traced with torch.fx and written as a `graph` container (docs/manifest.md):
each call of a submodule is a node; functional ops (x + y, torch.cat,
F.relu, ...) become small stateless children (add, concat, relu, ...). A
submodule defined in a custom module but held in the trace only through its
leaves is kept as a `module_dict` so that every state_dict key keeps its
PyTorch name.

What maps to what is data, not code: LAYER_TYPES (PyTorch class -> nnmod
layer type, when it is not the class name in snake_case), CONFIG_OVERRIDES
(config values not read straight from the module's attributes) and FUNCTIONS
(fx call targets -> layer type and argument names). A layer's config keys are
the ones its plugin declares (its config schema), filled from the PyTorch
module's attributes of the same names, so a layer added to nnmod with
PyTorch's argument names is exported without a change here. Only layers some
loaded plugin provides are used; anything else fails with
nnmod.UnsupportedError naming the module or op.
"""
import hashlib
import json
import operator
import os
import re
import ctypes
from ctypes import POINTER, byref

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F

from . import _lib as L
from ._context import _decode, default_context
from ._errors import UnsupportedError
from ._module import from_manifest
from ._safetensors import save_safetensors

__all__ = ["export", "LAYER_TYPES", "CONFIG_OVERRIDES", "FUNCTIONS", "CONTAINERS"]

# PyTorch class name -> nnmod layer type, where snake_case(class) is not it.
LAYER_TYPES = {
    "ReLU": "relu", "GELU": "gelu", "SiLU": "silu", "LeakyReLU": "leaky_relu", "ELU": "elu",
    "Hardswish": "hardswish", "MSELoss": "mse_loss", "CrossEntropyLoss": "cross_entropy",
    "NLLLoss": "nll_loss", "BCEWithLogitsLoss": "bce_with_logits",
    "NonDynamicallyQuantizableLinear": "linear",
}

# Containers: PyTorch class -> nnmod type. Sequential is called; the others
# only hold children (a graph calls into them).
CONTAINERS = {"Sequential": "sequential", "ModuleList": "module_list",
              "ModuleDict": "module_dict"}

# Config values that are not the module's attribute of the same name:
# {class: {key: fn(module) -> value or None (leave the layer's default)}}.
CONFIG_OVERRIDES = {
    "Linear": {"bias": lambda m: m.bias is not None},
    "NonDynamicallyQuantizableLinear": {"bias": lambda m: m.bias is not None},
    "Conv1d": {"bias": lambda m: m.bias is not None},
    "Conv2d": {"bias": lambda m: m.bias is not None},
    "ConvTranspose2d": {"bias": lambda m: m.bias is not None},
    "Softmax": {"dim": lambda m: m.dim},
    "LogSoftmax": {"dim": lambda m: m.dim},
    "CrossEntropyLoss": {"weight": lambda m: None},
    "NLLLoss": {"weight": lambda m: None},
}

# fx call targets (functions, or method names as strings) -> (nnmod type,
# names of the arguments after the tensor inputs, how many tensor inputs:
# an int, or "list" for a first argument that is a list of tensors).
_ADD = ("add", (), 2)
_MUL = ("mul", (), 2)
_CAT = ("concat", ("dim",), "list")
FUNCTIONS = {
    operator.add: _ADD, torch.add: _ADD, "add": _ADD,
    operator.mul: _MUL, torch.mul: _MUL, "mul": _MUL,
    torch.cat: _CAT, torch.concat: _CAT,
    torch.relu: ("relu", (), 1), F.relu: ("relu", ("inplace",), 1), "relu": ("relu", (), 1),
    torch.tanh: ("tanh", (), 1), F.tanh: ("tanh", (), 1), "tanh": ("tanh", (), 1),
    torch.sigmoid: ("sigmoid", (), 1), F.sigmoid: ("sigmoid", (), 1),
    "sigmoid": ("sigmoid", (), 1),
    F.gelu: ("gelu", ("approximate",), 1), F.silu: ("silu", ("inplace",), 1),
    F.leaky_relu: ("leaky_relu", ("negative_slope", "inplace"), 1),
    F.elu: ("elu", ("alpha", "inplace"), 1), F.hardswish: ("hardswish", ("inplace",), 1),
    F.softmax: ("softmax", ("dim",), 1), torch.softmax: ("softmax", ("dim",), 1),
    "softmax": ("softmax", ("dim",), 1),
    F.log_softmax: ("log_softmax", ("dim",), 1), torch.log_softmax: ("log_softmax", ("dim",), 1),
    "log_softmax": ("log_softmax", ("dim",), 1),
    torch.flatten: ("flatten", ("start_dim", "end_dim"), 1),
    "flatten": ("flatten", ("start_dim", "end_dim"), 1),
}

_CONFIG_INT, _CONFIG_FLOAT, _CONFIG_BOOL, _CONFIG_STR, _CONFIG_INTS, _CONFIG_FLOATS, \
    _CONFIG_STRS, _CONFIG_INT_OR_INTS, _CONFIG_ANY = range(9)  # the last two: ABI 1.3


def _snake(name):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _layer_type(cls_name):
    return LAYER_TYPES.get(cls_name) or CONTAINERS.get(cls_name) or _snake(cls_name)


class _Schema:
    """The loaded layers of a context: version and declared config fields."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.cache = {}

    def find(self, layer):
        if layer not in self.cache:
            vt = POINTER(L.LayerVtableHead)()
            with self.ctx.lock:
                st = L.nnm_layer_find(self.ctx._h, layer.encode(), byref(vt))
            vt = ctypes.cast(vt, POINTER(L.LayerVtable12))
            if st:
                self.cache[layer] = None
            else:
                v = vt.contents
                fields = None
                if v.struct_size >= L.LayerVtable12.n_config_fields.offset + 4 and v.config_fields:
                    fields = [(_decode(v.config_fields[i].key), v.config_fields[i].type)
                              for i in range(v.n_config_fields)]
                self.cache[layer] = {"version": f"^{v.version_major}.{v.version_minor}",
                                     "fields": fields, "n_outputs": v.n_outputs}
        return self.cache[layer]


def _config_value(key, ftype, value, where):
    """A PyTorch attribute as a manifest config value of the declared type,
    or None to leave the layer's default."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        raise UnsupportedError(f"{where}: config '{key}' is a tensor in PyTorch; nnmod "
                               "layers take scalars, lists and strings")
    if ftype == _CONFIG_BOOL:
        return bool(value)
    if ftype == _CONFIG_INT:
        if isinstance(value, (tuple, list)):
            if len(set(value)) != 1:
                raise UnsupportedError(f"{where}: config '{key}' = {value!r}: the nnmod layer "
                                       "takes one integer")
            value = value[0]
        return int(value)
    if ftype == _CONFIG_FLOAT:
        return float(value)
    if ftype == _CONFIG_STR:
        return str(value)
    if ftype in (_CONFIG_INT_OR_INTS, _CONFIG_ANY):
        # as PyTorch holds it: an int, a tuple of ints (a list), a string, ...
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        if isinstance(value, str):
            return value
        if isinstance(value, (tuple, list, torch.Size)):
            if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                return [int(v) for v in value]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                return [float(v) for v in value]
            if all(isinstance(v, str) for v in value):
                return [str(v) for v in value]
        raise UnsupportedError(f"{where}: config '{key}' = {value!r} has no manifest form")
    if ftype in (_CONFIG_INTS, _CONFIG_FLOATS, _CONFIG_STRS):
        seq = list(value) if isinstance(value, (tuple, list, torch.Size)) else [value]
        conv = {_CONFIG_INTS: int, _CONFIG_FLOATS: float, _CONFIG_STRS: str}[ftype]
        return [conv(v) for v in seq]
    return None


class _Exporter:
    def __init__(self, ctx):
        self.schema = _Schema(ctx)
        self.plugins = {}

    def _use(self, layer, where):
        info = self.schema.find(layer)
        if info is None:
            raise UnsupportedError(f"{where}: nnmod has no layer '{layer}' (no loaded plugin "
                                   "provides it)")
        self.plugins[layer] = info["version"]
        return info

    def config_of(self, m, layer, info, where):
        cls = type(m).__name__
        over = CONFIG_OVERRIDES.get(cls, {})
        cfg = {}
        for key, ftype in info["fields"] or ():
            if key in over:
                value = over[key](m)
            elif hasattr(m, key):
                value = getattr(m, key)
            else:
                continue
            v = _config_value(key, ftype, value, where)
            if v is not None:
                cfg[key] = v
        return cfg

    def direct_ok(self, m):
        """Can m be written as a tree without tracing?"""
        cls = type(m).__name__
        if cls in CONTAINERS:
            return all(self.direct_ok(c) for c in m.children()) and (
                cls != "Sequential" or len(m) > 0)
        kids = list(m.children())
        return not kids and self.schema.find(_layer_type(cls)) is not None

    def direct(self, m, where):
        cls = type(m).__name__
        layer = _layer_type(cls)
        info = self._use(layer, f"{where} ({cls})")
        node = {"type": layer}
        if cls in CONTAINERS:
            node["children"] = [dict(name=n, **self.direct(c, f"{where}.{n}" if where else n))
                                for n, c in m.named_children()]
            return node
        if list(m.children()):
            raise UnsupportedError(f"{where or '<root>'} ({cls}): a module with children that "
                                   "nnmod has as one layer")
        cfg = self.config_of(m, layer, info, f"{where or '<root>'} ({cls})")
        if cfg:
            node["config"] = cfg
        return node


class _Tracer(torch.fx.Tracer):
    def __init__(self, exporter):
        super().__init__()
        self.exporter = exporter

    def is_leaf_module(self, m, qualname):
        cls = type(m).__name__
        if cls == "Sequential":
            return self.exporter.direct_ok(m)
        if cls in CONTAINERS:
            return False
        if not list(m.children()) and self.exporter.schema.find(_layer_type(cls)) is not None:
            return True
        return super().is_leaf_module(m, qualname)


def _graph(exporter, model):
    tracer = _Tracer(exporter)
    g = tracer.trace(model)
    inputs, nodes, outputs = [], [], None
    ref = {}                    # fx node -> "NAME" or "NAME:K"
    called = {}                 # module path -> fx node name (each called once)
    used = set()                # module paths called
    synth = []                  # (name, manifest node) of functional children
    taken = {n for n, _ in model.named_children()}

    def r(a, where):
        if isinstance(a, torch.fx.Node):
            if a not in ref:
                raise UnsupportedError(f"{where}: input '{a.name}' is not a tensor nnmod "
                                       "computes")
            return ref[a]
        raise UnsupportedError(f"{where}: a constant input {a!r} (nnmod graph nodes take "
                               "tensors only)")

    for n in g.nodes:
        where = f"fx node '{n.name}' ({n.op} {getattr(n.target, '__name__', n.target)})"
        if n.op == "placeholder":
            inputs.append(n.name)
            ref[n] = n.name
        elif n.op == "call_module":
            path = n.target
            if n.kwargs:
                raise UnsupportedError(f"{where}: keyword arguments to a module call")
            sub = model.get_submodule(path)
            cls = type(sub).__name__
            if cls != "Sequential" and exporter.schema.find(_layer_type(cls)) is None:
                raise UnsupportedError(f"module '{path}' ({cls}): nnmod has no layer "
                                       f"'{_layer_type(cls)}'")
            if path in called:
                # A graph node calls its module once. A stateless module used
                # twice (one ReLU applied in two places) gets a twin child; a
                # module with weights called twice cannot be written.
                if any(True for _ in sub.parameters()) or any(True for _ in sub.buffers()):
                    raise UnsupportedError(f"{where}: module '{path}' has weights and is called "
                                           "twice; an nnmod graph calls each module once")
                name = re.sub(r"[^A-Za-z0-9_]", "_", n.name)
                while name in taken:
                    name += "_"
                taken.add(name)
                synth.append(dict(name=name, **exporter.direct(sub, path)))
                nodes.append(f"{name}: " + ", ".join(r(a, where) for a in n.args))
                ref[n] = name
                continue
            called[path] = n.name
            used.add(path)
            nodes.append(f"{path}: " + ", ".join(r(a, where) for a in n.args))
            ref[n] = path
        elif n.op in ("call_function", "call_method"):
            if n.target is operator.getitem and isinstance(n.args[0], torch.fx.Node) \
                    and isinstance(n.args[1], int):
                base = r(n.args[0], where)
                if ":" in base:
                    raise UnsupportedError(f"{where}: indexing a tensor")
                ref[n] = f"{base}:{n.args[1]}"
                continue
            spec = FUNCTIONS.get(n.target)
            if spec is None:
                name = n.target if isinstance(n.target, str) else \
                    f"{getattr(n.target, '__module__', '') or ''}.{n.target.__name__}".lstrip(".")
                raise UnsupportedError(f"unsupported op {name} ({n.op}) at fx node '{n.name}'")
            layer, argnames, n_tensors = spec
            info = exporter._use(layer, where)
            args = list(n.args)
            if n_tensors == "list":
                tens, rest = list(args[0]), args[1:]
            else:
                tens, rest = args[:n_tensors], args[n_tensors:]
            refs = [r(a, where) for a in tens]
            given = dict(zip(argnames, rest))
            given.update({k: v for k, v in n.kwargs.items() if k != "out"})
            fields = dict(info["fields"] or ())
            cfg = {}
            for k, v in given.items():
                if k == "inplace":
                    continue
                if k not in fields:
                    raise UnsupportedError(f"{where}: argument '{k}' has no counterpart in "
                                           f"nnmod's '{layer}'")
                cv = _config_value(k, fields[k], v, where)
                if cv is not None:
                    cfg[k] = cv
            name = re.sub(r"[^A-Za-z0-9_]", "_", n.name)
            while name in taken:
                name += "_"
            taken.add(name)
            child = {"name": name, "type": layer}
            if cfg:
                child["config"] = cfg
            synth.append(child)
            nodes.append(f"{name}: " + ", ".join(refs))
            ref[n] = name
        elif n.op == "output":
            out = n.args[0]
            outs = out if isinstance(out, (tuple, list)) else (out,)
            outputs = [r(o, "the model's output") for o in outs]
        elif n.op == "get_attr":
            raise UnsupportedError(f"{where}: forward reads the attribute '{n.target}' "
                                   "directly; nnmod graphs call modules, so hold it in a layer")
        else:
            raise UnsupportedError(f"{where}: unsupported fx op '{n.op}'")

    # The tree below the graph: the called modules under their PyTorch paths,
    # intermediate modules as containers that only hold children.
    def subtree(prefix, mod):
        kids = []
        for cname, c in mod.named_children():
            p = f"{prefix}.{cname}" if prefix else cname
            if p in used:
                kids.append(dict(name=cname, **exporter.direct(c, p)))
            elif any(u.startswith(p + ".") for u in used):
                ctype = CONTAINERS.get(type(c).__name__, "module_dict")
                if ctype == "sequential":
                    ctype = "module_dict"
                exporter._use(ctype, p)
                kids.append({"name": cname, "type": ctype, "children": subtree(p, c)})
        return kids

    children = subtree("", model) + synth
    exporter._use("graph", "<root>")
    cfg = {"inputs": inputs, "nodes": nodes}
    if outputs is not None:
        cfg["outputs"] = outputs
    unused = [n for n, _ in model.named_modules() if n and n not in used
              and not any(u.startswith(n + ".") for u in used)
              and not any(n.startswith(u + ".") for u in used)]
    return {"type": "graph", "config": cfg, "children": children}, unused


def export(model, path, example_input, weights=None, ctx=None, check=True, rtol=1e-4, atol=1e-5):
    """Writes `model` (a torch.nn.Module) as an nnmod manifest at `path`
    (.json: JSON, else msgpack is not written here: use .json) and its state
    dict as safetensors (`weights`, default: path with .safetensors), the
    manifest naming the weights with their sha256.

    example_input: a tensor or a tuple of tensors. With check, the exported
    model is loaded back in nnmod and run on it (both in eval mode); outputs
    that differ beyond rtol/atol fail with nnmod.Error. Returns (manifest
    path, weights path). Unsupported modules or ops raise
    nnmod.UnsupportedError naming them; modules that forward never calls are
    left out (their weights too), and listed in the manifest's metadata.
    """
    if not path.endswith(".json"):
        raise ValueError("nnmod.torch.export writes JSON manifests: give a path ending in .json")
    ctx = ctx or default_context()
    weights = weights or (os.path.splitext(path)[0] + ".safetensors")
    ex = _Exporter(ctx)
    unused = []
    if ex.direct_ok(model):
        root = ex.direct(model, "")
    else:
        root, unused = _graph(ex, model)
    meta = {"exported_from": f"torch {torch.__version__}", "torch_class": type(model).__name__}
    if unused:
        meta["not_exported"] = ", ".join(unused)
    doc = {"format": "nnmod.manifest", "version": 1, "plugins": dict(sorted(ex.plugins.items())),
           "root": root, "metadata": meta}

    # The keys nnmod's tree has: build it once without weights.
    tmp = path + ".noweights.json"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    try:
        probe = from_manifest(tmp, weights={}, ctx=ctx, strict=False)
        keys = list(probe.state_dict())
        shapes = {k: t.shape for k, t in probe.state_dict().items()}
        del probe
    finally:
        os.unlink(tmp)
    sd = model.state_dict()
    tensors = {}
    for k in keys:
        if k not in sd:
            raise UnsupportedError(f"nnmod's tree has '{k}', the PyTorch state_dict has not "
                                   "(a layer whose parameters differ from PyTorch's)")
        v = sd[k].detach().cpu()
        if v.is_floating_point():
            v = v.float()
        a = np.array(v.numpy(), order="C", copy=True)  # 0-d stays 0-d
        if tuple(a.shape) != tuple(shapes[k]):
            raise UnsupportedError(f"'{k}': PyTorch {list(a.shape)}, nnmod {list(shapes[k])} "
                                   "(a config the export mapped wrongly)")
        tensors[k] = a
    save_safetensors(tensors, weights, metadata={"exported_from": meta["exported_from"]},
                     ctx=ctx)
    with open(weights, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    rel = os.path.relpath(os.path.abspath(weights), os.path.dirname(os.path.abspath(path)))
    doc["weights"] = {"path": rel, "sha256": digest}
    doc = {k: doc[k] for k in ("format", "version", "plugins", "root", "weights", "metadata")}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")

    if check:
        _check(model, path, example_input, ctx, rtol, atol)
    return path, weights


def _check(model, path, example_input, ctx, rtol, atol):
    from ._errors import Error
    xs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            want = model(*xs)
    finally:
        model.train(was)
    m = from_manifest(path, ctx=ctx).eval()
    from ._autograd import no_grad
    from ._tensor import tensor
    with no_grad():
        got = m(*[tensor(x.detach().cpu().numpy(), ctx=ctx) for x in xs])
    want = want if isinstance(want, (tuple, list)) else (want,)
    got = got if isinstance(got, tuple) else (got,)
    if len(want) != len(got):
        raise Error(f"export check: PyTorch returns {len(want)} outputs, nnmod {len(got)}")
    for i, (w, g) in enumerate(zip(want, got)):
        w = w.detach().cpu().numpy()
        g = g.numpy()
        if w.shape != g.shape or not np.allclose(g, w, rtol=rtol, atol=atol):
            err = float(np.max(np.abs(g - w))) if w.shape == g.shape else float("nan")
            raise Error(f"export check: output {i} differs from PyTorch's (shapes "
                        f"{list(w.shape)} vs {list(g.shape)}, max abs error {err})")
