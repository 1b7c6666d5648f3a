"""nnmod.torch: PyTorch models to nnmod manifests.

    import nnmod.torch
    manifest, weights = nnmod.torch.export(model, "model.json", example_input)
    m = nnmod.from_manifest(manifest)          # same outputs as model(x)
    print(nnmod.torch.check(model, example_input))   # what would not export, no files

How: the model runs ONCE EAGERLY on the example input (in eval mode, no
grad) under a tracer of our own, not torch.fx (whose symbolic proxies fail on
`n, c, h, w = x.shape` in torch 1.13): a TorchFunctionMode records every torch
function and tensor method with its real arguments, and nn.Module.__call__ is
wrapped so each module call is recorded too. Python control flow is followed
as it runs; shapes are real numbers.

The export is HIERARCHICAL, module by module, so that state-dict names and
module paths are PyTorch's:
  * a module whose class (the one defining its forward) maps to a loaded nnmod
    layer is a leaf (LAYER_TYPES, else the class name in snake_case);
  * nn.Sequential / ModuleList / ModuleDict with their own forward are
    `sequential` / `module_list` / `module_dict`;
  * any other module becomes a `graph` whose nodes call ITS children and the
    functional ops its forward ran (each op a small stateless child, as
    docs/manifest.md says); parameters and buffers it reads itself
    (self.class_token) become the graph's `parameters` / `buffers`, those
    of its descendants (self.emb.weight: weight tying) its `reads`, and
    non-persistent buffers and tensors made from no input its `constants`
    (values in the manifest, outside the state dict).
A module called twice is written with the node syntax `NODE = PATH(...)`.

Sizes: the model is traced a second time with one more sample in the batch
(dim 0 of every input), or with the dims `dynamic_dims` names (a sequence
length) at other sizes. Size arguments that change with them (x.view(n, -1),
cls.expand(x.size(0), -1, -1), torch.zeros(n, ...), pos[:, :t],
torch.arange(t)) are written as -1 or read from a tensor's dim at run time
(config `from_input` / `from_dim`), so an export at batch 1 runs at batch 64.

Sequence layers (LSTM/GRU/RNN, the cells, MultiheadAttention, the
Transformer* modules) are leaves like any other; LEAF_INPUTS puts their
optional inputs and masks in nnmod's order. In-place writes into slices are
functionalised (where(mask, padded value, x)); `self.training` of a module
exported as a graph reads as a false sentinel while traced, so that
F.dropout(x, p, training=self.training) becomes a dropout layer.

What maps to what is data: LAYER_TYPES, CONFIG_OVERRIDES, CONTAINERS and
OPS (function or method name -> handler that emits nnmod ops with SPEC's
names). Anything nnmod lacks is collected, with counts and where, and raised
at the end as ONE nnmod.UnsupportedError listing every missing layer,
function and construct.
"""
import collections
import contextlib
import hashlib
import inspect
import json
import os
import re
import shutil
import sys
import tempfile
import types
import ctypes
from ctypes import POINTER, byref

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from . import _lib as L
from ._context import _decode, default_context
from ._errors import Error, UnsupportedError
from ._module import from_manifest
from ._safetensors import save_safetensors

__all__ = ["export", "check", "Report", "LAYER_TYPES", "CONFIG_OVERRIDES", "OPS", "CONTAINERS"]

# PyTorch class name -> nnmod layer type, where snake_case(class) is not it.
LAYER_TYPES = {
    "ReLU": "relu", "ReLU6": "relu6", "GELU": "gelu", "SiLU": "silu", "LeakyReLU": "leaky_relu",
    "ELU": "elu", "Hardswish": "hardswish", "Hardsigmoid": "hardsigmoid", "PReLU": "prelu",
    "MSELoss": "mse_loss", "CrossEntropyLoss": "cross_entropy", "NLLLoss": "nll_loss",
    "BCEWithLogitsLoss": "bce_with_logits", "BCELoss": "bce_loss", "KLDivLoss": "kl_div",
    "CTCLoss": "ctc_loss",
    "NonDynamicallyQuantizableLinear": "linear",
    "Upsample": "upsample", "UpsamplingNearest2d": "upsample",
    "UpsamplingBilinear2d": "upsample", "StochasticDepth": "stochastic_depth",
    "RNNCell": "rnn_cell", "LSTMCell": "lstm_cell", "GRUCell": "gru_cell",
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
    "Conv3d": {"bias": lambda m: m.bias is not None},
    "ConvTranspose1d": {"bias": lambda m: m.bias is not None},
    "ConvTranspose2d": {"bias": lambda m: m.bias is not None},
    "Softmax": {"dim": lambda m: m.dim},
    "LogSoftmax": {"dim": lambda m: m.dim},
    "CrossEntropyLoss": {"weight": lambda m: _weight_list(m.weight)},
    "NLLLoss": {"weight": lambda m: _weight_list(m.weight)},
    "BCELoss": {"weight": lambda m: _weight_list(m.weight)},
    "BCEWithLogitsLoss": {"weight": lambda m: _weight_list(m.weight),
                          "pos_weight": lambda m: _weight_list(m.pos_weight)},
    "MultiMarginLoss": {"weight": lambda m: _weight_list(m.weight)},
    "UpsamplingNearest2d": {"mode": lambda m: "nearest"},
    "UpsamplingBilinear2d": {"mode": lambda m: "bilinear", "align_corners": lambda m: True},
    "MultiheadAttention": {"bias": lambda m: m.in_proj_bias is not None,
                           "add_bias_kv": lambda m: m.bias_k is not None},
}

def _weight_list(w):
    """A loss's weight buffer as its config list (the layer registers the
    buffer again under the same name); a tensor of more than one dim stays a
    tensor, which the export reports as having no config form."""
    if w is None or w.dim() != 1:
        return w
    return [float(v) for v in w.detach().cpu().tolist()]


def _tf_activation(layer):
    """nn.Transformer*Layer's activation as nnmod's config string."""
    import torch.nn.functional as F
    a = layer.activation
    if a is F.relu or isinstance(a, torch.nn.ReLU):
        return "relu"
    if (a is F.gelu) or (isinstance(a, torch.nn.GELU) and a.approximate == "none"):
        return "gelu"
    raise _Unsup(f"activation {a!r} (nnmod's transformer layers take relu or gelu)")


def _tf_dropout(layer):
    """The one dropout probability of a transformer layer (PyTorch gives
    the same p to every dropout of a layer it builds)."""
    ps = {float(m.p) for m in layer.modules() if isinstance(m, torch.nn.Dropout)}
    ps |= {float(m.dropout) for m in layer.modules()
           if isinstance(m, torch.nn.MultiheadAttention)}
    if len(ps) > 1:
        raise _Unsup(f"dropout probabilities {sorted(ps)} within one layer (nnmod's "
                     "transformer layers take one)")
    return ps.pop() if ps else None


def _tf_eps(layer):
    eps = {float(m.eps) for m in layer.modules() if isinstance(m, torch.nn.LayerNorm)}
    if len(eps) > 1:
        raise _Unsup(f"layer norm eps {sorted(eps)} within one layer")
    return eps.pop() if eps else None


def _tf_layer_cfg(first=None):
    """Config of nn.TransformerEncoderLayer / DecoderLayer (first: the stack's
    first layer, for TransformerEncoder / Decoder / Transformer)."""
    pick = first or (lambda m: m)
    return {"d_model": lambda m: pick(m).self_attn.embed_dim,
            "nhead": lambda m: pick(m).self_attn.num_heads,
            "dim_feedforward": lambda m: pick(m).linear1.out_features,
            "dropout": lambda m: _tf_dropout(m),
            "activation": lambda m: _tf_activation(pick(m)),
            "layer_norm_eps": lambda m: _tf_eps(m),
            "batch_first": lambda m: bool(pick(m).self_attn.batch_first),
            "norm_first": lambda m: bool(pick(m).norm_first)}


def _tf_stack_norm(m):
    if m.norm is None:
        return False
    if not isinstance(m.norm, torch.nn.LayerNorm) or not m.norm.elementwise_affine:
        raise _Unsup(f"norm={type(m.norm).__name__} (nnmod's stacks take a LayerNorm "
                     "or none)")
    return True


CONFIG_OVERRIDES.update({
    "TransformerEncoderLayer": _tf_layer_cfg(),
    "TransformerDecoderLayer": _tf_layer_cfg(),
    "TransformerEncoder": dict(_tf_layer_cfg(lambda m: m.layers[0]),
                               num_layers=lambda m: len(m.layers), norm=_tf_stack_norm),
    "TransformerDecoder": dict(_tf_layer_cfg(lambda m: m.layers[0]),
                               num_layers=lambda m: len(m.layers), norm=_tf_stack_norm),
    "Transformer": dict(_tf_layer_cfg(lambda m: m.encoder.layers[0]),
                        batch_first=lambda m: bool(m.batch_first),
                        num_encoder_layers=lambda m: len(m.encoder.layers),
                        num_decoder_layers=lambda m: len(m.decoder.layers)),
})

# The inputs of a leaf in the nnmod layer's order, by forward argument name,
# where that differs from PyTorch's positional order or has optional
# tensors in the middle (a missing one is passed as a 0-element tensor,
# nnmod's "absent"). The masks are marked "mask": a comparison made in the
# graph (f32 0/1 in nnmod, bool in PyTorch) is cast to bool for them, and a
# constant causal mask (triu of -inf or True above the diagonal) becomes
# the config key named after "mask:" instead.
LEAF_INPUTS = {
    "MultiheadAttention": ["query", "key", "value", "key_padding_mask:mask",
                           "attn_mask:mask:is_causal"],
    "TransformerEncoderLayer": ["src", "src_mask:mask:is_causal",
                                "src_key_padding_mask:mask"],
    "TransformerEncoder": ["src", "mask:mask:is_causal", "src_key_padding_mask:mask"],
    "TransformerDecoderLayer": ["tgt", "memory", "tgt_mask:mask:tgt_is_causal",
                                "memory_mask:mask:memory_is_causal",
                                "tgt_key_padding_mask:mask", "memory_key_padding_mask:mask"],
    "TransformerDecoder": ["tgt", "memory", "tgt_mask:mask:tgt_is_causal",
                           "memory_mask:mask:memory_is_causal",
                           "tgt_key_padding_mask:mask", "memory_key_padding_mask:mask"],
    "Transformer": ["src", "tgt", "src_mask:mask:src_is_causal", "tgt_mask:mask:tgt_is_causal",
                    "memory_mask:mask:memory_is_causal", "src_key_padding_mask:mask",
                    "tgt_key_padding_mask:mask", "memory_key_padding_mask:mask"],
}
# forward arguments of a leaf that are not tensors and that the nnmod layer
# honours (or that change nothing nnmod computes): not reported
_LEAF_FLAGS = {"need_weights", "is_causal", "src_is_causal", "tgt_is_causal",
               "memory_is_causal"}

_CONFIG_INT, _CONFIG_FLOAT, _CONFIG_BOOL, _CONFIG_STR, _CONFIG_INTS, _CONFIG_FLOATS, \
    _CONFIG_STRS, _CONFIG_INT_OR_INTS, _CONFIG_ANY = range(9)  # the last two: ABI 1.3

_BARE = re.compile(r"[A-Za-z0-9_]+\Z")        # a path component graph v1 reads
_BARE_V2 = re.compile(r"[A-Za-z0-9_-]+\Z")    # v2: bare, else between backticks
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MAX_CAT = 16                                 # inputs of one concat / stack


def _snake(name):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _layer_type(cls_name):
    return LAYER_TYPES.get(cls_name) or CONTAINERS.get(cls_name) or _snake(cls_name)


def _namesake(k):
    """k is a user's class named like a torch.nn class it does not derive
    from (nanoGPT's `class LayerNorm(nn.Module)` with its own weight, bias
    and forward): not that PyTorch layer, so not the nnmod layer of its
    name either; its forward is traced."""
    if k.__module__.startswith(("torch.", "torchvision.")) or k.__module__ == "torch":
        return False
    same = getattr(torch.nn, k.__name__, None)
    return isinstance(same, type) and same is not k and not issubclass(k, same)


def _forward_class(m, schema=None):
    """The class m is exported as: the first class of its MRO, up to the one
    defining the forward m runs, that names an nnmod layer or container
    (BatchNorm2d, whose forward is _BatchNorm's; MyConv(nn.Conv2d) without a
    forward of its own), else the class defining forward (LayerNorm2d(
    nn.LayerNorm) with its own forward is not a LayerNorm)."""
    for k in type(m).__mro__:
        if schema is not None and not _namesake(k) and (
                k.__name__ in CONTAINERS or schema.find(_layer_type(k.__name__)) is not None):
            return k
        if "forward" in k.__dict__:
            return k
    return type(m)


def _quote(component):
    if _BARE_V2.match(component):
        return component
    return "`" + component.replace("`", "``") + "`"


def _qpath(path):
    return ".".join(_quote(c) for c in path.split("."))


def _fname(func):
    """A readable name for a torch function or tensor method."""
    if getattr(func, "__name__", None) == "__get__" and hasattr(func, "__self__"):
        return "Tensor." + getattr(func.__self__, "__name__", "?")
    q = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    mod = getattr(func, "__module__", None) or ""
    if q.startswith("_TensorBase.") or q.startswith("Tensor."):
        return "Tensor." + q.split(".", 1)[1]
    if q.startswith("_VariableFunctionsClass.") or mod == "torch":
        return "torch." + q.rsplit(".", 1)[-1]
    if mod.startswith("torch.nn.functional"):
        return "torch.nn.functional." + q.lstrip("_")
    if mod.startswith("torchvision"):
        return f"{mod}.{q}"
    return "torch." + q


def _opname(func):
    """The key of OPS: the function's or method's own name."""
    if getattr(func, "__name__", None) == "__get__" and hasattr(func, "__self__"):
        return getattr(func.__self__, "__name__", "?")
    n = getattr(func, "__name__", None) or ""
    return n.lstrip("_") if n in _UNDERSCORED else n


# functional forms whose Python name has a leading underscore (boolean
# dispatch's halves: F.max_pool2d without return_indices is _max_pool2d)
_UNDERSCORED = {"_pad", "_max_pool1d", "_max_pool2d", "_max_pool3d", "_adaptive_max_pool1d",
                "_adaptive_max_pool2d", "_adaptive_max_pool3d"}


def _flat(obj, out=None, names=None, prefix=""):
    """Tensors of a nested structure, in order (None and non-tensors skipped)."""
    if out is None:
        out = []
    if isinstance(obj, torch.Tensor):
        out.append(obj)
        if names is not None:
            names.append(prefix)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _flat(v, out, names, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (tuple, list)):
        fields = getattr(obj, "_fields", None)
        for i, v in enumerate(obj):
            key = fields[i] if fields else str(i)
            _flat(v, out, names, f"{prefix}.{key}" if prefix else key)
    return out


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
                                     "fields": fields, "n_outputs": v.n_outputs,
                                     "container": bool(v.flags & 1),
                                     "owns_children": bool(v.flags & 2)}
        return self.cache[layer]


class _AbsentType:
    """An optional input of an nnmod layer that the PyTorch call left out."""

    def __repr__(self):
        return "<absent>"


_ABSENT = _AbsentType()


class _Mask:
    """A tensor passed as an attention mask."""
    __slots__ = ("t",)

    def __init__(self, t):
        self.t = t


def _is_causal_mask(t):
    """t is PyTorch's causal mask ([L, L]: True, or -inf, above the diagonal;
    False, or 0, elsewhere), as nn.Transformer.generate_square_subsequent_mask
    makes it."""
    if t.dim() != 2 or t.shape[0] != t.shape[1] or t.shape[0] == 0:
        return False
    upper = torch.ones(t.shape, dtype=torch.bool).triu(1)
    if t.dtype == torch.bool:
        return bool(torch.equal(t, upper))
    if not t.is_floating_point():
        return False
    return bool(torch.equal(torch.isneginf(t), upper)) and bool((t[~upper] == 0).all())


class _TraceTraining:
    """What `self.training` reads as in a module exported as a graph while
    it is traced: false (the eval branch is followed), but told apart from
    a literal False where it is passed on, so F.dropout(x, p,
    training=self.training) becomes a dropout layer that follows train/eval,
    while F.dropout(x, p, training=False) is nothing. Torch functions get
    False in its place. Read as a bool (`if self.training:`: Python control
    flow), it records the module's path in `sink`, for the report's note
    that the eval branch is what was exported."""

    def __init__(self, sink=None, path=None):
        self.sink = sink
        self.path = path

    def __bool__(self):
        if self.sink is not None:
            self.sink.setdefault(self.path or "<root>", None)
        return False

    def __repr__(self):
        return "<self.training while traced>"


_TRACE_TRAINING = _TraceTraining()


def _real(args):
    if any(isinstance(a, _TraceTraining) for a in args):
        return tuple(False if isinstance(a, _TraceTraining) else a for a in args)
    return args


def _real_kw(kwargs):
    if any(isinstance(v, _TraceTraining) for v in kwargs.values()):
        return {k: (False if isinstance(v, _TraceTraining) else v) for k, v in kwargs.items()}
    return kwargs


class _Unsup(Exception):
    """A construct nnmod cannot hold, raised by an op handler."""


def _finite_or_str(x):
    """JSON has no infinities: the float configs that may need one
    (masked_fill's value, full's fill_value, ...) take "inf", "-inf", "nan"."""
    if x != x:
        return "nan"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    return x


def _config_value(key, ftype, value, where):
    """A PyTorch value as a manifest config value of the declared type, or
    None to leave the layer's default."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        if value.numel() == 1 and not value.requires_grad:
            value = value.item()
        else:
            raise _Unsup(f"config '{key}' is a tensor in PyTorch; nnmod layers take scalars, "
                         "lists and strings")
    if ftype == _CONFIG_BOOL:
        return bool(value)
    if ftype == _CONFIG_INT:
        if isinstance(value, (tuple, list)):
            if len(set(value)) != 1:
                raise _Unsup(f"config '{key}' = {value!r}: the nnmod layer takes one integer")
            value = value[0]
        return int(value)
    if ftype == _CONFIG_FLOAT:
        if isinstance(value, (tuple, list)):
            if len(set(value)) != 1:
                raise _Unsup(f"config '{key}' = {value!r}: the nnmod layer takes one number")
            value = value[0]
        return _finite_or_str(float(value))
    if ftype == _CONFIG_STR:
        return str(value)
    if ftype in (_CONFIG_INT_OR_INTS, _CONFIG_ANY, None):
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return _finite_or_str(float(value))
        if isinstance(value, str):
            return value
        if isinstance(value, (tuple, list, torch.Size)):
            if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                return [int(v) for v in value]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                return [float(v) for v in value]
            if all(isinstance(v, str) for v in value):
                return [str(v) for v in value]
        raise _Unsup(f"config '{key}' = {value!r} has no manifest form")
    if ftype in (_CONFIG_INTS, _CONFIG_FLOATS, _CONFIG_STRS):
        seq = list(value) if isinstance(value, (tuple, list, torch.Size)) else [value]
        conv = {_CONFIG_INTS: int, _CONFIG_FLOATS: float, _CONFIG_STRS: str}[ftype]
        return [conv(v) for v in seq]
    return None


# ---------------------------------------------------------------------------
# The report: everything that stops an export, collected, then said once.
# ---------------------------------------------------------------------------

_CATEGORIES = {
    "module": "modules nnmod has no layer for",
    "function": "functions and methods nnmod has no op for",
    "layer": "nnmod layers the export needs that no loaded plugin provides",
    "construct": "constructs nnmod cannot hold",
    "runtime": "the runtime refused the exported manifest",
}


class Report:
    """What nnmod.torch.check found: `ok`, `problems` as {(category, what):
    [where, ...]} (one entry per occurrence), and str() the message
    nnmod.UnsupportedError carries."""

    def __init__(self, model_name):
        self.model_name = model_name
        self.problems = collections.OrderedDict()
        self.notes = []

    def add(self, category, what, where):
        self.problems.setdefault((category, what), []).append(where or "<root>")

    @property
    def ok(self):
        return not self.problems

    def __bool__(self):
        return self.ok

    def __str__(self):
        if self.ok:
            return f"{self.model_name}: exports to nnmod" + (
                "".join(f"\n  note: {n}" for n in self.notes))
        n = sum(len(v) for v in self.problems.values())
        lines = [f"cannot export {self.model_name} to nnmod: {len(self.problems)} missing "
                 f"piece(s), {n} occurrence(s); nothing was written"]
        for cat, title in _CATEGORIES.items():
            items = [(what, wheres) for (c, what), wheres in self.problems.items() if c == cat]
            if not items:
                continue
            lines.append(f"  {title}:")
            for what, wheres in items:
                uniq = list(dict.fromkeys(wheres))
                shown = ", ".join(f"'{w}'" for w in uniq[:6])
                more = f" and {len(uniq) - 6} more" if len(uniq) > 6 else ""
                lines.append(f"    {what} ({len(wheres)}x) at {shown}{more}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    __repr__ = __str__


# ---------------------------------------------------------------------------
# The trace: frames (one per graph module call), nodes, refs.
# ---------------------------------------------------------------------------

class _Node:
    __slots__ = ("kind", "target", "layer", "inputs", "cfg", "size_key", "name", "n_out",
                 "where", "fn", "child", "uid", "cat_all")
    _next = [0]

    def __init__(self, kind, target, layer, inputs, cfg, size_key=None, n_out=1, where="",
                 fn=""):
        self.kind = kind          # "module" (target: path relative to the frame) or "op"
        self.target = target
        self.layer = layer
        self.inputs = inputs      # list of refs
        self.cfg = cfg
        self.size_key = size_key  # the config list that may depend on the batch
        self.name = None          # node name, set by the frame
        self.n_out = n_out
        self.where = where
        self.fn = fn
        self.child = None         # the manifest child of an op node
        self.uid = _Node._next[0]
        _Node._next[0] += 1
        self.cat_all = None       # a concat (chain): (all refs, dim, chain nodes)

    def sig(self):
        return (self.kind, self.target, self.layer, tuple(self.inputs))


def _frame_sig(frame):
    """What a frame's forward ran, comparable between two calls: a module
    node's output is named by the node's place in the frame, not its uid
    (which every call makes anew)."""
    at = {n.uid: i for i, n in enumerate(frame.nodes)}

    def norm(r):
        return ("@", at.get(r[1], r[1]), r[2]) if isinstance(r, tuple) and r[:1] == ("@",) \
            else r
    # (configs are not compared: a slice to each call's own length,
    # pos[:, :x.size(1)], differs between calls and is made to follow the
    # input's size where sizes are dynamic)
    return [(n.kind, n.target, n.layer, tuple(norm(r) for r in n.inputs))
            for n in frame.nodes] + [tuple(norm(r) for r in frame.outputs)]


class _Frame:
    """One call of a module exported as a graph (or the caller of the root):
    its inputs, the nodes its forward ran, and which tensor is which ref."""

    def __init__(self, mod, path, kind):
        self.mod = mod
        self.path = path
        self.kind = kind                  # "graph", "seq" or "caller"
        self.inputs = []                  # names
        self.nodes = []
        self.refs = {}                    # id(tensor) -> (ref, version)
        self.keep = []                    # the tensors above, kept alive
        self.shapes = collections.OrderedDict()   # ref -> shape, in creation order
        self.outputs = []
        self.output_names = None
        self.own = {}                     # id(param or buffer) -> (name, is_buffer, tensor)
        self.used_own = collections.OrderedDict()  # name -> (is_buffer, tensor)
        self.consts = collections.OrderedDict()    # name -> a constant forward made
        self.taken = set()
        self.counts = collections.Counter()
        self.f01 = set()                  # refs bool in PyTorch, f32 0/1 in nnmod (comparisons)
        self.views = {}                   # id(x[...] of a traced x) -> (x, index)
        self.pending_detach = set()       # ids of tensors made under torch.no_grad()
        self.reads = collections.OrderedDict()  # ref of a descendant's tensor -> owner path
        if mod is not None:
            for n, p in mod.named_parameters(recurse=False):
                self.own[id(p)] = (n, False, p)
            for n, b in mod.named_buffers(recurse=False):
                if b is not None:
                    self.own[id(b)] = (n, True, b)
            self.taken.update(n for n, _ in mod.named_children())
            self.taken.update(v[0] for v in self.own.values())

    def fresh(self, base):
        base = re.sub(r"[^A-Za-z0-9_]", "_", base) or "n"
        while True:
            k = self.counts[base]
            self.counts[base] += 1
            name = base if k == 0 else f"{base}_{k}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def bind(self, t, ref):
        self.refs[id(t)] = (ref, t._version)
        self.keep.append(t)
        self.shapes[ref] = tuple(t.shape)


class _Tracer(TorchFunctionMode):
    def __init__(self, exporter, model, report):
        super().__init__()
        self.ex = exporter
        self.model = model
        self.report = report
        self.paths = {}
        for n, m in model.named_modules():
            self.paths.setdefault(id(m), n)
        self.params = {}
        self.owners = {}        # id(tensor) -> (module path, name, is_buffer, tensor)
        for mn, m in model.named_modules():
            for n, p in list(m._parameters.items()) + list(m._buffers.items()):
                if p is not None:
                    self.params.setdefault(id(p), f"{mn}.{n}" if mn else n)
                    self.owners.setdefault(id(p), (mn, n, n in m._buffers, p))
        self.extra_own = collections.defaultdict(collections.OrderedDict)
        self.extra_reads = collections.defaultdict(collections.OrderedDict)
        # a graph's tensors its ancestors read (config.reads): declared by
        # the owner's graph even where its own forward does not read them
        self.stack = []
        self.recipes = {}       # id(tensor) -> (tensor, fill, version, fn): uniform factories
        self.defs = {}          # module path -> _Frame (its first call)
        self.suspended = 0
        self.internal = 0
        self.foreign = collections.OrderedDict()  # op children made from foreign modules
        self.leaf_cfg = {}      # leaf path -> config its calls imply (a causal mask)
        self.aranges = {}       # id(tensor) -> (tensor, (start, end, step), version)
        # id(tensor) -> (tensor, func, args, kwargs, version, result, outs):
        # an op on uniform factories / aranges only, replayed when used
        self.lazy = {}
        self.fn_depth = 0       # inside a torch-internal autograd.Function (checkpoint)
        self.escapes = set()    # paths of graphs whose forward called a module not below
        self.bag_offsets = []   # (offsets, indices, include_last_offset) of EmbeddingBag calls

    # -- where are we -------------------------------------------------------
    def where(self):
        f = self.stack[-1] if self.stack else None
        return (f.path or "<root>") if f is not None and f.kind != "caller" else "<root>"

    # -- refs ---------------------------------------------------------------
    def lookup(self, frame, t):
        """The ref of tensor t in frame, or None for a tensor the trace does not
        follow (a constant)."""
        e = frame.refs.get(id(t))
        if e is not None:
            ref, ver = e
            if t._version != ver:
                self.report.add("construct", "a tensor modified in place where the trace "
                                "could not follow it (inside a submodule, or through a view)",
                                self.where())
                frame.refs[id(t)] = (ref, t._version)
            if frame.pending_detach and id(t) in frame.pending_detach:
                # made under torch.no_grad() inside forward: no gradient
                # flows back through it (a teacher, a momentum encoder)
                frame.pending_detach.discard(id(t))
                if ref != "?" and t.is_floating_point():
                    name = frame.fresh("detach")
                    node = _Node("op", name, "detach", [ref], {}, where=self.where(),
                                 fn="torch.no_grad()")
                    node.name = name
                    frame.nodes.append(node)
                    frame.bind(t, name)
                    ref = name
            return ref
        o = frame.own.get(id(t))
        if o is not None:
            name, is_buf, tensor = o
            if is_buf and name in getattr(frame.mod, "_non_persistent_buffers_set", ()):
                ref = self.recompute(frame, t, name)
                if ref is not None:
                    return ref
                if _const_form(tensor) is not None and self.ex.graph_has("constants"):
                    # a graph constant: its values travel in the manifest
                    if tensor.dtype == torch.bool:
                        frame.f01.add(name)        # f32 0/1 in nnmod, as a comparison's
                else:
                    note = (f"the non-persistent buffer '{frame.path + '.' if frame.path else ''}"
                            f"{name}' is a buffer of the graph, saved with the weights (the "
                            "loaded graph plugin has no `constants`, or the tensor is larger "
                            f"than {_CONST_MAX >> 20} MiB or of a dtype they do not hold), so "
                            "a PyTorch state dict loads into this manifest with strict=False "
                            "only")
                    if note not in self.report.notes:
                        self.report.notes.append(note)
            frame.used_own[name] = (is_buf, tensor)
            return name
        if id(t) in self.params:
            ref = self.descendant_tensor(frame, t)
            if ref is not None:
                return ref
            ref = self.child_bias(frame, t)
            if ref is not None:
                return ref
            full = self.params[id(t)]
            self.report.add("construct", f"reading the parameter or buffer '{full}' of "
                            + ("another module directly (a module that is not below the "
                               "reader: use it through its module)"
                               if self.ex.graph_has("reads") else
                               "another module directly (needs graph config 'reads', which "
                               "the loaded graph plugin lacks; use it through its module)"),
                            self.where())
            return "?"
        return None

    def descendant_tensor(self, frame, t):
        """A parameter or buffer of a module below the frame's, read by the
        forward itself (h @ self.emb.weight.T: weight tying; a child norm's
        weight): a `reads` entry of the graph, named by its path below it,
        so the owner keeps it (state dict, training) and the gradient
        reaches it."""
        if frame.kind != "graph" or not self.ex.graph_has("reads"):
            return None
        owner_path, name, is_buf, tensor = self.owners[id(t)]
        full = f"{owner_path}.{name}" if owner_path else name
        if frame.path and not full.startswith(frame.path + "."):
            return None
        rel = full[len(frame.path) + 1:] if frame.path else full
        if "." not in rel:
            return None
        owner = self.model.get_submodule(owner_path)
        if self.ex.kind_of(owner) == "graph":
            self.extra_own[owner_path][name] = (is_buf, tensor)
        # a graph between the frame and the owner reads it too, so that it
        # holds the path to it even where its own forward does not use it
        parts = rel.split(".")
        for k in range(1, len(parts) - 1):
            mid = ".".join(([frame.path] if frame.path else []) + parts[:k])
            if self.ex.kind_of(self.model.get_submodule(mid)) == "graph":
                below = parts[k:]
                self.extra_reads[mid][_qpath(".".join(below))] = ".".join(below[:-1])
        ref = _qpath(rel)
        frame.reads[ref] = rel[:-len(name) - 1]
        frame.bind(t, ref)
        return ref

    def recompute(self, frame, t, name):
        """A non-persistent buffer (not in PyTorch's state dict) whose values
        a node makes: one value everywhere (`full`), positions (`arange`,
        HF's position_ids [1, n]) or a triangle of ones (`tril`/`triu`, a
        causal mask [1, 1, n, n]). The graph computes it, so the manifest's
        state dict stays PyTorch's. None for other values."""
        if frame.kind != "graph" or t.numel() == 0 or t.dtype not in _DTYPE_NAMES:
            return None
        where = self.where()
        fn = f"the non-persistent buffer '{name}'"
        v = t.detach().reshape(-1)
        shape = list(t.shape)

        def node(layer, inputs, **cfg):
            n = frame.fresh(layer)
            nd = _Node("op", n, layer, inputs, cfg, where=where, fn=fn)
            nd.name = n
            frame.nodes.append(nd)
            return n

        def cast(ref):
            return ref if t.dtype == torch.float32 else node("to", [ref],
                                                            dtype=_DTYPE_NAMES[t.dtype])

        vf = v.double()
        lead = [d for d in shape[:-1]]
        if bool((vf == vf[0]).all()):
            ref = cast(node("full", [], size=shape, fill_value=float(vf[0])))
        elif t.dim() >= 1 and all(d == 1 for d in lead) and \
                torch.equal(vf, torch.arange(v.numel(), dtype=torch.float64)):
            ref = node("arange", [], end=int(v.numel()),
                       dtype="int64" if t.dtype == torch.int64 else "float32")
            if t.dtype not in (torch.int64, torch.float32):
                ref = cast(ref)
            if t.dim() != 1:
                ref = node("view", [ref], shape=shape)
        elif t.dim() >= 2 and all(d == 1 for d in shape[:-2]):
            n, m = shape[-2:]
            ones = torch.ones(n, m, dtype=torch.float64)
            tri = None
            for op, k in (("tril", 0), ("triu", 1), ("triu", 0), ("tril", -1)):
                if torch.equal(vf.view(n, m), getattr(ones, op)(k)):
                    tri = (op, k)
                    break
            if tri is None:
                return None
            ref = node(tri[0], [node("full", [], size=[n, m], fill_value=1.0)], diagonal=tri[1])
            ref = cast(ref)
            if t.dim() != 2:
                ref = node("view", [ref], shape=shape)
        else:
            return None
        frame.bind(t, ref)
        return ref

    def below(self, frame, mod):
        """mod's path relative to frame's module, or None if not below it."""
        path = self.paths.get(id(mod))
        if path is None or frame.kind != "graph":
            return None
        if not frame.path:
            return path or None
        return path[len(frame.path) + 1:] if path.startswith(frame.path + ".") else None

    def child_bias(self, frame, t):
        """The bias of an nn.Linear below the frame read directly (swin v2:
        self.qkv.bias.clone()): the module called on zeros, a node that
        computes exactly the bias, so that the graph reads it through the
        module that owns it (and its gradient reaches it)."""
        mod = self.linear_of(t, "bias")
        rel = self.below(frame, mod) if mod is not None else None
        if rel is None:
            return None
        z = frame.fresh("zeros")
        node = _Node("op", z, "full", [], {"size": [1, mod.in_features], "fill_value": 0.0},
                     where=self.where(), fn=f"the bias of '{rel}', read directly")
        node.name = z
        frame.nodes.append(node)
        call = _Node("module", rel, None, [z], {}, where=self.where())
        frame.nodes.append(call)
        v = frame.fresh("bias")
        node = _Node("op", v, "view", [("@", call.uid, 0)], {"shape": [mod.out_features]},
                     where=self.where(), fn=f"the bias of '{rel}', read directly")
        node.name = v
        frame.nodes.append(node)
        frame.bind(t, v)
        return v

    def linear_of(self, t, attr):
        """The nn.Linear (exported as a layer) whose `attr` t is, or None."""
        for mod in self.model.modules():
            if isinstance(mod, torch.nn.Linear) and getattr(mod, attr, None) is t and \
                    self.ex.kind_of(mod) == "leaf":
                return mod
        return None

    def tracked(self, frame, t):
        return isinstance(t, torch.Tensor) and (
            id(t) in frame.refs or id(t) in frame.own or id(t) in self.params)

    def materialize(self, frame, t):
        """A tensor forward made from no input, used by what the graph
        computes: a `full` node while it is still as torch.zeros/ones/full/
        new_* made it (its size may then follow the batch), else a constant
        buffer of the graph (its values travel in the weights file)."""
        if frame.kind != "graph":
            return None
        rec = self.recipes.get(id(t))
        if rec is not None and rec[0] is t and t._version == rec[2]:
            name = frame.fresh("full")
            node = _Node("op", name, "full", [], {"size": list(t.shape), "fill_value": rec[1]},
                         size_key="size", where=self.where(), fn=rec[3])
            node.name = name
            frame.nodes.append(node)
            if t.dtype == torch.int64:
                name = frame.fresh("to")
                node = _Node("op", name, "to", [node.name], {"dtype": "int64"},
                             where=self.where(), fn=rec[3])
                node.name = name
                frame.nodes.append(node)
            frame.bind(t, name)
            return name
        lz = self.lazy.get(id(t))
        if lz is not None and lz[0] is t and t._version == lz[4]:
            ref = self.replay(frame, t, lz)
            if ref is not None:
                return ref
        ar = self.aranges.get(id(t))
        if ar is not None and ar[0] is t and t._version == ar[2]:
            start, end, step = ar[1]
            name = frame.fresh("arange")
            node = _Node("op", name, "arange", [], {
                "start": start, "end": end, "step": step,
                "dtype": "int64" if t.dtype == torch.int64 else "float32"},
                size_key="end", where=self.where(), fn="torch.arange")
            node.name = name
            frame.nodes.append(node)
            frame.bind(t, name)
            return name
        name = frame.fresh("const")
        c = t.detach()
        if c.dtype == torch.bool or (c.is_floating_point() and c.dtype != torch.float32):
            c = c.float()
        elif not c.is_floating_point() and c.dtype != torch.int64:
            c = c.long()
        frame.consts[name] = c.clone()
        frame.bind(t, name)
        return name

    @staticmethod
    def live(table, t):
        """Whether t is in a recipe table (recipes, aranges, lazy) as it was
        made (not written into since)."""
        e = table.get(id(t)) if isinstance(t, torch.Tensor) else None
        return e is not None and e[0] is t and t._version == e[4 if len(e) == 7 else 2]

    def replay(self, frame, t, lz):
        """A tensor computed from no input but size-following factories (a
        causal mask torch.tril(torch.ones(t, t)), torch.eye(n)): its op
        emitted now, where the graph uses it, its inputs materialized in
        turn. None where the op cannot be (then it is a constant)."""
        _, func, args, kwargs, _, result, outs = lz
        key = self._op_key(_opname(func))
        h = _OpCtx(self, frame, func, result, outs)
        try:
            refs = OPS[key](h, *args, **kwargs)
        except (_Unsup, TypeError):
            return None          # (nodes it made stay, unused: refs may name them)
        if isinstance(refs, (str, tuple)):
            refs = [refs]
        refs = list(refs)
        if len(refs) < len(outs):
            refs += [f"{refs[0]}:{k}" for k in range(len(refs), len(outs))]
        for o, r in zip(outs, refs):
            frame.bind(o, r)
        return frame.refs[id(t)][0]

    def reparametrized(self, mod, path):
        """A layer whose weight a hook or parametrization computes at each
        call (weight_norm, spectral_norm, torch.nn.utils.parametrize): its
        state dict is not the layer's; said with the way out."""
        where = path or self.where()
        for hk in list(getattr(mod, "_forward_pre_hooks", {}).values()):
            hn = type(hk).__name__
            if hn == "WeightNorm":
                self.report.add("construct", f"torch.nn.utils.weight_norm of "
                                f"'{getattr(hk, 'name', 'weight')}' (a forward pre-hook that "
                                "computes it from _g and _v at each call; nnmod's layer owns "
                                "the weight itself): call torch.nn.utils.remove_weight_norm "
                                "on the module before exporting (same outputs)", where)
            elif hn == "SpectralNorm":
                self.report.add("construct", f"torch.nn.utils.spectral_norm of "
                                f"'{getattr(hk, 'name', 'weight')}' (a forward pre-hook: "
                                "power iteration and division at each call): call "
                                "torch.nn.utils.remove_spectral_norm on the module before "
                                "exporting (same eval outputs; training then does not "
                                "normalise)", where)
        if getattr(mod, "parametrizations", None) is not None and \
                type(mod).__name__.startswith("Parametrized"):
            self.report.add("construct", "torch.nn.utils.parametrize (parametrizations of "
                            f"{', '.join(repr(k) for k in mod.parametrizations.keys())}): "
                            "call torch.nn.utils.parametrize.remove_parametrizations(module, "
                            "name) before exporting", where)

    # -- torch.no_grad() inside forward ---------------------------------------
    def grad_region_enter(self):
        """A `with torch.no_grad():` inside a forward (the trace runs under
        no_grad already, so it is recorded here): what the frame's refs
        were, to tell at its end which tensors it made."""
        if self.suspended or self.internal or self.fn_depth or not self.stack or \
                self.stack[-1].kind != "graph":
            return None
        frame = self.stack[-1]
        return frame, {k: v[0] for k, v in frame.refs.items()}

    def grad_region_exit(self, region):
        frame, before = region
        for k, v in frame.refs.items():
            if before.get(k) != v[0]:
                frame.pending_detach.add(k)

    def custom_function(self, cls, real, args, kwargs):
        """Function.apply of a torch.autograd.Function subclass while traced:
        PyTorch's own (checkpoint) are traced through (their backward is
        their forward's); a user's is reported: its backward is Python that
        a manifest cannot hold, and nnmod differentiating its forward
        instead would train differently, silently."""
        mod = getattr(cls, "__module__", "") or ""
        if mod.startswith("torch.") or mod.startswith("torchvision."):
            self.fn_depth += 1
            try:
                return real(*args, **kwargs)
            finally:
                self.fn_depth -= 1
        self.report.add("construct", f"a custom torch.autograd.Function "
                        f"({cls.__qualname__}.apply): its backward is Python code a manifest "
                        "cannot hold, and differentiating its forward instead would train "
                        "differently; write it with detach (a straight-through estimator: "
                        "`x + (f(x) - x).detach()`; gradient reversal by a: "
                        "`x.detach() * (1 + a) - x * a`)", self.where())
        frame = self.stack[-1]
        out = real(*args, **kwargs)
        for t in _flat(out):
            frame.bind(t, "?")
        return out

    # -- module calls -------------------------------------------------------
    def kind_of(self, m):
        return self.ex.kind_of(m)

    def module_call(self, orig, mod, args, kwargs):
        if self.suspended or self.internal or not self.stack:
            return orig(mod, *args, **kwargs)
        parent = self.stack[-1]
        kind = self.kind_of(mod)
        path = self.paths.get(id(mod))
        if kind in ("leaf", "missing"):
            self.reparametrized(mod, path)
        if kind == "graph" and id(mod) in self.ex.inline and parent.kind == "graph":
            # a module whose forward calls modules not below it (the Annotated
            # Transformer's SublayerConnection, called with a lambda that calls
            # a sibling): traced into its caller's graph, which calls what it
            # called (its children by their paths below the caller)
            return orig(mod, *args, **kwargs)
        self.internal += 1
        try:
            rel = None
            if parent.kind in ("graph", "caller"):
                if path is None:
                    rel = None
                elif parent.kind == "caller":
                    rel = path
                elif parent.path == "":
                    rel = path
                elif path.startswith(parent.path + "."):
                    rel = path[len(parent.path) + 1:]
                else:
                    self.report.add("construct", f"calling module '{path}', which is not "
                                    "below the caller", self.where())
                    if parent.kind == "graph" and parent.path:
                        # (the caller's forward is traced into its own caller
                        # in the next attempt: _build_doc)
                        self.escapes.add(parent.path)
                if path is None and kind != "leaf":
                    self.report.add("construct", f"calling a {type(mod).__name__} made "
                                    "inside forward (not a submodule)", self.where())
            in_refs, extra = self.call_inputs(parent, mod, kind, args, kwargs)
        finally:
            self.internal -= 1
        if kind in ("leaf", "missing"):
            self.suspended += 1
            try:
                out = orig(mod, *args, **kwargs)
            finally:
                self.suspended -= 1
        else:
            frame = _Frame(mod, path if path is not None else "?",
                           "graph" if kind == "graph" else "seq")
            self.internal += 1
            try:
                if kind == "graph":
                    self.frame_inputs(frame, mod, args, kwargs)
                elif args and isinstance(args[0], torch.Tensor):
                    frame.inputs = ["input"]
                    frame.bind(args[0], "input")
            finally:
                self.internal -= 1
            self.stack.append(frame)
            try:
                out = orig(mod, *args, **kwargs)
            finally:
                self.stack.pop()
            self.internal += 1
            try:
                if kind == "graph":
                    self.frame_outputs(frame, out)
                key = path if path is not None else f"?{id(mod)}"
                first = self.defs.get(key)
                if first is None:
                    self.defs[key] = frame
                elif kind == "graph" and _frame_sig(first) != _frame_sig(frame):
                    self.report.add("construct", f"module '{path}' is called more than once "
                                    "and its forward runs differently between calls",
                                    self.where())
            finally:
                self.internal -= 1
        if parent.kind in ("graph", "caller") and in_refs is not None:
            self.internal += 1
            try:
                outs = _flat(out)
                if rel is None and path is None and kind in ("leaf", "missing"):
                    # a module made inside forward (nn.Softmax(dim=1)(x)): an op
                    ltype = _layer_type(_forward_class(mod, self.ex.schema).__name__)
                    name = parent.fresh(ltype)
                    node = _Node("op", name, ltype,
                                 in_refs, {}, n_out=max(1, len(outs)), where=self.where(),
                                 fn=type(mod).__name__)
                    node.child = self.ex.leaf(mod, f"{self.where()} (a {type(mod).__name__} "
                                              "made in forward)", self.report)
                    node.name = name
                    parent.nodes.append(node)
                    ref0 = name
                elif rel is not None:
                    node = _Node("module", rel, None, in_refs, extra, n_out=max(1, len(outs)),
                                 where=self.where())
                    parent.nodes.append(node)
                    ref0 = None
                else:
                    return out
                for k, t in enumerate(outs):
                    parent.bind(t, ("@", node.uid, k) if ref0 is None
                                else (name if k == 0 else f"{name}:{k}"))
            finally:
                self.internal -= 1
        return out

    def call_inputs(self, parent, mod, kind, args, kwargs):
        """The refs of the tensors a module call passes, in the callee's input
        order, and what the node needs besides (None: not recorded)."""
        if parent.kind not in ("graph", "caller"):
            return None, None
        if kind == "graph":
            try:
                bound = inspect.signature(mod.forward).bind(*args, **kwargs)
            except TypeError:
                bound = None
            vals = list(bound.arguments.values()) if bound is not None else list(args)
            tens = _flat(vals)
        elif kind == "seq":
            tens = [a for a in args if isinstance(a, torch.Tensor)]
        else:
            tens = self.leaf_args(mod, args, kwargs)
        refs = []
        for t in tens:
            if t is None:
                refs.append(None)
                continue
            if isinstance(t, _Mask) and parent.kind != "graph":
                t = t.t                        # the exported model's own input
            if t is _ABSENT or isinstance(t, _Mask):
                if parent.kind != "graph":
                    self.report.add("construct", "an optional input left out (or a mask made "
                                    "in forward) in a call of the exported model itself; pass "
                                    "every input positionally", self.where())
                    refs.append("?")
                    continue
                refs.append(self.absent(parent) if t is _ABSENT else self.mask_ref(parent, t.t))
                continue
            r = self.lookup(parent, t)
            if r is None:
                r = self.materialize(parent, t)
            if r is None:
                self.report.add("construct", "a constant tensor (made from no input) passed "
                                f"to module '{self.paths.get(id(mod), type(mod).__name__)}'",
                                self.where())
                r = "?"
            refs.append(r)
        return refs, {}

    def absent(self, frame):
        """A 0-element tensor: an optional input of an nnmod layer left out
        (PyTorch's None)."""
        name = frame.fresh("absent")
        node = _Node("op", name, "full", [], {"size": [0], "fill_value": 0.0},
                     where=self.where(), fn="an optional input left out")
        node.name = name
        frame.nodes.append(node)
        return name

    def mask_ref(self, frame, t):
        """A mask passed to attention: a comparison the graph made is f32 0/1
        in nnmod where PyTorch has bool, so it is cast to bool first."""
        r = self.lookup(frame, t)
        if r is None:
            r = self.materialize(frame, t)
        if r is None:
            return "?"
        if r in frame.f01 and t.dtype == torch.bool:
            name = frame.fresh("bool")
            node = _Node("op", name, "bool", [r], {}, where=self.where(),
                         fn="a mask (bool in PyTorch)")
            node.name = name
            frame.nodes.append(node)
            frame.shapes[name] = tuple(t.shape)
            return name
        return r

    def leaf_args(self, mod, args, kwargs):
        """The tensors of a call of a leaf, in the nnmod layer's input order
        (_ABSENT for an optional one left out, _Mask(t) for a mask); config
        a call implies (a causal mask) goes to self.leaf_cfg."""
        cls = _forward_class(mod).__name__
        fwd = type(mod).forward
        try:
            sig = inspect.signature(fwd)
            bound = sig.bind(mod, *args, **kwargs)
        except TypeError:
            return [a for a in args if isinstance(a, torch.Tensor)]
        params = list(sig.parameters.values())[1:]
        arg = bound.arguments
        if cls == "EmbeddingBag" and isinstance(arg.get("offsets"), torch.Tensor) and \
                isinstance(arg.get("input"), torch.Tensor):
            # the second trace must give it valid offsets (_vary)
            self.bag_offsets.append((arg["offsets"], arg["input"],
                                     bool(getattr(mod, "include_last_offset", False))))
        if cls == "MultiheadAttention" and arg.get("average_attn_weights", True) is not True \
                and arg.get("need_weights", True):
            self.report.add("construct", "per-head attention weights (MultiheadAttention "
                            "called with average_attn_weights=False): nnmod's "
                            "multihead_attention gives the weights averaged over heads",
                            self.paths.get(id(mod)) or self.where())
        order = LEAF_INPUTS.get(cls)
        if order is not None:
            return self.leaf_args_ordered(mod, order, params, arg)
        out = []
        for p in params:
            if p.name not in arg:
                continue
            v = arg[p.name]
            if p.kind == p.VAR_POSITIONAL:
                out.extend(a for a in v if isinstance(a, torch.Tensor))
            elif isinstance(v, torch.Tensor):
                out.append(v)
            elif isinstance(v, (tuple, list)) and v and all(isinstance(a, torch.Tensor)
                                                               for a in v):
                out.extend(v)
            elif v is not None and v is not p.default and v != p.default \
                    and p.name not in _LEAF_FLAGS:
                self.report.add("construct", f"argument {p.name}={v!r} to a "
                                f"{type(mod).__name__} call", self.where())
        return out

    def leaf_args_ordered(self, mod, order, params, arg):
        path = self.paths.get(id(mod))
        known = {o.split(":")[0] for o in order}
        cfg = {}
        items = []
        for entry in order:
            parts = entry.split(":")
            name, is_mask = parts[0], len(parts) > 1
            causal_key = parts[2] if len(parts) > 2 else None
            v = arg.get(name)
            if v is not None and causal_key and arg.get(causal_key) is True:
                v = None               # PyTorch 2's hint: the mask is the causal one
                cfg[causal_key] = True
            elif causal_key and arg.get(causal_key) is True:
                cfg[causal_key] = True
            if isinstance(v, torch.Tensor) and causal_key and \
                    not self.tracked(self.stack[-1], v) and _is_causal_mask(v):
                v = None               # a causal mask made in forward: the config key
                cfg[causal_key] = True
            if v is None:
                items.append(_ABSENT)
            elif isinstance(v, torch.Tensor):
                items.append(_Mask(v) if is_mask else v)
            elif isinstance(v, (tuple, list)) and all(isinstance(a, torch.Tensor) for a in v):
                items.extend(v)
            else:
                self.report.add("construct", f"argument {name}={v!r} to a "
                                f"{type(mod).__name__} call", self.where())
        while items and items[-1] is _ABSENT:
            items.pop()                # trailing optional inputs: not passed at all
        for p in params:
            if p.name in known or p.name not in arg or p.name in _LEAF_FLAGS or \
                    p.name == "average_attn_weights":     # said above where it matters
                continue
            v = arg[p.name]
            if v is not None and v is not p.default and v != p.default:
                self.report.add("construct", f"argument {p.name}={v!r} to a "
                                f"{type(mod).__name__} call", self.where())
        if path is not None:
            seen = self.leaf_cfg.setdefault(path, dict(cfg))
            if seen != cfg:
                self.report.add("construct", f"module '{path}' called with and without a "
                                "causal mask (nnmod makes it config of the module)",
                                self.where())
        return items

    def frame_inputs(self, frame, mod, args, kwargs):
        try:
            bound = inspect.signature(mod.forward).bind(*args, **kwargs)
            items = list(bound.arguments.items())
        except TypeError:
            items = [(f"x{i}", a) for i, a in enumerate(args)]
        for pname, v in items:
            names = []
            tens = _flat(v, names=names)
            for t, sub in zip(tens, names):
                base = pname if not sub else f"{pname}_{sub}"
                base = re.sub(r"[^A-Za-z0-9_]", "_", base)
                if not _IDENT.match(base):
                    base = "x_" + base
                name = base
                k = 1
                while name in frame.taken:
                    name = f"{base}_{k}"
                    k += 1
                frame.taken.add(name)
                frame.inputs.append(name)
                frame.bind(t, name)

    def frame_outputs(self, frame, out):
        names = []
        tens = _flat(out, names=names)
        if not tens:
            self.report.add("construct", "a forward that returns no tensor", frame.path)
        for t in tens:
            r = self.lookup(frame, t)
            if r is None:
                r = self.materialize(frame, t)
            if r is None:
                self.report.add("construct", "returning a constant tensor", frame.path)
                r = "?"
            frame.outputs.append(r)
        if isinstance(out, dict):
            frame.output_names = names

    # -- torch functions ----------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.suspended or self.internal or not self.stack:
            return func(*_real(args), **_real_kw(kwargs))
        frame = self.stack[-1]
        self.internal += 1
        try:
            return self.op(frame, func, args, kwargs)
        finally:
            self.internal -= 1

    def op(self, frame, func, args, kwargs):
        name = _opname(func)
        tens = _flat(list(args) + list(kwargs.values()))
        if name in _CONST_FACTORIES:
            # a uniform tensor of static or batch-following size: made when
            # something the graph computes uses it (materialize)
            result = func(*_real(args), **_real_kw(kwargs))
            if isinstance(result, torch.Tensor) and result.numel() > 0 and (
                    result.is_floating_point() or result.dtype in (torch.bool, torch.int64)):
                # torch.empty(...): its values are not PyTorch's to give; a
                # fill_ / zero_ that follows gives them (below)
                fill = 0.0 if "empty" in name else float(result.reshape(-1)[0])
                self.recipes[id(result)] = (result, fill, result._version, _fname(func))
            return result
        if name in ("fill_", "zero_") and args and isinstance(args[0], torch.Tensor) and \
                self.live(self.recipes, args[0]) and not self.tracked(frame, args[0]) and \
                (name == "zero_" or isinstance(args[1] if len(args) > 1 else
                                               kwargs.get("value"), (int, float))):
            # torch.empty(n, 1, dtype=torch.long).fill_(SOS): still a uniform
            # tensor, of the new value
            result = func(*_real(args), **_real_kw(kwargs))
            rec = self.recipes[id(args[0])]
            self.recipes[id(args[0])] = (rec[0], float(args[0].reshape(-1)[0]),
                                         args[0]._version, rec[3])
            return result
        if name in _LAZY_FACTORIES and not tens and frame.kind == "graph":
            result = func(*_real(args), **_real_kw(kwargs))
            if isinstance(result, torch.Tensor):
                self.lazy[id(result)] = (result, func, args, kwargs, result._version, result,
                                         [result])
            return result
        if name == "arange" and not tens:
            # torch.arange(x.size(1)): an `arange` node when used (its end
            # may then follow a dynamic dim)
            result = func(*_real(args), **_real_kw(kwargs))
            try:
                spec = _arange_spec(*args, **kwargs)
            except TypeError:
                spec = None
            if spec is not None and isinstance(result, torch.Tensor) and \
                    result.dtype in (torch.int64, torch.float32):
                self.aranges[id(result)] = (result, spec, result._version)
            return result
        if frame.kind == "graph" and args and isinstance(args[0], torch.Tensor) and \
                (name == "__setitem__" or name in _INPLACE_DUNDER or
                 (name.endswith("_") and not name.startswith("_"))) and \
                (self.live(self.recipes, args[0]) or self.live(self.lazy, args[0])) and \
                not self.tracked(frame, args[0]):
            # a zeros/ones/full tensor written into (swin's attention mask:
            # new_zeros, then mask[slice] = region id): a `full` node now, so
            # the writes become graph ops rather than a constant buffer
            self.materialize(frame, args[0])
        if frame.kind == "graph" and self._op_key(name) in OPS:
            # torch.arange(x.size(1)) used by an op (t[:, None] * inv_freq:
            # rotary positions): an `arange` node, so that what is made of it
            # follows a dynamic length instead of being a constant
            for t in tens:
                ar = self.aranges.get(id(t))
                if ar is not None and ar[0] is t and t._version == ar[2] and \
                        not self.tracked(frame, t):
                    self.materialize(frame, t)
        tracked = [t for t in tens if self.tracked(frame, t)]
        for t in tracked:                   # versions checked before an in-place op runs
            if id(t) in frame.refs:
                self.lookup(frame, t)
        result = func(*_real(args), **_real_kw(kwargs))
        for t in tracked:                   # ... and what this op changed is accounted for
            e = frame.refs.get(id(t))
            if e is not None and e[1] != t._version:
                frame.refs[id(t)] = (e[0], t._version)
        outs = _flat(result)
        if not tracked:
            # constants: computed, not traced (materialize). Those made of
            # size-following factories (torch.tril(torch.ones(t, t)), ...)
            # are replayed as nodes where the graph uses them.
            if outs and frame.kind == "graph" and self._op_key(name) in OPS and \
                    name not in _DATA_DEPENDENT and \
                    any(self.live(self.recipes, t) or self.live(self.aranges, t) or
                        self.live(self.lazy, t) for t in tens):
                for t in outs:
                    self.lazy[id(t)] = (t, func, args, kwargs, t._version, result, outs)
            return result
        if not outs:
            if name in _DATA_DEPENDENT and tracked:
                self.report.add("construct", f"Python code reading a tensor's values "
                                f"({_fname(func)}: data-dependent control flow or numbers)",
                                self.where())
            elif name == "__setitem__" and tracked and isinstance(args[0], torch.Tensor) \
                    and self.tracked(frame, args[0]):
                self.setitem(frame, func, args[0], args[1], args[2])
            elif name == "__setitem__" and tracked:
                self.report.add("construct", "assignment of a traced value into a constant "
                                "tensor (x[...] = y, x made in forward from no input)",
                                self.where())
            return result
        if frame.kind != "graph":
            self.report.add("construct", f"{_fname(func)} inside an nn.Sequential's forward",
                            self.where())
            return result
        inplace = False
        key = name
        if name in _INPLACE_DUNDER:
            key, inplace = _INPLACE_DUNDER[name], True
        elif name.endswith("_") and not name.startswith("_") and name not in OPS:
            key, inplace = name[:-1], True
        handler = OPS.get(key)
        h = _OpCtx(self, frame, func, result, outs)
        refs = None
        if handler is None:
            self.report.add("function", _fname(func), self.where())
        else:
            try:
                refs = handler(h, *args, **kwargs)
            except _Unsup as e:
                self.report.add("construct", f"{_fname(func)}: {e}", self.where())
            except TypeError as e:
                self.report.add("construct", f"{_fname(func)} called as nnmod's exporter does "
                                f"not know ({e})", self.where())
        if refs is None:
            refs = ["?"] * len(outs)
        elif isinstance(refs, (str, tuple)):       # one ref (tuple: a module node's)
            refs = [refs]
        if len(refs) < len(outs):
            refs = list(refs) + [f"{refs[0]}:{k}" for k in range(len(refs), len(outs))]
        if not inplace and isinstance(result, torch.Tensor) and refs[0] != "?" and \
                any(result is t for t in tracked) and frame.refs.get(id(result),
                                                                      (None,))[0] != refs[0]:
            # a function that returned its input itself (F.dropout(x, p,
            # training=False) while traced) but is another node in nnmod (a
            # dropout layer): the caller gets a new tensor object, so that x
            # keeps its own ref (y = F.dropout(h); y + h)
            result = result.view_as(result)
            outs = [result]
        for t, r in zip(outs, refs):
            frame.bind(t, r)
        if inplace and outs and id(outs[0]) in frame.views and refs[0] != "?":
            self.write_back(frame, func, outs[0], refs[0])
        return result

    @staticmethod
    def _op_key(name):
        """The OPS key of a function or method name (in-place forms too)."""
        if name in _INPLACE_DUNDER:
            return _INPLACE_DUNDER[name]
        if name.endswith("_") and not name.startswith("_") and name not in OPS:
            return name[:-1]
        return name

    # -- in-place ops on views: functionalised ------------------------------
    def setitem(self, frame, func, x, idx, value):
        """x[idx] = value as out-of-place ops: the slice's new value
        (value broadcast to it), then x's (write_back)."""
        h = _OpCtx(self, frame, func, None, [])
        try:
            idx = idx if isinstance(idx, tuple) else (idx,)
            view = x[idx]                      # the slice's shape (the trace is internal)
            n = view.dim()
            if isinstance(value, torch.Tensor) and h.is_t(value) and \
                    tuple(value.shape) == tuple(view.shape):
                self.scatter_into(h, x, idx, h.ref(value), None)
            elif isinstance(value, torch.Tensor) and h.is_t(value):
                sl = h.op("getitem", [x], index=[_index_str(i) for i in idx])
                self.scatter_into(h, x, idx, h.op("expand_as", [value, sl]), None)
            else:                              # a number: masked_fill of the slice
                del n
                self.scatter_into(h, x, idx, None, None, scalar=h.num(value))
        except _Unsup as e:
            self.report.add("construct", f"assignment into a tensor (x[...] = ...): {e}",
                            self.where())

    def write_back(self, frame, func, view, new_ref):
        """An in-place op changed `view` (x[...] of a traced x) to new_ref:
        x becomes where(slice mask, new value padded to x's shape, x)."""
        base, idx = frame.views[id(view)]
        h = _OpCtx(self, frame, func, None, [])
        try:
            self.scatter_into(h, base, idx, new_ref, view)
        except _Unsup as e:
            self.report.add("construct", f"an in-place op on a view: {e}", self.where())

    def scatter_into(self, h, base, idx, new_ref, view, scalar=None):
        frame = h.frame
        old = frame.refs.get(id(base))
        if old is None:
            raise _Unsup("the tensor is not one the trace follows")
        base_ref = old[0]
        shape = list(base.shape)
        # the index over base's dims: (lo, hi) kept per dim; ints squeeze
        pads, ops, d, v = [], [], 0, 0
        idx = list(idx)
        if sum(1 for i in idx if i is Ellipsis) > 1:
            raise _Unsup("an index with two '...'")
        if Ellipsis in [i for i in idx if not isinstance(i, torch.Tensor)]:
            k = next(n for n, i in enumerate(idx) if i is Ellipsis)
            n_real = sum(1 for i in idx if i is not None and i is not Ellipsis)
            idx = idx[:k] + [slice(None)] * (len(shape) - n_real) + idx[k + 1:]
        idx = idx + [slice(None)] * (len(shape) - sum(1 for i in idx if i is not None))
        for i in idx:
            if i is None:
                ops.append(("squeeze", v))
                continue
            if isinstance(i, bool) or isinstance(i, torch.Tensor):
                raise _Unsup("an index with a tensor or bool")
            if isinstance(i, int):
                j = i + shape[d] if i < 0 else i
                pads.append((j, shape[d] - j - 1))
                ops.append(("unsqueeze", v))
                v += 1
            elif isinstance(i, slice):
                start, stop, step = i.indices(shape[d])
                if step != 1:
                    raise _Unsup("a slice with a step")
                stop = max(stop, start)
                pads.append((start, shape[d] - stop))
                v += 1
            else:
                raise _Unsup(f"an index of {type(i).__name__}")
            d += 1
        ref = new_ref
        for what, at in ops if scalar is None else ():
            if what == "squeeze":
                ref = h.op("squeeze", [ref], dim=at)
            else:
                ref = h.op("unsqueeze", [ref], dim=at)
        flat = []
        for lo, hi in reversed(pads):
            flat += [lo, hi]
        whole = not any(flat)
        if scalar is not None:
            n = len(shape)
            if whole:
                new_base = h.op("full", [base_ref], size=shape, fill_value=scalar,
                                from_input=[0] * n, from_dim=list(range(n)))
            else:
                inner = [s - lo - hi for s, (lo, hi) in zip(shape, pads)]
                ones = h.op("full", [], size_key="size", size=inner, fill_value=1.0)
                mask = h.op("pad", [ones], pad=flat, mode="constant", value=0.0)
                new_base = h.op("masked_fill", [base_ref, mask], value=scalar)
        elif whole:
            new_base = ref
        else:
            padded = h.op("pad", [ref], pad=flat, mode="constant", value=0.0)
            inner = [s - lo - hi for s, (lo, hi) in zip(shape, pads)]
            ones = h.op("full", [ref], size=inner, fill_value=1.0,
                        from_input=[0] * len(inner), from_dim=list(range(len(inner))))
            mask = h.op("pad", [ones], pad=flat, mode="constant", value=0.0)
            new_base = h.op("where", [mask, padded, base_ref])
        frame.bind(base, new_base)
        if view is not None:
            frame.bind(view, new_ref)
        if id(base) in frame.views:          # base is a slice of another tensor
            self.write_back(frame, h.func, base, new_base)


class _OpCtx:
    """What an op handler sees: the frame, the real result, and `op` to emit
    nodes."""

    def __init__(self, tracer, frame, func, result, outs):
        self.tr = tracer
        self.frame = frame
        self.func = func
        self.result = result
        self.outs = outs

    def is_t(self, v):
        return isinstance(v, torch.Tensor) and self.tr.tracked(self.frame, v)

    def ref(self, v):
        if isinstance(v, (str, tuple)):     # a ref already (tuple: a module node's output)
            return v
        if not isinstance(v, torch.Tensor):
            raise _Unsup(f"a {type(v).__name__} where a tensor is expected")
        r = self.tr.lookup(self.frame, v)
        if r is None:
            r = self.tr.materialize(self.frame, v)
        if r is None:
            raise _Unsup(f"a constant tensor of shape {list(v.shape)}")
        return r

    def is_own(self, t):
        return id(t) in self.frame.own

    def operand(self, v):
        """A tensor operand (traced, or a constant of more than one element;
        a one-element constant is a number)."""
        return isinstance(v, torch.Tensor) and (self.is_t(v) or v.numel() != 1)

    def module(self, sub, inputs):
        """A node calling submodule `sub` (F.linear(x, self.fc.weight, ...)
        is self.fc(x))."""
        frame = self.frame
        path = self.tr.paths.get(id(sub))
        if path is None or (frame.path and not path.startswith(frame.path + ".")):
            raise _Unsup("a module that is not below the caller")
        rel = path[len(frame.path) + 1:] if frame.path else path
        node = _Node("module", rel, None, [self.ref(i) for i in inputs], {},
                     where=self.tr.where())
        frame.nodes.append(node)
        return ("@", node.uid, 0)

    def num(self, v, what="a number"):
        if isinstance(v, bool):
            return float(v)
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, torch.Tensor) and not self.is_t(v) and v.numel() == 1:
            return float(v.item())
        raise _Unsup(f"{what} given as {type(v).__name__}")

    def op(self, layer, inputs, size_key=None, n_out=1, **cfg):
        frame = self.frame
        refs = [self.ref(i) for i in inputs]
        cfg = {k: v for k, v in cfg.items() if v is not None}
        name = frame.fresh(layer)
        node = _Node("op", name, layer, refs, cfg, size_key=size_key, n_out=n_out,
                     where=self.tr.where(), fn=_fname(self.func))
        node.name = name
        frame.nodes.append(node)
        return name

    def shape_of(self, ref):
        return self.frame.shapes.get(ref)


def _ints(v):
    if isinstance(v, torch.Size):
        return [int(a) for a in v]
    if isinstance(v, (tuple, list)):
        return [int(a) for a in v]
    return [int(v)]


def _sizes(args, kw, key):
    """view(2, 3) / view((2, 3)) / view(size=(2, 3))."""
    if key in kw:
        return _ints(kw[key])
    if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)):
        return _ints(args[0])
    return _ints(args)


# ---- op handlers: (h, *PyTorch's args) -> ref or refs of the outputs -------

def _h_view(h, x, *shape, **kw):
    if shape and isinstance(shape[0], torch.dtype):
        raise _Unsup("view as another dtype")
    return h.op("view", [x], size_key="shape", shape=_sizes(shape, kw, "size"))


def _h_reshape(h, x, *shape, **kw):
    return h.op("reshape", [x], size_key="shape", shape=_sizes(shape, kw, "shape"))


def _h_flatten(h, x, start_dim=0, end_dim=-1):
    return h.op("flatten", [x], start_dim=start_dim, end_dim=end_dim)


def _h_unflatten(h, x, dim, sizes):
    return h.op("unflatten", [x], dim=dim, unflattened_size=_ints(sizes))


def _h_permute(h, x, *dims, **kw):
    return h.op("permute", [x], dims=_sizes(dims, kw, "dims"))


def _h_transpose(h, x, dim0, dim1):
    return h.op("transpose", [x], dim0=dim0, dim1=dim1)


def _h_t(h, x):
    if x.dim() < 2:
        return h.ref(x)
    return h.op("transpose", [x], dim0=0, dim1=1)


def _h_T(h, x):
    """x.T: the dims reversed (a transpose of a matrix)."""
    if x.dim() < 2:
        return h.ref(x)
    if x.dim() == 2:
        return h.op("transpose", [x], dim0=0, dim1=1)
    return h.op("permute", [x], dims=list(range(x.dim() - 1, -1, -1)))


def _h_mT(h, x):
    return h.op("transpose", [x], dim0=-2, dim1=-1)


def _h_alias(h, x, *a, **kw):
    return h.ref(x)


_DTYPE_NAMES = {torch.float32: "float32", torch.int64: "int64", torch.int32: "int32",
                torch.uint8: "uint8", torch.bool: "bool"}


def _nnmod_dtype(h, x):
    """The dtype x has in nnmod: PyTorch's, except comparisons (f32 0/1)."""
    return torch.float32 if h.ref(x) in h.frame.f01 else x.dtype


def _h_to(h, x, *a, **kw):
    """x.to(dtype), x.float(), x.bool(), x.type_as(y): the `to` op where
    the dtype changes in nnmod (a comparison is f32 0/1 there already)."""
    if h.result.device != x.device:
        raise _Unsup("moving a tensor to another device inside forward")
    dst = h.result.dtype
    src = _nnmod_dtype(h, x)
    if dst == src:
        return h.ref(x)
    if dst not in _DTYPE_NAMES or src not in _DTYPE_NAMES:
        raise _Unsup(f"a conversion from {x.dtype} to {dst} (nnmod has "
                     f"{', '.join(_DTYPE_NAMES.values())})")
    return h.op("to", [x], dtype=_DTYPE_NAMES[dst])


def _touch(h, x):
    """A tensor made from sizes (a uniform factory, an arange, an op of
    them) used by a traced op: its node made now, of its own dtype."""
    if isinstance(x, torch.Tensor) and not h.is_t(x) and any(
            h.tr.live(tab, x) for tab in (h.tr.lazy, h.tr.recipes, h.tr.aranges)):
        h.ref(x)


def _as_f32(h, x):
    """A ref to x as f32 (integer and bool tensors are cast: nnmod's
    arithmetic and comparisons are f32; integers are exact below 2^24)."""
    _touch(h, x)
    if isinstance(x, torch.Tensor) and h.is_t(x) and _nnmod_dtype(h, x) != torch.float32:
        return h.op("to", [x], dtype="float32")
    return x


def _h_logical_not(h, x):
    r = h.op("sub", [_as_f32(h, x)], other=1.0, reverse=True)
    h.frame.f01.add(r)
    return r


def _logical(layer):
    def handler(h, x, other):
        if not (h.operand(x) and h.operand(other)):
            raise _Unsup("a logical op with a Python value")
        if x.dtype != torch.bool or other.dtype != torch.bool:
            raise _Unsup("bitwise ops on integers")
        r = h.op(layer, [_as_f32(h, x), _as_f32(h, other)])
        h.frame.f01.add(r)
        return r
    return handler


def _h_squeeze(h, x, dim=None):
    return h.op("squeeze", [x], dim=dim if not isinstance(dim, tuple) else list(dim))


def _h_unsqueeze(h, x, dim):
    return h.op("unsqueeze", [x], dim=dim)


def _in_f32(h, x, make):
    """make(ref of x as f32), cast back to x's dtype: the shape ops that
    take f32 only (expand, repeat, concat), on an i64 index or a mask."""
    dt = _nnmod_dtype(h, x)
    if dt == torch.float32:
        return make(x)
    return _back(h, make(_as_f32(h, x)), dt)


def _h_expand(h, x, *size, **kw):
    return _in_f32(h, x, lambda r: h.op("expand", [r], size_key="size",
                                        size=_sizes(size, kw, "size")))


def _h_expand_as(h, x, other):
    return _in_f32(h, x, lambda r: h.op("expand_as", [r, other]))


def _h_repeat(h, x, *repeats, **kw):
    return _in_f32(h, x, lambda r: h.op("repeat", [r], size_key="repeats",
                                        repeats=_sizes(repeats, kw, "repeats")))


def _h_chunk(h, x, chunks, dim=0):
    return _multi(h, h.op("chunk", [x], n_out=len(h.outs), chunks=chunks, dim=dim))


def _h_split(h, x, split_size_or_sections=None, dim=0, split_size=None):
    s = split_size_or_sections if split_size_or_sections is not None else split_size
    s = s if isinstance(s, int) else _ints(s)
    return _multi(h, h.op("split", [x], n_out=len(h.outs), split_size_or_sections=s, dim=dim))


def _h_tensor_split(h, x, indices_or_sections=None, dim=0, sections=None, indices=None,
                    tensor_indices_or_sections=None):
    """torch.tensor_split: a split at the sizes the pieces have (MViT's
    class_token, x = torch.tensor_split(x, (1,), dim=2))."""
    d = dim if dim >= 0 else dim + x.dim()
    sizes = [int(o.shape[d]) for o in h.outs]
    return _multi(h, h.op("split", [x], n_out=len(h.outs), split_size_or_sections=sizes,
                          dim=dim))


def _h_unbind(h, x, dim=0):
    return _multi(h, h.op("unbind", [x], n_out=len(h.outs), dim=dim))


def _multi(h, name):
    return [name if k == 0 else f"{name}:{k}" for k in range(len(h.outs))]


def _index_str(i):
    if i is None:
        return "None"
    if i is Ellipsis:
        return "..."
    if isinstance(i, bool):
        raise _Unsup("indexing with a bool")
    if isinstance(i, int):
        return str(int(i))
    if isinstance(i, slice):
        for v in (i.start, i.stop, i.step):
            if v is not None and not isinstance(v, int):
                raise _Unsup(f"a slice with a {type(v).__name__} bound")
        s = ("" if i.start is None else str(i.start)) + ":" + \
            ("" if i.stop is None else str(i.stop))
        return s + (f":{i.step}" if i.step is not None else "")
    if isinstance(i, torch.Tensor):
        raise _Unsup("indexing with a tensor (gather / boolean mask)")
    raise _Unsup(f"indexing with a {type(i).__name__}")


def _h_getitem(h, x, idx):
    dt = _nnmod_dtype(h, x)
    if dt != torch.float32 and dt in _DTYPE_NAMES:
        # nnmod slices f32: an i64 or bool tensor (position ids, a mask) is
        # cast there and back (exact for integers below 2^24)
        h.frame.views.pop(id(h.result), None)
        src = h.op("to", [x], dtype="float32")
        h.frame.shapes[src] = tuple(x.shape)      # (a slice that follows a dynamic dim)
        return h.op("to", [_h_getitem_f32(h, src, idx, x)], dtype=_DTYPE_NAMES[dt])
    r = _h_getitem_f32(h, x, idx, x)
    if isinstance(h.result, torch.Tensor) and h.result._base is not None:
        h.frame.views[id(h.result)] = (x, idx if isinstance(idx, tuple) else (idx,))
    return r


def _h_getitem_f32(h, x, idx, orig):
    """getitem of x (a ref or tensor, f32 in nnmod); orig: the PyTorch tensor
    indexed (for shapes)."""
    idx = idx if isinstance(idx, tuple) else (idx,)
    tens = [k for k, i in enumerate(idx) if isinstance(i, torch.Tensor)]
    if len(tens) > 1:
        return _h_getitem_multi(h, x, idx, orig, tens)
    if tens:
        # x[index] / x[:, index] with one integer index tensor: index_select
        k = tens[0]
        i = idx[k]
        if len(tens) > 1 or i.dtype != torch.int64 or sum(j is Ellipsis for j in idx) > 1 or \
                any(j != slice(None) and j is not Ellipsis
                    for n, j in enumerate(idx) if n != k):
            raise _Unsup("indexing with a tensor other than x[..., index] with one int64 "
                         "index (gather / boolean mask)")
        if any(j is Ellipsis for j in idx[:k]):       # x[..., index]: k from the end
            k = orig.dim() - (len(idx) - k)
        elif any(j is Ellipsis for j in idx):
            pass                                        # x[:, index, ...]: k as written
        if i.dim() == 1:
            return h.op("index_select", [x, i], dim=k)
        flat = h.op("reshape", [i], shape=[-1])
        y = h.op("index_select", [x, flat], dim=k)
        shape = list(orig.shape[:k]) + list(i.shape) + list(orig.shape[k + 1:])
        return h.op("reshape", [y], size_key="shape", shape=shape)
    return h.op("getitem", [x], index=[_index_str(i) for i in idx])


def _h_getitem_multi(h, x, idx, orig, tens):
    """x[:, i, j] with several 1-d int64 index tensors of one length B on
    adjacent dims (out[b] = x[:, i[b], j[b]]; h[torch.arange(n), lengths - 1]
    picks each sequence's last step): index_select along the first, then a
    gather along each next one. An index that is torch.arange of the dim's
    size is the dim itself (no op)."""
    p, q = tens[0], len(tens)
    ok = tens == list(range(p, p + q)) and all(
        j == slice(None) for n, j in enumerate(idx) if n not in tens)
    ts = [idx[k] for k in tens]
    if not ok or any(t.dim() != 1 or t.dtype != torch.int64 for t in ts) or \
            len({int(t.shape[0]) for t in ts}) != 1:
        raise _Unsup("indexing with several tensors other than x[:, i, j] with 1-d int64 "
                     "indices of one length on adjacent dims (gather / boolean mask)")
    shape = list(orig.shape)
    b = int(ts[0].shape[0])
    ar = h.tr.aranges.get(id(ts[0]))
    first_is_dim = ar is not None and ar[0] is ts[0] and ar[1] == (0, shape[p], 1) and \
        b == shape[p]
    y = x if first_is_dim else h.op("index_select", [x, ts[0]], dim=p)
    cur = shape[:p] + [b] + shape[p + 1:]
    for t in ts[1:]:
        g = _as_f32(h, t)
        for _ in range(p):
            g = h.op("unsqueeze", [g], dim=0)
        for _ in range(len(cur) - p - 1):
            g = h.op("unsqueeze", [g], dim=-1)       # [1.., B, 1, 1..]
        size = cur[:p] + [-1, 1] + cur[p + 2:]
        g = h.op("to", [h.op("expand", [g], size_key="size", size=size)], dtype="int64")
        y = h.op("squeeze", [h.op("gather", [y, g], dim=p + 1)], dim=p + 1)
        cur = cur[:p + 1] + cur[p + 2:]
    return y


def _h_zero(h, x):
    return _back(h, _full_like(h, x, 0.0), _nnmod_dtype(h, x))


def _h_fill(h, x, value):
    return _back(h, _full_like(h, x, h.num(value)), _nnmod_dtype(h, x))


def _h_index_select(h, x, dim, index):
    return h.op("index_select", [x, index], dim=dim)


def _h_narrow(h, x, dim, start, length):
    return h.op("narrow", [x], dim=dim, start=int(start), length=int(length))


def _h_flip(h, x, *dims, **kw):
    return h.op("flip", [x], dims=_sizes(dims, kw, "dims"))


def _h_select(h, x, dim, index):
    return h.op("select", [x], dim=dim, index=int(index))


def _chain(h, layer, tensors, dim):
    dts = [_nnmod_dtype(h, t) for t in tensors if isinstance(t, torch.Tensor)]
    if any(d != torch.float32 for d in dts) and isinstance(h.result, torch.Tensor):
        # concat / stack take f32: i64 indices, masks there and back
        return _back(h, _chain(h, layer, [_as_f32(h, t) for t in tensors], dim),
                     h.result.dtype)
    refs = [h.ref(t) for t in tensors]
    if not refs:
        raise _Unsup(f"{layer} of no tensors")
    if layer == "stack" and len(refs) > _MAX_CAT:
        raise _Unsup(f"stack of {len(refs)} tensors (nnmod's stack takes at most {_MAX_CAT})")
    all_refs, chain = list(refs), []
    while len(refs) > _MAX_CAT:
        # cat(a..p, q..) == cat(cat(a..p), q..): chained, 16 at a time
        first = h.op(layer, refs[:_MAX_CAT], dim=dim)
        chain.append(h.frame.nodes[-1])
        refs = [first] + refs[_MAX_CAT:]
    last = h.op(layer, refs, dim=dim)
    chain.append(h.frame.nodes[-1])
    if layer == "concat":
        chain[-1].cat_all = (all_refs, dim, chain)
    return last


def _h_cat(h, tensors, dim=0, axis=None):
    return _chain(h, "concat", list(tensors), axis if axis is not None else dim)


def _h_stack(h, tensors, dim=0):
    return _chain(h, "stack", list(tensors), dim)


def _h_roll(h, x, shifts, dims=None):
    return h.op("roll", [x], shifts=shifts if isinstance(shifts, int) else _ints(shifts),
                dims=None if dims is None else (dims if isinstance(dims, int) else _ints(dims)))


_PAD_LAYERS = {"reflect": "reflection_pad", "replicate": "replication_pad"}


def _h_pad(h, x, pad, mode="constant", value=None):
    if mode in _PAD_LAYERS:
        # F.pad(x, (l, r, t, b), mode="reflect") is nn.ReflectionPad2d((l, r, t, b))
        n = len(pad) // 2
        if len(pad) % 2 or n not in (1, 2, 3):
            raise _Unsup(f"pad mode '{mode}' with {len(pad)} pad sizes")
        return h.op(f"{_PAD_LAYERS[mode]}{n}d", [x], padding=_ints(pad))
    if mode == "circular":
        # wraps around: per padded dim (last first), cat(x[-l:], x, x[:r])
        if len(pad) % 2 or len(pad) // 2 > x.dim() - 2:
            raise _Unsup(f"pad mode 'circular' with {len(pad)} pad sizes")
        y = h.ref(x)
        for k in range(len(pad) // 2):
            lo, hi, d = int(pad[2 * k]), int(pad[2 * k + 1]), x.dim() - 1 - k
            if lo < 0 or hi < 0 or max(lo, hi) > int(x.shape[d]):
                raise _Unsup(f"pad mode 'circular' by {lo}, {hi} on a dim of {x.shape[d]}")
            pre = [":"] * d
            parts = ([h.op("getitem", [y], index=pre + [f"-{lo}:"])] if lo else []) + [y] + \
                ([h.op("getitem", [y], index=pre + [f":{hi}"])] if hi else [])
            if len(parts) > 1:
                y = h.op("concat", parts, dim=d)
        return y
    if mode != "constant":
        raise _Unsup(f"pad mode '{mode}' (nnmod pads with a constant, 'reflect', "
                     "'replicate' or 'circular')")
    return h.op("pad", [x], pad=_ints(pad), mode=mode,
                value=0.0 if value is None else float(value))


def _arith(h, layer, inputs, **cfg):
    """An arithmetic op as PyTorch promotes it: integer tensors (i64 in
    nnmod: an arange, a count) are cast to f32 first (nnmod's arithmetic is
    f32; exact below 2^24), and the result cast back where PyTorch's is an
    integer tensor (arange(t) + 1 stays i64; arange(t) * 0.5 is f32)."""
    for t in inputs:
        _touch(h, t)
    ints = [t for t in inputs if isinstance(t, torch.Tensor) and h.is_t(t) and
            _nnmod_dtype(h, t) != torch.float32]
    if not ints:
        return h.op(layer, inputs, **cfg)
    y = h.op(layer, [_as_f32(h, t) if any(t is i for i in ints) else t for t in inputs], **cfg)
    dst = h.result.dtype if isinstance(h.result, torch.Tensor) else torch.float32
    if dst != torch.float32:
        if dst not in _DTYPE_NAMES:
            raise _Unsup(f"{layer} giving {dst}")
        y = h.op("to", [y], dtype=_DTYPE_NAMES[dst])
    return y


def _scalar_or_tensor(h, layer, x, other, scalar_key="other", commutative=False, **cfg):
    tx, to = h.operand(x), h.operand(other)
    if tx and to:
        return _arith(h, layer, [x, other], **cfg)
    if tx:
        return _arith(h, layer, [x], **{scalar_key: h.num(other)}, **cfg)
    if to:
        if commutative:
            return _arith(h, layer, [other], **{scalar_key: h.num(x)}, **cfg)
        return _arith(h, layer, [other], **{scalar_key: h.num(x)}, reverse=True, **cfg)
    raise _Unsup("no traced tensor among the operands")


def _h_add(h, x, other, alpha=1):
    if alpha != 1:
        if h.operand(x) and h.operand(other):
            return _arith(h, "add", [x, other], alpha=float(alpha))
        if h.operand(x):
            return _arith(h, "add", [x], other=h.num(other) * alpha)
        raise _Unsup("add with alpha and a scalar first")
    return _scalar_or_tensor(h, "add", x, other, commutative=True)


def _h_radd(h, x, other):
    return _scalar_or_tensor(h, "add", x, other, commutative=True)


def _h_mul(h, x, other):
    return _scalar_or_tensor(h, "mul", x, other, commutative=True)


def _h_sub(h, x, other, alpha=1):
    if h.operand(x) and h.operand(other):
        return _arith(h, "sub", [x, other], alpha=None if alpha == 1 else float(alpha))
    if h.operand(x):
        return _arith(h, "sub", [x], other=h.num(other) * alpha)
    if alpha != 1:
        raise _Unsup("sub with alpha and a scalar first")
    return _arith(h, "sub", [other], other=h.num(x), reverse=True)


def _h_rsub(h, x, other, alpha=1):      # other - alpha * x
    if alpha != 1:
        raise _Unsup("rsub with alpha")
    if h.operand(other):
        return _arith(h, "sub", [other, x])
    return _arith(h, "sub", [x], other=h.num(other), reverse=True)


def _h_div(h, x, other, rounding_mode=None):
    if rounding_mode is not None:
        raise _Unsup(f"div with rounding_mode='{rounding_mode}'")
    return _scalar_or_tensor(h, "div", x, other)


def _h_rdiv(h, x, other):               # other / x
    return _arith(h, "div", [x], other=h.num(other), reverse=True)


def _h_pow(h, x, exponent):
    return _scalar_or_tensor(h, "pow", x, exponent, scalar_key="exponent")


def _h_rpow(h, x, other):               # other ** x
    return h.op("pow", [x], exponent=h.num(other), reverse=True)


def _unary(layer):
    def handler(h, x, *a, **kw):
        return h.op(layer, [x])
    return handler


def _act(layer, keys=()):
    def handler(h, x, *a, **kw):
        cfg = dict(zip(keys, a))
        cfg.update({k: v for k, v in kw.items() if k in keys})
        return h.op(layer, [x], **cfg)
    return handler


def _h_softmax(layer):
    def handler(h, x, dim=None, _stacklevel=3, dtype=None, **kw):
        if dim is None:
            raise _Unsup(f"{layer} without dim")
        if dtype is not None and dtype != x.dtype:
            raise _Unsup(f"{layer} with dtype={dtype}")
        return h.op(layer, [x], dim=dim)
    return handler


def _h_hardtanh(h, x, min_val=-1.0, max_val=1.0, inplace=False):
    if (min_val, max_val) == (0.0, 6.0):
        return h.op("relu6", [x])
    return h.op("hardtanh", [x], min_val=float(min_val), max_val=float(max_val))


def _h_clamp(h, x, min=None, max=None):
    if isinstance(min, torch.Tensor) or isinstance(max, torch.Tensor):
        raise _Unsup("clamp with tensor bounds")
    if min is not None and max is None and float(min) == 0.0:
        return h.op("relu", [x])
    return h.op("clamp", [x], min=None if min is None else float(min),
                max=None if max is None else float(max))


def _h_clamp_min(h, x, min):
    return _h_clamp(h, x, min=min)


def _h_clamp_max(h, x, max):
    return _h_clamp(h, x, max=max)


def _reduce(layer):
    def handler(h, x, dim=None, keepdim=False, dtype=None, **kw):
        if dtype is not None and dtype != x.dtype:
            raise _Unsup(f"{layer} with dtype={dtype}")
        if isinstance(dim, (tuple, list)) and len(dim) == 0:
            dim = None
        return h.op(layer, [x], dim=None if dim is None else (dim if isinstance(dim, int)
                                                               else _ints(dim)),
                    keepdim=bool(keepdim) if keepdim else None)
    return handler


def _minmax(layer):
    def handler(h, x, dim=None, keepdim=False, **kw):
        if isinstance(dim, torch.Tensor):
            return h.op(layer + "imum", [x, dim])
        if dim is None:
            return h.op("a" + layer, [x])
        return _multi(h, h.op(layer, [x], n_out=len(h.outs), dim=dim,
                              keepdim=bool(keepdim) if keepdim else None))
    return handler


def _h_matmul(h, x, other):
    return h.op("matmul", [x, other])


def _einsum_parse(eq, operands):
    """'bhid,bhjd->bhij' as ([['b','h','i','d'], ...], out); '...' becomes
    letters of its own; no '->' gives PyTorch's implicit output."""
    eq = eq.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise _Unsup(f"einsum '{eq}' with {len(operands)} operands")
    used = set(c for c in eq if c.isalpha())
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in used]
    ell = None
    subs = []
    for term, t in zip(terms, operands):
        if "..." in term:
            n = t.dim() - (len(term) - 3)
            if ell is None or len(ell) < n:
                ell = (ell or []) + spare[len(ell or []):n]
            head, _, tail = term.partition("...")
            subs.append(list(head) + ell[len(ell) - n:] + list(tail))
        else:
            subs.append(list(term))
        if len(subs[-1]) != t.dim():
            raise _Unsup(f"einsum '{eq}': a term does not match its operand's {t.dim()} dims")
    if arrow:
        if "..." in out:
            head, _, tail = out.partition("...")
            out = list(head) + (ell or []) + list(tail)
        else:
            out = list(out)
    else:
        counts = collections.Counter(c for s in subs for c in s)
        out = (ell or []) + sorted(c for c in counts if counts[c] == 1 and c not in (ell or []))
    return subs, out


def _h_einsum(h, equation, *operands):
    """torch.einsum as permute / sum / reshape / matmul, pairwise left to
    right: per pair, the indices of both and of the output are batch dims,
    those of both only are contracted (one matmul), the others are the
    rows and columns."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not isinstance(equation, str) or not operands:
        raise _Unsup("einsum without an equation string")
    subs, out = _einsum_parse(equation, operands)
    sizes = {}
    for sub, t in zip(subs, operands):
        if len(set(sub)) != len(sub):
            raise _Unsup(f"einsum '{equation}': a repeated index in one term (a diagonal)")
        for c, n in zip(sub, t.shape):
            if sizes.setdefault(c, int(n)) != int(n):
                raise _Unsup(f"einsum '{equation}': index '{c}' broadcast")

    def reduce_only(ref, sub, keep):
        drop = [i for i, c in enumerate(sub) if c not in keep]
        if drop:
            ref = h.op("sum", [ref], dim=drop if len(drop) > 1 else drop[0])
            sub = [c for c in sub if c in keep]
        return ref, sub

    def permute(ref, sub, order):
        if sub == order:
            return ref
        return h.op("permute", [ref], dims=[sub.index(c) for c in order])

    def reshape(ref, shape_now, shape):
        if list(shape_now) == list(shape):
            return ref
        return h.op("reshape", [ref], size_key="shape", shape=list(shape))

    ref, sub = h.ref(operands[0]), list(subs[0])
    for k in range(1, len(operands)):
        rest = set(out).union(*[set(s) for s in subs[k + 1:]])
        bref, bsub = h.ref(operands[k]), list(subs[k])
        ref, sub = reduce_only(ref, sub, rest | set(bsub))
        bref, bsub = reduce_only(bref, bsub, rest | set(sub))
        batch = [c for c in sub if c in bsub and c in rest]
        contr = [c for c in sub if c in bsub and c not in rest]
        left = [c for c in sub if c not in bsub]
        right = [c for c in bsub if c not in sub]
        a = permute(ref, sub, batch + left + contr)
        b = permute(bref, bsub, batch + contr + right)
        bs = [sizes[c] for c in batch]
        L = int(np.prod([sizes[c] for c in left])) if left else 1
        K = int(np.prod([sizes[c] for c in contr])) if contr else 1
        R = int(np.prod([sizes[c] for c in right])) if right else 1
        a = reshape(a, bs + [sizes[c] for c in left + contr], bs + [L, K])
        b = reshape(b, bs + [sizes[c] for c in contr + right], bs + [K, R])
        y = h.op("matmul", [a, b])
        ref = reshape(y, bs + [L, R], bs + [sizes[c] for c in left + right])
        sub = batch + left + right
    ref, sub = reduce_only(ref, sub, set(out))
    if set(sub) != set(out):
        raise _Unsup(f"einsum '{equation}': an output index no operand has")
    return permute(ref, sub, list(out))


def _arange_spec(*args, start=None, end=None, step=None, **kw):
    """torch.arange's (start, end, step) as numbers, or None."""
    nums = list(args)
    if len(nums) == 1 and end is None:
        end, nums = nums[0], []
    elif nums:
        start = nums[0]
        end = nums[1] if len(nums) > 1 else end
        step = nums[2] if len(nums) > 2 else step
    vals = [0 if start is None else start, end, 1 if step is None else step]
    if any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in vals):
        return None
    return tuple(vals)


def _h_packed(h, *a, **kw):
    raise _Unsup("packed sequences (nn.utils.rnn.pack_padded_sequence) are not supported by "
                 "nnmod's recurrent layers: pass the padded batch (and mask or pick the "
                 "outputs by length yourself)")


def _h_bmm(h, x, other):
    return h.op("bmm", [x, other])


def _h_masked_fill(h, x, mask, value):
    return h.op("masked_fill", [x, mask], value=h.num(value))


def _cmp(layer):
    def handler(h, x, other):
        # nnmod compares f32 (integer token ids are cast: exact below 2^24)
        # and gives f32 0/1: marked, so a mask made of it is cast to bool
        if h.operand(x) and h.operand(other):
            r = h.op(layer, [_as_f32(h, x), _as_f32(h, other)])
        elif h.operand(x):
            r = h.op(layer, [_as_f32(h, x)], other=h.num(other))
        else:
            flip = {"lt": "gt", "gt": "lt", "le": "ge", "ge": "le"}.get(layer, layer)
            r = h.op(flip, [_as_f32(h, other)], other=h.num(x))
        h.frame.f01.add(r)
        return r
    return handler


def _full_like(h, like, value):
    n = like.dim()
    return h.op("full", [like], size_key=None, size=list(like.shape), fill_value=float(value),
                from_input=[0] * n, from_dim=list(range(n)))


def _h_where(h, condition, input=None, other=None):
    if input is None:
        raise _Unsup("torch.where(condition) (the indices of true elements)")
    ins = []
    for v in (input, other):
        ins.append(v if h.operand(v) else _full_like(h, condition, h.num(v)))
    return h.op("where", [condition] + ins)


def _check_dtype(h, dtype):
    if dtype is not None and not (dtype.is_floating_point or dtype == torch.bool):
        raise _Unsup(f"a tensor of dtype {dtype} made in forward")


def _like_factory(fill):
    def handler(h, x, dtype=None, **kw):
        _check_dtype(h, dtype)
        return _full_like(h, x, fill)
    return handler


def _h_full_like(h, x, fill_value, dtype=None, **kw):
    _check_dtype(h, dtype)
    return _full_like(h, x, h.num(fill_value))


def _h_adaptive_avg_pool2d(h, x, output_size):
    return h.op("adaptive_avg_pool2d", [x], output_size=output_size if isinstance(
        output_size, int) else list(output_size))


def _h_avg_pool2d(h, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                  count_include_pad=True, divisor_override=None):
    if divisor_override is not None:
        raise _Unsup("avg_pool2d with divisor_override")
    return h.op("avg_pool2d", [x], kernel_size=kernel_size,
                stride=kernel_size if stride is None or stride == [] else stride,
                padding=padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad)


def _h_avg_pool(layer):
    def handler(h, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                count_include_pad=True, divisor_override=None):
        if divisor_override is not None and layer == "avg_pool1d":
            raise _Unsup("avg_pool1d with divisor_override")
        return h.op(layer, [x], kernel_size=kernel_size,
                    stride=kernel_size if stride is None or stride == [] else stride,
                    padding=padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                    divisor_override=divisor_override)
    return handler


def _h_max_pool(layer, indices=False):
    """F.max_pool1d/2d/3d, with return_indices (max_pool2d_with_indices):
    the layer's second output, PyTorch's i64 indices."""
    def handler(h, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                return_indices=False):
        ri = bool(return_indices) or indices
        r = h.op(layer, [x], n_out=2 if ri else 1, kernel_size=kernel_size,
                 stride=kernel_size if stride is None or stride == [] else stride,
                 padding=padding, dilation=dilation, ceil_mode=ceil_mode,
                 return_indices=True if ri else None)
        return [r, f"{r}:1"] if ri else r
    return handler


def _h_adaptive_max_pool(layer, indices=False):
    def handler(h, x, output_size, return_indices=False):
        sizes = output_size if isinstance(output_size, int) else list(output_size)
        if not isinstance(sizes, int) and any(s is None for s in sizes):
            raise _Unsup(f"{layer} with an output_size entry of None")
        ri = bool(return_indices) or indices
        r = h.op(layer, [x], n_out=2 if ri else 1, output_size=sizes,
                 return_indices=True if ri else None)
        return [r, f"{r}:1"] if ri else r
    return handler


def _h_adaptive_avg_pool(layer):
    def handler(h, x, output_size):
        sizes = output_size if isinstance(output_size, int) else list(output_size)
        if not isinstance(sizes, int) and any(s is None for s in sizes):
            raise _Unsup(f"{layer} with an output_size entry of None")
        return h.op(layer, [x], output_size=sizes)
    return handler


def _h_max_unpool(layer):
    """F.max_unpool1d/2d/3d(x, indices, kernel_size, stride, padding): an
    output_size other than the default one has no nnmod form."""
    def handler(h, x, indices, kernel_size, stride=None, padding=0, output_size=None):
        if output_size is not None:
            n = int(layer[-2])
            want = list(h.result.shape[-n:])
            ks, st, pd = (_ntuple(v, n) for v in (
                kernel_size, kernel_size if stride is None else stride, padding))
            dflt = [(int(i) - 1) * s - 2 * p + k
                    for i, k, s, p in zip(x.shape[-n:], ks, st, pd)]
            if dflt != want:
                raise _Unsup(f"{layer} with output_size={list(output_size)} (nnmod's "
                             f"max_unpool gives the default size {dflt})")
        return h.op(layer, [x, indices], kernel_size=kernel_size,
                    stride=kernel_size if stride is None else stride, padding=padding)
    return handler


def _ntuple(v, n):
    if isinstance(v, (tuple, list, torch.Size)):
        return [int(a) for a in v] if len(v) == n else [int(v[0])] * n
    return [int(v)] * n


def _h_dropout(layer):
    """F.dropout(x, p, training=self.training): the dropout layer (it
    follows the module's train/eval mode); training=False (or p=0): x
    itself; training=True (PyTorch's default: dropout even in eval) with
    p > 0 cannot follow the mode and is refused."""
    def handler(h, x, p=0.5, training=True, inplace=False):
        if isinstance(training, _TraceTraining):
            return h.ref(x) if float(p) == 0.0 else h.op(layer, [x], p=float(p))
        if not training or float(p) == 0.0:
            return h.ref(x)
        raise _Unsup(f"training=True with p={float(p)} drops in eval mode too (PyTorch's "
                     "default); pass training=self.training")
    return handler


def _h_stochastic_depth(h, input, p, mode, training=True):
    """torchvision.ops.stochastic_depth(x, p, mode, training=self.training):
    the stochastic_depth layer (it follows train/eval); training=False or
    p=0: x itself; training=True (the default) with p > 0 drops in eval
    mode too and is refused, as F.dropout's."""
    if mode not in ("row", "batch"):
        raise _Unsup(f"stochastic_depth mode '{mode}'")
    if isinstance(training, _TraceTraining):
        return h.ref(input) if float(p) == 0.0 else h.op("stochastic_depth", [input],
                                                          p=float(p), mode=mode)
    if not training or float(p) == 0.0:
        return h.ref(input)
    raise _Unsup(f"training=True with p={float(p)} drops in eval mode too (torchvision's "
                 "default); pass training=self.training")


def _h_interpolate(h, x, size=None, scale_factor=None, mode="nearest", align_corners=None,
                   recompute_scale_factor=None, antialias=False):
    # a size list may follow dynamic dims (F.interpolate(x, size=skip.shape[2:])):
    # from_input / from_dim then (upsample 1.2)
    return h.op("upsample", [x], size_key="size" if isinstance(size, (tuple, list, torch.Size))
                else None, size=size if size is None or isinstance(size, int)
                else _ints(size), scale_factor=scale_factor if not isinstance(
                    scale_factor, (tuple, list)) else [float(s) for s in scale_factor],
                mode=mode, align_corners=align_corners,
                recompute_scale_factor=True if recompute_scale_factor else None,
                antialias=True if antialias else None)


def _h_layer_norm(h, x, normalized_shape, weight=None, bias=None, eps=1e-5):
    y = h.op("layer_norm", [x], normalized_shape=_ints(normalized_shape), eps=float(eps),
             elementwise_affine=False)
    if weight is not None:
        y = h.op("mul", [y, weight])
    if bias is not None:
        y = h.op("add", [y, bias])
    return y


def _h_linear(h, x, weight, bias=None):
    # F.linear(x, self.fc.weight, self.fc.bias) is self.fc(x): the module
    # keeps its parameters (torchvision's swin passes them so)
    mod = None if h.is_own(weight) else h.tr.linear_of(weight, "weight")
    if mod is not None and h.tr.below(h.frame, mod) is not None and (
            bias is mod.bias or not h.tr.ex.graph_has("reads")):
        y = h.module(mod, [x])
        if bias is mod.bias:
            return y
        # another bias (swin v2 zeroes a copy's middle third): the module's
        # output minus its bias plus that one
        if mod.bias is not None:
            y = h.op("sub", [y, mod.bias])
        return y if bias is None else h.op("add", [y, bias])
    wt = h.op("transpose", [weight], dim0=0, dim1=1)
    y = h.op("matmul", [x, wt])
    if bias is not None:
        y = h.op("add", [y, bias])
    return y


def _h_embedding(h, input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False):
    """F.embedding(idx, self.emb.weight): the child nn.Embedding called
    (with the same padding_idx, max_norm, ...); with another table (a
    parameter of its own, a descendant's read) the rows picked by
    index_select, reshaped to idx's shape + [dim]."""
    mod = None
    if not h.is_own(weight):
        for m in h.tr.model.modules():
            if isinstance(m, torch.nn.Embedding) and m.weight is weight and \
                    h.tr.ex.kind_of(m) == "leaf":
                mod = m
                break
    if mod is not None and h.tr.below(h.frame, mod) is not None:
        same = (padding_idx, max_norm, float(norm_type), bool(scale_grad_by_freq)) == (
            mod.padding_idx, mod.max_norm, float(mod.norm_type), bool(mod.scale_grad_by_freq))
        if same:
            return h.module(mod, [input])
    if max_norm is not None or scale_grad_by_freq or padding_idx is not None:
        raise _Unsup("F.embedding with padding_idx, max_norm or scale_grad_by_freq on a table "
                     "that is not an nn.Embedding's with the same settings (call the module)")
    if input.dtype != torch.int64:
        raise _Unsup(f"F.embedding with {input.dtype} indices")
    flat = h.op("reshape", [input], shape=[-1])
    rows = h.op("index_select", [weight, flat], dim=0)
    shape = list(input.shape) + [int(weight.shape[1])]
    return h.op("reshape", [rows], size_key="shape", shape=shape)


def _h_embedding_bag(h, input, weight, offsets=None, max_norm=None, norm_type=2,
                     scale_grad_by_freq=False, mode="mean", sparse=False,
                     per_sample_weights=None, include_last_offset=False, padding_idx=None):
    """F.embedding_bag(idx, self.bag.weight, ...): the child nn.EmbeddingBag
    called (with the same settings); with another table, a 2-d idx (each
    row a bag, no offsets) is index_select of the rows, weighted (sum mode)
    and reduced over the bag with sum, mean or amax. Offsets, padding_idx
    and max_norm on another table are refused (make it an nn.EmbeddingBag)."""
    mod = None
    if not h.is_own(weight):
        for m in h.tr.model.modules():
            if isinstance(m, torch.nn.EmbeddingBag) and m.weight is weight and \
                    h.tr.ex.kind_of(m) == "leaf":
                mod = m
                break
    if mod is not None and h.tr.below(h.frame, mod) is not None:
        same = (max_norm, float(norm_type), bool(scale_grad_by_freq), mode,
                bool(include_last_offset), padding_idx) == (
            mod.max_norm, float(mod.norm_type), bool(mod.scale_grad_by_freq), mod.mode,
            bool(mod.include_last_offset), mod.padding_idx)
        if same:
            ins = [input] + ([offsets] if offsets is not None else []) + \
                ([per_sample_weights] if per_sample_weights is not None else [])
            if per_sample_weights is not None and offsets is None:
                raise _Unsup("F.embedding_bag with per_sample_weights and no offsets")
            return h.module(mod, ins)
    if offsets is not None or max_norm is not None or scale_grad_by_freq or \
            padding_idx is not None or include_last_offset:
        raise _Unsup("F.embedding_bag with offsets, padding_idx, max_norm or "
                     "scale_grad_by_freq on a table that is not an nn.EmbeddingBag's with the "
                     "same settings (make the table an nn.EmbeddingBag and call it)")
    if input.dim() != 2 or input.dtype != torch.int64:
        raise _Unsup(f"F.embedding_bag of a {input.dim()}-d {input.dtype} input without offsets")
    if mode not in ("sum", "mean", "max"):
        raise _Unsup(f"F.embedding_bag mode '{mode}'")
    flat = h.op("reshape", [input], shape=[-1])
    rows = h.op("index_select", [weight, flat], dim=0)
    shape = list(input.shape) + [int(weight.shape[1])]
    rows = h.op("reshape", [rows], size_key="shape", shape=shape)
    if per_sample_weights is not None:
        if mode != "sum":
            raise _Unsup("F.embedding_bag per_sample_weights outside mode 'sum'")
        rows = h.op("mul", [rows, h.op("unsqueeze", [per_sample_weights], dim=-1)])
    return h.op({"sum": "sum", "mean": "mean", "max": "amax"}[mode], [rows], dim=1)


def _h_binary(layer):
    def handler(h, x, other):
        return h.op(layer, [x, other])
    return handler


def _h_var(layer):
    def handler(h, x, dim=None, unbiased=True, keepdim=False, correction=None, **kw):
        if correction is not None:
            unbiased = bool(correction)
        if isinstance(dim, bool):          # var(x, unbiased)
            dim, unbiased = None, dim
        return h.op(layer, [x], dim=None if dim is None else (dim if isinstance(dim, int)
                                                               else _ints(dim)),
                    unbiased=bool(unbiased), keepdim=bool(keepdim) if keepdim else None)
    return handler


def _h_norm(h, x, p="fro", dim=None, keepdim=False, dtype=None, **kw):
    if p == "fro":
        p = 2
    if p in (float("inf"), "inf"):
        p = "inf"
    return h.op("norm", [x], p=p if isinstance(p, str) else float(p),
                dim=None if dim is None else (dim if isinstance(dim, int) else _ints(dim)),
                keepdim=bool(keepdim) if keepdim else None)


def _h_normalize(h, x, p=2.0, dim=1, eps=1e-12, out=None):
    return h.op("normalize", [x], p=float(p), dim=dim, eps=float(eps))


def _h_pairwise_distance(h, x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """F.pairwise_distance: ||x1 - x2 + eps||_p over the last dim (ATen's
    own composition)."""
    if x1.dim() != x2.dim():
        raise _Unsup("pairwise_distance of tensors of different ranks")
    d = h.op("sub", [x1, x2])
    if eps:
        d = h.op("add", [d], other=float(eps))
    return h.op("norm", [d], p=float(p), dim=-1, keepdim=bool(keepdim) if keepdim else None)


def _h_cosine_similarity(h, x1, x2, dim=1, eps=1e-8):
    """F.cosine_similarity as torch 1.13 computes it: each operand divided
    by its 2-norm over dim clamped below at eps, then the products summed
    over dim (F.normalize's maths)."""
    if x1.dim() != x2.dim():
        raise _Unsup("cosine_similarity of tensors of different ranks")
    a = h.op("normalize", [x1], p=2.0, dim=dim, eps=float(eps))
    b = h.op("normalize", [x2], p=2.0, dim=dim, eps=float(eps))
    return h.op("sum", [h.op("mul", [a, b])], dim=dim)


def _h_cumsum(h, x, dim, dtype=None, **kw):
    """torch.cumsum / x.cumsum: the cumsum op (f32; an integer or bool
    tensor is summed in f32 and cast back to PyTorch's result dtype, exact
    below 2^24)."""
    y = h.op("cumsum", [_as_f32(h, x)], dim=int(dim))
    dst = h.result.dtype
    if dst != torch.float32:
        if dst not in _DTYPE_NAMES:
            raise _Unsup(f"cumsum to {dst}")
        y = h.op("to", [y], dtype=_DTYPE_NAMES[dst])
    return y


def _h_gather(h, x, dim, index, sparse_grad=False, **kw):
    """torch.gather / x.gather(dim, index): the gather op (an i64 index)."""
    if _nnmod_dtype(h, index) != torch.int64:
        index = h.op("to", [index], dtype="int64")
    return h.op("gather", [x, index], dim=int(dim))


def _h_logsumexp(h, x, dim, keepdim=False):
    """max + log(sum(exp(x - max))) over dim, the max detached (the
    gradient is softmax's, as torch's)."""
    dims = dim if isinstance(dim, int) else _ints(dim)
    m = h.op("detach", [h.op("amax", [x], dim=dims, keepdim=True)])
    s = h.op("sum", [h.op("exp", [h.op("sub", [x, m])])], dim=dims,
             keepdim=bool(keepdim) if keepdim else None)
    mk = m if keepdim else h.op("detach", [h.op("amax", [x], dim=dims)])
    return h.op("add", [h.op("log", [s]), mk])


def _h_logaddexp(h, a, b):
    m = h.op("detach", [h.op("maximum", [a, b])])
    e = h.op("add", [h.op("exp", [h.op("sub", [a, m])]), h.op("exp", [h.op("sub", [b, m])])])
    return h.op("add", [h.op("log", [e]), m])


def _h_addmm(bmm):
    def handler(h, input, m1, m2, beta=1, alpha=1, **kw):
        p = h.op("matmul", [m1, m2])
        if alpha != 1:
            p = h.op("mul", [p], other=float(alpha))
        if beta == 0:
            return p
        i = input if beta == 1 else h.op("mul", [input], other=float(beta))
        return h.op("add", [i, p])
    return handler


def _h_outer(h, a, b):
    return h.op("mul", [h.op("unsqueeze", [a], dim=1), h.op("unsqueeze", [b], dim=0)])


def _h_repeat_interleave(h, x, repeats=None, dim=None, output_size=None, **kw):
    """x.repeat_interleave(r, dim) with an int r: unsqueeze, expand, reshape."""
    if not isinstance(repeats, int) or isinstance(repeats, bool):
        raise _Unsup("repeat_interleave with tensor repeats")
    if dim is None:
        x, dim = h.op("reshape", [x], shape=[-1]), 0
        shape = [int(h.result.shape[0]) // repeats]
    else:
        shape = list(x.shape)
    d = dim if dim >= 0 else dim + len(shape)
    u = h.op("unsqueeze", [x], dim=d + 1)
    size = [-1] * (len(shape) + 1)
    size[d + 1] = repeats
    e = h.op("expand", [u], size=size)
    out = [int(v) for v in h.result.shape]
    return h.op("reshape", [e], size_key="shape", shape=out)


def _h_one_hot(h, x, num_classes=-1):
    """F.one_hot(idx, C): (idx[..., None] == arange(C)) as int64."""
    if num_classes is None or num_classes < 0:
        raise _Unsup("F.one_hot without num_classes (the count follows the values)")
    r = h.op("arange", [], end=int(num_classes), dtype="float32")
    eq = h.op("eq", [h.op("unsqueeze", [_as_f32(h, x)], dim=-1), r])
    return h.op("to", [eq], dtype="int64")


def _h_lerp(h, a, b, weight):
    d = h.op("sub", [b, a])
    w = h.op("mul", [d, weight]) if h.operand(weight) else h.op("mul", [d], other=h.num(weight))
    return h.op("add", [a, w])


def _h_hypot(h, a, b):
    return h.op("sqrt", [h.op("add", [h.op("mul", [a, a]), h.op("mul", [b, b])])])


def _h_var_mean(std):
    def handler(h, x, dim=None, unbiased=True, keepdim=False, correction=None, **kw):
        if correction is not None:
            unbiased = bool(correction)
        dims = None if dim is None else (dim if isinstance(dim, int) else _ints(dim))
        v = h.op("std" if std else "var", [x], dim=dims, unbiased=bool(unbiased),
                 keepdim=bool(keepdim) if keepdim else None)
        m = h.op("mean", [x], dim=dims, keepdim=bool(keepdim) if keepdim else None)
        return [v, m]
    return handler


def _h_gelu(h, x, approximate="none"):
    return h.op("gelu", [x], approximate=approximate if approximate != "none" else None)


# ---- ops users reach for that are compositions (nnmod.torch's own) --------

def _back(h, r, dt):
    """r (computed in f32) as PyTorch's dtype dt: comparisons' f32 0/1 for
    bool, a cast for integers."""
    if dt == torch.float32:
        return r
    if dt == torch.bool:
        h.frame.f01.add(r)
        return r
    if dt not in _DTYPE_NAMES:
        raise _Unsup(f"a result of dtype {dt}")
    return h.op("to", [r], dtype=_DTYPE_NAMES[dt])


def _h_arg(layer):
    """argmax / argmin over a dim (or all, flattened): i64 indices."""
    def handler(h, x, dim=None, keepdim=False, **kw):
        return h.op(layer, [_as_f32(h, x)], dim=None if dim is None else int(dim),
                    keepdim=bool(keepdim) if keepdim else None)
    return handler


def _h_rounding(layer):
    def handler(h, x, *a, decimals=0, **kw):
        if decimals:
            raise _Unsup(f"{layer} with decimals={decimals}")
        if _nnmod_dtype(h, x) != torch.float32:
            return h.ref(x)                   # integers round to themselves
        return h.op(layer, [x])
    return handler


def _h_tri(layer):
    """tril / triu of a tensor forward computed (a mask of a dynamic size
    too: torch.tril(torch.ones(t, t)) is `full` then `tril`)."""
    def handler(h, x, diagonal=0, **kw):
        dt = _nnmod_dtype(h, x)
        r = h.op(layer, [_as_f32(h, x)], diagonal=int(diagonal) if diagonal else None)
        return _back(h, r, dt)
    return handler


def _h_eye(h, n, m=None, **kw):
    """torch.eye(n, m): ones, triu then tril (a size that follows a dynamic
    dim, as torch.eye(adj.size(0)), follows it)."""
    _check_dtype(h, kw.get("dtype"))
    m = n if m is None else m
    ones = h.op("full", [], size_key="size", size=[int(n), int(m)], fill_value=1.0)
    return h.op("tril", [h.op("triu", [ones])])


def _h_pixel_shuffle(layer, key):
    def handler(h, x, factor):
        return h.op(layer, [x], **{key: int(factor)})
    return handler


def _channel_view(h, t, nd):
    """A per-channel vector [C] shaped to broadcast over [N, C, *] (nd dims)."""
    shape = [int(t.shape[0])] + [1] * (nd - 2)
    return h.op("view", [t], shape=shape)


def _affine(h, y, nd, weight, bias):
    if weight is not None:
        y = h.op("mul", [y, _channel_view(h, weight, nd)])
    if bias is not None:
        y = h.op("add", [y, _channel_view(h, bias, nd)])
    return y


def _h_group_norm(h, x, num_groups, weight=None, bias=None, eps=1e-5):
    """F.group_norm: the group_norm layer without affine, then the scale and
    shift (the module's, or any tensor) per channel."""
    y = h.op("group_norm", [x], num_groups=int(num_groups), num_channels=int(x.shape[1]),
             eps=float(eps), affine=False)
    return _affine(h, y, x.dim(), weight, bias)


def _running_norm(h, x, mean, var, weight, bias, eps):
    """(x - mean) / sqrt(var + eps) * weight + bias with per-channel
    statistics (F.batch_norm in eval, F.instance_norm on running stats)."""
    nd = x.dim()
    y = h.op("sub", [x, _channel_view(h, mean, nd)])
    inv = h.op("rsqrt", [h.op("add", [_channel_view(h, var, nd)], other=float(eps))])
    return _affine(h, h.op("mul", [y, inv]), nd, weight, bias)


def _h_instance_norm(h, x, running_mean=None, running_var=None, weight=None, bias=None,
                     use_input_stats=True, momentum=0.1, eps=1e-5):
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise _Unsup("instance_norm with use_input_stats=False and no running statistics")
        return _running_norm(h, x, running_mean, running_var, weight, bias, eps)
    if running_mean is not None:
        raise _Unsup("instance_norm that updates running statistics (use an "
                     "nn.InstanceNorm module with track_running_stats)")
    if x.dim() not in (3, 4, 5):
        raise _Unsup(f"instance_norm of a {x.dim()}-d input")
    y = h.op(f"instance_norm{x.dim() - 2}d", [x], num_features=int(x.shape[1]),
             eps=float(eps), affine=False, track_running_stats=False)
    return _affine(h, y, x.dim(), weight, bias)


def _h_batch_norm(h, x, running_mean, running_var, weight=None, bias=None, training=False,
                  momentum=0.1, eps=1e-5):
    if isinstance(training, _TraceTraining) or training:
        raise _Unsup("F.batch_norm with training=True or training=self.training (batch "
                     "statistics and running-statistics updates: use an nn.BatchNorm module)")
    if running_mean is None or running_var is None:
        raise _Unsup("F.batch_norm without running statistics")
    return _running_norm(h, x, running_mean, running_var, weight, bias, eps)


def _h_loss(layer, keys):
    """F.cross_entropy, F.mse_loss, ...: the loss layer of that name as an op
    (its config from the keywords); weights stay with nn.*Loss modules."""
    def handler(h, *args, **kwargs):
        try:
            a = inspect.signature(h.func).bind(*args, **kwargs).arguments
        except (TypeError, ValueError) as e:
            raise _Unsup(f"arguments not understood ({e})")
        for k in ("weight", "pos_weight"):
            if a.get(k) is not None:
                raise _Unsup(f"{k}= (use an nn loss module constructed with it: its {k} "
                             "is a buffer there)")
        if a.get("size_average") is not None or a.get("reduce") is not None:
            raise _Unsup("size_average / reduce (deprecated): pass reduction=")
        names = list(a)
        cfg = {k: a[k] for k in keys if k in a}
        return h.op(layer, [a[names[0]], a[names[1]]], **cfg)
    return handler


_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_T_ARGS = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups",
                "dilation")


def _h_conv(nd, transposed=False):
    """F.conv1d/2d/3d(x, weight, bias, ...) and F.conv_transpose*: the conv
    layer with functional=true (1.1), the weight and bias its inputs (a
    weight the graph computes: weight_norm, a blur kernel in a buffer, a
    standardised weight)."""
    layer = f"conv_transpose{nd}d" if transposed else f"conv{nd}d"
    names = _CONV_T_ARGS if transposed else _CONV_ARGS

    def handler(h, *args, **kwargs):
        a = dict(zip(names, args))
        a.update(kwargs)
        x, w, b = a["input"], a["weight"], a.get("bias")
        groups = int(a.get("groups", 1))
        if not isinstance(w, torch.Tensor) or w.dim() != nd + 2:
            raise _Unsup("a weight that is not a tensor of the convolution's rank")
        if transposed:
            cin, cout = int(w.shape[0]), int(w.shape[1]) * groups
        else:
            cin, cout = int(w.shape[1]) * groups, int(w.shape[0])
        pad = a.get("padding", 0)
        cfg = dict(in_channels=cin, out_channels=cout, kernel_size=[int(k) for k in w.shape[2:]],
                   stride=a.get("stride", 1), dilation=a.get("dilation", 1), groups=groups,
                   padding=pad if isinstance(pad, str) else pad, bias=b is not None,
                   functional=True)
        if transposed:
            cfg["output_padding"] = a.get("output_padding", 0)
        return h.op(layer, [x, w] + ([b] if b is not None else []), **cfg)
    return handler


def _h_weight_norm(h, v, g, dim=0):
    """torch._weight_norm(v, g, dim) (nn.utils.weight_norm's pre-hook):
    v * (g / ||v||), the norm over every dim but `dim` (all where dim is -1)."""
    nd = v.dim()
    if dim is None or dim == -1:
        n = h.op("norm", [v], p=2.0)
    else:
        d = dim % nd
        n = h.op("norm", [v], p=2.0, dim=[k for k in range(nd) if k != d], keepdim=True)
    return h.op("mul", [v, h.op("div", [g, n])])


def _h_vector_norm(h, x, ord=2, dim=None, keepdim=False, dtype=None, **kw):
    """torch.linalg.vector_norm / torch.linalg.norm of a vector: norm."""
    if dtype is not None and dtype != x.dtype:
        raise _Unsup(f"vector_norm with dtype={dtype}")
    if ord in ("fro", None):
        ord = 2
    if isinstance(ord, str) or ord <= 0 and ord != float("-inf"):
        raise _Unsup(f"vector_norm of order {ord}")
    if ord == float("-inf"):
        raise _Unsup("vector_norm of order -inf")
    return _h_norm(h, x, p=ord, dim=dim, keepdim=keepdim)


def _h_linalg_norm(h, x, ord=None, dim=None, keepdim=False, dtype=None, **kw):
    if ord is not None and (x.dim() > 1 and dim is None or isinstance(dim, (tuple, list)) and
                            len(dim) == 2):
        raise _Unsup(f"a matrix norm (ord={ord!r})")
    return _h_vector_norm(h, x, 2 if ord is None else ord, dim, keepdim, dtype)


def _h_cdist(h, x1, x2, p=2.0, compute_mode=None):
    """torch.cdist(x1, x2, p): ||x1[..., i, :] - x2[..., j, :]||_p for every
    pair, by broadcasting (B x P x R x M elements; PyTorch's own direct
    formula: its matrix-product shortcut is taken above 25 rows)."""
    if x1.size(-2) > 25 or x2.size(-2) > 25:
        if compute_mode != "donot_use_mm_for_euclid_dist" and float(p) == 2.0:
            raise _Unsup("cdist of more than 25 rows at p=2, which PyTorch computes through a "
                         "matrix product (pass compute_mode='donot_use_mm_for_euclid_dist')")
    d = h.op("sub", [h.op("unsqueeze", [x1], dim=-2), h.op("unsqueeze", [x2], dim=-3)])
    return _h_norm(h, d, p=float(p), dim=-1)


def _dim_arange(h, n, nd, d):
    """arange(n) as f32, shaped [n, 1, ..., 1] to broadcast along dim d of
    an nd-dim tensor (its end follows a dynamic size)."""
    r = h.op("arange", [], size_key="end", end=int(n), dtype="float32")
    for _ in range(nd - 1 - d):
        r = h.op("unsqueeze", [r], dim=-1)
    return r


def _h_topk(h, x, k, dim=-1, largest=True, sorted=True):
    """x.topk(k, dim): k passes of max over dim, each masking its pick with
    -inf (values and i64 indices in PyTorch's order; the gradient reaches
    the picked elements, as torch's). k at most 16."""
    k = int(k)
    if k < 1 or k > _MAX_CAT:
        raise _Unsup(f"topk with k={k} (composed of k max passes: 1 to {_MAX_CAT})")
    nd = x.dim()
    d = dim % nd if nd else 0
    cur = _as_f32(h, x)
    if not largest:
        cur = h.op("neg", [cur])
    vals, idxs, pos = [], [], None
    for j in range(k):
        m = h.op("max", [cur], n_out=2, dim=d, keepdim=True)
        vals.append(m)
        if k == 1:
            idxs.append(f"{m}:1")
            break
        idxs.append(h.op("to", [f"{m}:1"], dtype="float32"))
        if j + 1 < k:
            if pos is None:
                pos = _dim_arange(h, x.shape[d], nd, d)
            hit = h.op("eq", [idxs[-1], pos])
            cur = h.op("masked_fill", [cur, hit], value=float("-inf"))
    v = vals[0] if k == 1 else h.op("concat", vals, dim=d)
    i = idxs[0] if k == 1 else h.op("to", [h.op("concat", idxs, dim=d)], dtype="int64")
    if not largest:
        v = h.op("neg", [v])
    dt = h.result[0].dtype if isinstance(h.result, tuple) else x.dtype
    return [_back(h, v, dt), i]


def _h_sort(h, x, dim=-1, descending=False, stable=False, **kw):
    """torch.sort / x.sort over a dim of at most 16: topk of every element
    (values and i64 indices; ties in either order, as PyTorch's unstable
    sort)."""
    if isinstance(dim, bool):                 # x.sort(descending) positional
        dim, descending = -1, dim
    n = int(x.shape[dim]) if x.dim() else 1
    if n > _MAX_CAT:
        raise _Unsup(f"sort over a dim of {n} (composed of one max pass per element: at "
                     f"most {_MAX_CAT})")
    return _h_topk(h, x, n, dim=dim, largest=bool(descending))


def _h_argsort(h, x, dim=-1, descending=False, **kw):
    return _h_sort(h, x, dim=dim, descending=descending)[1]


def _onehot_along(h, index, n, dim):
    """E = (index.unsqueeze(dim + 1) == arange(n) along dim + 1), f32 0/1:
    index's shape with n inserted after dim."""
    nd = index.dim() + 1
    idx = h.op("unsqueeze", [_as_f32(h, index)], dim=dim + 1)
    return h.op("eq", [idx, _dim_arange(h, n, nd, dim + 1)])


def _h_index_add(h, x, dim, index, source, alpha=1, **kw):
    """x.index_add(dim, index, source): x plus the one-hot matrix [n, m] of
    index times source along dim (a product: n * m * the other dims)."""
    if index.dim() != 1:
        raise _Unsup("index_add with an index of more than one dim")
    nd = x.dim()
    d = dim % nd
    n = int(x.shape[d])
    oh = h.op("eq", [h.op("unsqueeze", [_dim_arange(h, n, 1, 0)], dim=1),
                     h.op("unsqueeze", [_as_f32(h, index)], dim=0)])        # [n, m]
    src = _as_f32(h, source)
    if d == nd - 1:
        s = h.op("unsqueeze", [src], dim=-1)
        add = h.op("squeeze", [h.op("matmul", [oh, s])], dim=-1)
    elif d == nd - 2:
        add = h.op("matmul", [oh, src])
    else:
        s = h.op("transpose", [src], dim0=d, dim1=nd - 2)
        add = h.op("transpose", [h.op("matmul", [oh, s])], dim0=d, dim1=nd - 2)
    if alpha != 1:
        add = h.op("mul", [add], other=h.num(alpha))
    return _back(h, h.op("add", [_as_f32(h, x), add]), h.result.dtype)


def _scatter_check(x, dim, index, src):
    d = dim % x.dim()
    if index.dim() != x.dim() or any(index.shape[i] != x.shape[i] for i in range(x.dim())
                                     if i != d):
        raise _Unsup("scatter with an index smaller than the tensor in a dim other than dim")
    if isinstance(src, torch.Tensor) and tuple(src.shape) != tuple(index.shape):
        raise _Unsup("scatter with a src shaped unlike its index")
    return d


def _h_scatter_add(h, x, dim, index, src):
    """x.scatter_add(dim, index, src): x + sum over dim of (index == j) * src,
    a one-hot product (index.numel() * x.shape[dim] elements)."""
    d = _scatter_check(x, dim, index, src)
    e = _onehot_along(h, index, x.shape[d], d)
    s = h.op("unsqueeze", [_as_f32(h, src)], dim=d + 1)
    add = h.op("sum", [h.op("mul", [e, s])], dim=d)
    return _back(h, h.op("add", [_as_f32(h, x), add]), h.result.dtype)


def _h_scatter(h, x, dim, index, src=None, value=None, reduce=None, **kw):
    """x.scatter(dim, index, src or value): where some index names a
    position, src's value there (a one-hot sum; repeated indices, which
    PyTorch leaves unspecified, add up), else x's."""
    if reduce is not None:
        raise _Unsup(f"scatter with reduce='{reduce}'")
    if src is None:
        src = value
    d = _scatter_check(x, dim, index, src)
    e = _onehot_along(h, index, x.shape[d], d)
    hit = h.op("amax", [e], dim=d)
    base = _as_f32(h, x)
    if isinstance(src, torch.Tensor) and h.operand(src):
        s = h.op("unsqueeze", [_as_f32(h, src)], dim=d + 1)
        val = h.op("sum", [h.op("mul", [e, s])], dim=d)
        r = h.op("where", [hit, val, base])
    else:
        r = h.op("masked_fill", [base, hit], value=h.num(src))
    return _back(h, r, h.result.dtype)


OPS = {
    # shapes and indexing (plugins/tensor_ops)
    "view": _h_view, "reshape": _h_reshape, "flatten": _h_flatten, "unflatten": _h_unflatten,
    "permute": _h_permute, "transpose": _h_transpose, "swapaxes": _h_transpose,
    "swapdims": _h_transpose, "t": _h_t, "T": _h_T, "mT": _h_mT,
    "contiguous": _h_alias, "clone": _h_alias, "detach": _unary("detach"),
    "to": _h_to, "float": _h_to, "type_as": _h_to, "type": _h_to, "bool": _h_to,
    "long": _h_to, "int": _h_to,
    "squeeze": _h_squeeze, "unsqueeze": _h_unsqueeze, "expand": _h_expand,
    "expand_as": _h_expand_as, "repeat": _h_repeat, "chunk": _h_chunk, "split": _h_split,
    "unbind": _h_unbind, "tensor_split": _h_tensor_split, "__getitem__": _h_getitem, "narrow": _h_narrow, "select": _h_select,
    "flip": _h_flip,
    "cat": _h_cat, "concat": _h_cat, "concatenate": _h_cat, "stack": _h_stack,
    "roll": _h_roll, "pad": _h_pad,
    # elementwise, reductions, products (plugins/math_ops)
    "add": _h_add, "__add__": _h_add, "__radd__": _h_radd,
    "mul": _h_mul, "multiply": _h_mul, "__mul__": _h_mul, "__rmul__": _h_mul,
    "sub": _h_sub, "subtract": _h_sub, "__sub__": _h_sub, "rsub": _h_rsub,
    "__rsub__": _h_rsub,
    "div": _h_div, "divide": _h_div, "true_divide": _h_div, "__truediv__": _h_div,
    "__div__": _h_div, "__rtruediv__": _h_rdiv, "__rdiv__": _h_rdiv,
    "pow": _h_pow, "__pow__": _h_pow, "__rpow__": _h_rpow,
    "neg": _unary("neg"), "__neg__": _unary("neg"), "negative": _unary("neg"),
    "abs": _unary("abs"), "sqrt": _unary("sqrt"), "rsqrt": _unary("rsqrt"),
    "exp": _unary("exp"), "log": _unary("log"), "sin": _unary("sin"), "cos": _unary("cos"),
    "clamp": _h_clamp, "clip": _h_clamp, "clamp_min": _h_clamp_min, "clamp_max": _h_clamp_max,
    "mean": _reduce("mean"), "sum": _reduce("sum"), "amax": _reduce("amax"),
    "amin": _reduce("amin"), "max": _minmax("max"), "min": _minmax("min"),
    "matmul": _h_matmul, "__matmul__": _h_matmul, "mm": _h_matmul, "bmm": _h_bmm,
    "einsum": _h_einsum, "_pack_padded_sequence": _h_packed,
    "pack_padded_sequence": _h_packed, "pack_sequence": _h_packed,
    "masked_fill": _h_masked_fill,
    "eq": _cmp("eq"), "ne": _cmp("ne"), "lt": _cmp("lt"), "le": _cmp("le"), "gt": _cmp("gt"),
    "ge": _cmp("ge"), "__eq__": _cmp("eq"), "__ne__": _cmp("ne"), "__lt__": _cmp("lt"),
    "__le__": _cmp("le"), "__gt__": _cmp("gt"), "__ge__": _cmp("ge"),
    "zero": _h_zero, "fill": _h_fill,
    "where": _h_where, "logical_not": _h_logical_not, "__invert__": _h_logical_not,
    "bitwise_not": _h_logical_not, "logical_and": _logical("mul"),
    "__and__": _logical("mul"), "bitwise_and": _logical("mul"),
    "logical_or": _logical("maximum"), "__or__": _logical("maximum"),
    "bitwise_or": _logical("maximum"),
    "zeros_like": _like_factory(0.0), "ones_like": _like_factory(1.0),
    "full_like": _h_full_like,
    # activations and functional layers (the layer of the same PyTorch name)
    "relu": _unary("relu"), "relu6": _unary("relu6"), "hardtanh": _h_hardtanh,
    "gelu": _h_gelu, "silu": _unary("silu"), "sigmoid": _unary("sigmoid"),
    "tanh": _unary("tanh"), "hardswish": _unary("hardswish"),
    "hardsigmoid": _unary("hardsigmoid"), "mish": _unary("mish"),
    "leaky_relu": _act("leaky_relu", ("negative_slope",)), "elu": _act("elu", ("alpha",)),
    "softplus": _act("softplus", ("beta", "threshold")),
    "softmax": _h_softmax("softmax"), "log_softmax": _h_softmax("log_softmax"),
    "adaptive_avg_pool2d": _h_adaptive_avg_pool2d, "avg_pool2d": _h_avg_pool2d,
    "avg_pool1d": _h_avg_pool("avg_pool1d"), "avg_pool3d": _h_avg_pool("avg_pool3d"),
    "adaptive_avg_pool1d": _h_adaptive_avg_pool("adaptive_avg_pool1d"),
    "adaptive_avg_pool3d": _h_adaptive_avg_pool("adaptive_avg_pool3d"),
    "max_pool1d": _h_max_pool("max_pool1d"), "max_pool2d": _h_max_pool("max_pool2d"),
    "max_pool3d": _h_max_pool("max_pool3d"),
    "max_pool1d_with_indices": _h_max_pool("max_pool1d", True),
    "max_pool2d_with_indices": _h_max_pool("max_pool2d", True),
    "max_pool3d_with_indices": _h_max_pool("max_pool3d", True),
    "adaptive_max_pool1d": _h_adaptive_max_pool("adaptive_max_pool1d"),
    "adaptive_max_pool2d": _h_adaptive_max_pool("adaptive_max_pool2d"),
    "adaptive_max_pool3d": _h_adaptive_max_pool("adaptive_max_pool3d"),
    "adaptive_max_pool1d_with_indices": _h_adaptive_max_pool("adaptive_max_pool1d", True),
    "adaptive_max_pool2d_with_indices": _h_adaptive_max_pool("adaptive_max_pool2d", True),
    "adaptive_max_pool3d_with_indices": _h_adaptive_max_pool("adaptive_max_pool3d", True),
    "max_unpool1d": _h_max_unpool("max_unpool1d"), "max_unpool2d": _h_max_unpool("max_unpool2d"),
    "max_unpool3d": _h_max_unpool("max_unpool3d"),
    "dropout": _h_dropout("dropout"),
    "dropout2d": _h_dropout("dropout2d"), "dropout1d": _h_dropout("dropout1d"),
    "dropout3d": _h_dropout("dropout3d"), "alpha_dropout": _h_dropout("alpha_dropout"),
    "feature_alpha_dropout": _h_dropout("feature_alpha_dropout"),
    "interpolate": _h_interpolate, "stochastic_depth": _h_stochastic_depth,
    "upsample": _h_interpolate, "layer_norm": _h_layer_norm, "linear": _h_linear,
    "index_select": _h_index_select, "embedding": _h_embedding,
    "maximum": _h_binary("maximum"),
    "minimum": _h_binary("minimum"), "erf": _unary("erf"), "sign": _unary("sign"),
    "var": _h_var("var"), "std": _h_var("std"), "norm": _h_norm, "normalize": _h_normalize,
    "pairwise_distance": _h_pairwise_distance, "cosine_similarity": _h_cosine_similarity,
    "glu": _act("glu", ("dim",)), "selu": _unary("selu"), "celu": _act("celu", ("alpha",)),
    "logsigmoid": _unary("logsigmoid"), "log_sigmoid": _unary("logsigmoid"),
    "softsign": _unary("softsign"), "tanhshrink": _unary("tanhshrink"),
    "threshold": _act("threshold", ("threshold", "value")),
    "softmin": _h_softmax("softmin"),
    "cumsum": _h_cumsum, "gather": _h_gather, "embedding_bag": _h_embedding_bag,
    "logsumexp": _h_logsumexp, "logaddexp": _h_logaddexp, "addmm": _h_addmm(False),
    "baddbmm": _h_addmm(True), "outer": _h_outer, "ger": _h_outer,
    "repeat_interleave": _h_repeat_interleave, "one_hot": _h_one_hot, "lerp": _h_lerp,
    "hypot": _h_hypot, "var_mean": _h_var_mean(False), "std_mean": _h_var_mean(True),
    "square": lambda h, x: h.op("mul", [x, x]),
    "reciprocal": lambda h, x: h.op("div", [x], other=1.0, reverse=True),
    "log1p": lambda h, x: h.op("log", [h.op("add", [x], other=1.0)]),
    "expm1": lambda h, x: h.op("sub", [h.op("exp", [x])], other=1.0),
    "frac": lambda h, x: h.op("sub", [x, h.op("trunc", [x])]),
    "argmax": _h_arg("argmax"), "argmin": _h_arg("argmin"),
    "floor": _h_rounding("floor"), "ceil": _h_rounding("ceil"),
    "round": _h_rounding("round"), "trunc": _h_rounding("trunc"), "fix": _h_rounding("trunc"),
    "tril": _h_tri("tril"), "triu": _h_tri("triu"), "eye": _h_eye,
    "pixel_shuffle": _h_pixel_shuffle("pixel_shuffle", "upscale_factor"),
    "pixel_unshuffle": _h_pixel_shuffle("pixel_unshuffle", "downscale_factor"),
    "group_norm": _h_group_norm, "instance_norm": _h_instance_norm,
    "batch_norm": _h_batch_norm,
    "cross_entropy": _h_loss("cross_entropy", ("ignore_index", "reduction",
                                               "label_smoothing")),
    "nll_loss": _h_loss("nll_loss", ("ignore_index", "reduction")),
    "mse_loss": _h_loss("mse_loss", ("reduction",)),
    "l1_loss": _h_loss("l1_loss", ("reduction",)),
    "smooth_l1_loss": _h_loss("smooth_l1_loss", ("reduction", "beta")),
    "huber_loss": _h_loss("huber_loss", ("reduction", "delta")),
    "binary_cross_entropy": _h_loss("bce_loss", ("reduction",)),
    "binary_cross_entropy_with_logits": _h_loss("bce_with_logits", ("reduction",)),
    "kl_div": _h_loss("kl_div", ("reduction", "log_target")),
    "topk": _h_topk, "index_add": _h_index_add, "scatter_add": _h_scatter_add,
    "scatter": _h_scatter,
    "conv1d": _h_conv(1), "conv2d": _h_conv(2), "conv3d": _h_conv(3),
    "conv_transpose1d": _h_conv(1, True), "conv_transpose2d": _h_conv(2, True),
    "conv_transpose3d": _h_conv(3, True), "_weight_norm": _h_weight_norm,
    "linalg_vector_norm": _h_vector_norm, "vector_norm": _h_vector_norm,
    "linalg_norm": _h_linalg_norm, "cdist": _h_cdist,
    "requires_grad_": _h_alias, "sort": _h_sort, "argsort": _h_argsort,
}

# functions that make uniform tensors from sizes alone (x.new_zeros reads
# only x's dtype): constants until used, then `full` nodes (materialize)
_CONST_FACTORIES = {"zeros", "ones", "full", "new_zeros", "new_ones", "new_full", "empty",
                    "new_empty"}
# functions of no tensor that make a tensor from sizes: replayed as nodes
# where forward uses them (_Tracer.lazy), so their sizes may follow the batch
_LAZY_FACTORIES = {"eye"}
# what reads a traced tensor's values into Python
_DATA_DEPENDENT = {"__bool__", "item", "tolist", "__int__", "__float__", "__index__",
                   "numpy", "__iter__", "__array__", "__complex__"}
_INPLACE_DUNDER = {"__iadd__": "add", "__isub__": "sub", "__imul__": "mul",
                   "__itruediv__": "div", "__idiv__": "div", "__ipow__": "pow"}
# ops whose size list may depend on the batch: -1 or from_input / from_dim
_SIZE_OPS = {"view", "reshape", "expand", "full", "repeat"}


# ---------------------------------------------------------------------------
# From the traces to a manifest
# ---------------------------------------------------------------------------

class _Exporter:
    def __init__(self, ctx):
        self.schema = _Schema(ctx)
        self.inline = set()      # ids of modules traced into their callers (_build_doc)
        self.plugins = {}
        self.v2 = False          # the manifest needs graph language v2

    def graph_has(self, key):
        info = self.schema.find("graph")
        return bool(info and info["fields"] and any(k == key for k, _ in info["fields"]))

    def kind_of(self, m):
        if isinstance(m, (torch.nn.ParameterList, torch.nn.ParameterDict)):
            return "params"
        if any(type(hk).__name__ == "WeightNorm"
               for hk in getattr(m, "_forward_pre_hooks", {}).values()):
            # nn.utils.weight_norm: traced through, its hook too, so that
            # weight_g and weight_v are the graph's own parameters (PyTorch's
            # state dict) and the weight is computed, as PyTorch does
            return "graph"
        cls = _forward_class(m, self.schema)
        name = cls.__name__
        if _namesake(cls):
            return "graph"
        if name in CONTAINERS:
            if name == "Sequential":
                return "seq" if len(m) else "leaf"    # an empty Sequential is an identity
            return "holder"
        info = self.schema.find(_layer_type(name))
        if name == "Transformer" and not (
                type(getattr(m, "encoder", None)) is torch.nn.TransformerEncoder and
                type(getattr(m, "decoder", None)) is torch.nn.TransformerDecoder):
            return "graph"   # a custom_encoder / custom_decoder: traced through forward
        if info is not None and (not list(m.children()) or info["container"]):
            return "leaf"
        if info is None and not list(m.children()) and (
                cls.__module__.startswith("torch.nn.") or name in LAYER_TYPES):
            return "missing"     # a PyTorch layer nnmod lacks: said as such, not traced into
        return "graph"

    def use(self, layer, report, what, where, module=False):
        info = self.schema.find(layer)
        if info is None:
            if module:
                report.add("module", f"{what}: nnmod has no layer '{layer}'", where)
            else:
                report.add("layer", f"'{layer}' (for {what})", where)
            return None
        self.plugins[layer] = info["version"]
        return info

    def typed_config(self, layer, info, cfg, report, what, where):
        fields = dict(info["fields"] or ()) if info else None
        out = {}
        for k, v in cfg.items():
            if fields is not None and k not in fields:
                report.add("layer", f"'{layer}' with config '{k}' (for {what})", where)
                continue
            try:
                cv = _config_value(k, fields.get(k) if fields else None, v, where)
            except _Unsup as e:
                report.add("construct", f"{what}: {e}", where)
                continue
            if cv is not None:
                out[k] = cv
        return out

    def leaf(self, m, where, report, extra=None):
        """A module nnmod has as one layer (with its children if the nnmod
        layer is a container, as multihead_attention holds out_proj, unless
        it makes them itself, as the transformer layers do); extra: config
        its calls imply (a causal mask)."""
        cls = _forward_class(m, self.schema).__name__
        if cls == "Sequential":            # an empty one
            layer = "identity"
        else:
            layer = _layer_type(cls)
            if self.schema.find(layer) is None:
                layer = _layer_type(type(m).__name__)   # said as the class the user wrote
        info = self.use(layer, report, type(m).__name__, where, module=True)
        node = {"type": layer}
        if info is None:
            return node
        over = CONFIG_OVERRIDES.get(cls, {})
        cfg = {}
        extra = extra or {}
        for key, ftype in info["fields"] or ():
            try:
                if key in extra:
                    value = extra[key]
                elif key in over:
                    value = over[key](m)
                elif hasattr(m, key):
                    value = getattr(m, key)
                else:
                    continue
                v = _config_value(key, ftype, value, where)
            except _Unsup as e:
                report.add("construct", f"{type(m).__name__}: {e}", where)
                continue
            except (AttributeError, IndexError, TypeError) as e:
                # a module shaped unlike PyTorch's (nn.Transformer with a
                # custom_encoder): said, not raised
                report.add("construct", f"{type(m).__name__}: config '{key}' cannot be read "
                           f"from the module ({type(e).__name__}: {e})", where)
                continue
            if v is not None:
                cfg[key] = v
        for key in extra:
            if key not in dict(info["fields"] or ()):
                report.add("layer", f"'{layer}' with config '{key}' (for {type(m).__name__})",
                           where)
        if cfg:
            node["config"] = cfg
        kids = list(m.named_children())
        if kids and not info.get("owns_children"):
            node["children"] = [dict(name=n, **self.leaf(c, f"{where}.{n}", report))
                                for n, c in kids]
        return node


# the largest constant (bytes of its values) written into the manifest
# (base64, 4/3 of it); larger ones go to the weights file as buffers
_CONST_MAX = 4 << 20


def _const_form(t):
    """(dtype word, little-endian bytes) of a tensor a graph constant can
    hold: f32 (any floating dtype, and bool as 0/1) or i64; None for other
    dtypes and above _CONST_MAX bytes."""
    if t.dtype == torch.int64:
        word, a = "i64", t.detach().cpu().numpy().astype("<i8")
    elif t.is_floating_point() or t.dtype == torch.bool:
        word, a = "f32", t.detach().cpu().float().numpy().astype("<f4")
    else:
        return None
    if a.nbytes > _CONST_MAX:
        return None
    return word, np.ascontiguousarray(a).tobytes()


def _const_entry(name, t):
    """A graph `constants` entry: "NAME: [D0, ...] DTYPE base64:DATA"."""
    form = _const_form(t)
    if form is None:
        return None
    import base64
    shape = ", ".join(str(int(d)) for d in t.shape)
    return f"{name}: [{shape}] {form[0]} base64:{base64.b64encode(form[1]).decode('ascii')}"


# Config keys a layer gained in a later minor, with their defaults: a key
# at its default is left out of the manifest, so an older plugin takes it
# ({layer: (minor, {key: default})}; None: the key absent).
_NEWER_KEYS = {
    "add": (1, {"other": None, "alpha": 1.0}),
    "mul": (1, {"other": None}),
    "embedding": (1, {"max_norm": None, "norm_type": 2.0, "scale_grad_by_freq": False}),
    "upsample": (1, {"antialias": False}),
    "max_pool1d": (1, {"return_indices": False}),
    "max_pool2d": (1, {"return_indices": False}),
    "max_pool3d": (1, {"return_indices": False}),
    **{c: (1, {"functional": False}) for c in (
        "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")},
}
# op layers whose minor 1 is a second output (max/min: indices) or two
# tensor inputs (pow of a negative base)
_MINOR1_OUTPUTS = {"max", "min", "max_pool1d", "max_pool2d", "max_pool3d"}
_MINOR1_TWO_INPUTS = {"pow"}


def _node_refs(entry):
    """(node name, [refs]) of a graph node string as the exporter writes
    them ("name: a, b:1" or "name = path(a, b:1)")."""
    if "=" in entry.split("(")[0]:
        name, rest = entry.split("=", 1)
        path, _, args = rest.partition("(")
        return name.strip(), path.strip(), [r.strip() for r in args.rstrip(")").split(",")
                                            if r.strip()]
    name, _, args = entry.partition(":")
    return name.strip(), name.strip(), [r.strip() for r in args.split(",") if r.strip()]


def _minimum_minors(doc, loaded):
    """The plugins of `doc` at the lowest minor of each loaded major that
    its modules need (docs/bring-your-model.md): graph 1.1 for v2 nodes,
    quoted names, own parameters and buffers or output names, 1.2 for
    constants and reads; the layers of _NEWER_KEYS for a key off its default
    (keys at their default are dropped from the config); max/min and max
    pooling 1.1 for their second output, pow for two tensors. Any other
    layer keeps the loaded minor: nnmod cannot tell which of its features
    came when. `loaded`: {type: "^M.m"}."""
    need = collections.defaultdict(int)
    known = set(_NEWER_KEYS) | _MINOR1_OUTPUTS | _MINOR1_TWO_INPUTS | {"graph"}

    def walk(node, uses):
        t = node.get("type")
        cfg = node.get("config") or {}
        if t in _NEWER_KEYS:
            minor, keys = _NEWER_KEYS[t]
            for k, default in keys.items():
                if k in cfg and (cfg[k] == default or (default is None and cfg[k] is None)):
                    del cfg[k]
            if any(k in cfg for k in keys):
                need[t] = max(need[t], minor)
            if "config" in node and not cfg:
                del node["config"]
        if t == "upsample" and "from_input" in cfg:
            need[t] = max(need[t], 2)
        n_out, n_in = uses.get(node.get("name"), (1, 1))
        if t in _MINOR1_OUTPUTS and n_out > 1:
            need[t] = max(need[t], 1)
        if t in _MINOR1_TWO_INPUTS and n_in > 1:
            need[t] = max(need[t], 1)
        kid_uses = {}
        if t == "graph":
            g = 0
            if cfg.get("constants") or cfg.get("reads"):
                g = 2
            elif cfg.get("parameters") or cfg.get("buffers") or cfg.get("output_names") or \
                    any("=" in e.split("(")[0] or "`" in e for e in cfg.get("nodes", ())):
                g = 1
            need[t] = max(need[t], g)
            parsed = [_node_refs(e) for e in cfg.get("nodes", ())]
            path_of = {name: path for name, path, _ in parsed}
            for name, path, refs in parsed:
                o, i = kid_uses.get(path, (1, 0))
                kid_uses[path] = (o, max(i, len(refs)))
            for r in [r for _, _, refs in parsed for r in refs] + list(cfg.get("outputs", ())):
                base, _, k = r.partition(":")
                if k.isdigit() and base in path_of:
                    o, i = kid_uses.get(path_of[base], (1, 0))
                    kid_uses[path_of[base]] = (max(o, int(k) + 1), i)
        for c in node.get("children", ()):
            walk(c, kid_uses)
    walk(doc["root"], {})
    out = {}
    for t, rng in loaded.items():
        if t in known and rng.startswith("^") and "." in rng:
            major = rng[1:].split(".")[0]
            out[t] = f"^{major}.{min(need[t], int(rng.split('.')[1]))}"
        else:
            out[t] = rng
    return out


def _ties(model, left_out, emitted=None):
    """Parameters registered under several names (weight tying: nanoGPT's
    `self.transformer.wte.weight = self.lm_head.weight`) as the manifest's
    `ties`: {later name: first name}, the first as PyTorch's
    named_parameters gives it (the name its gradient is listed under). Names
    in modules the export leaves out are skipped."""
    def kept(name):
        mod = name.rsplit(".", 1)[0] if "." in name else ""
        if emitted is not None and mod not in emitted:
            return False          # not in the tree (a module under two names, one called)
        return not any(mod == u or mod.startswith(u + ".") for u in left_out)
    first, ties = {}, {}
    for mn, m in model.named_modules(remove_duplicate=False):
        for n, p in m._parameters.items():
            if p is None:
                continue
            full = f"{mn}.{n}" if mn else n
            if not kept(full):
                continue
            if id(p) not in first:
                first[id(p)] = full
            elif first[id(p)] != full:
                ties[full] = first[id(p)]
    return ties


def _all_tensors(model):
    sd = dict(model.state_dict())
    for n, b in model.named_buffers():
        sd.setdefault(n, b)
    for n, p in model.named_parameters():
        sd.setdefault(n, p)
    return sd


class _Build:
    """Turns the traces into the manifest's module tree."""

    def __init__(self, ex, tracer, report, tracer2=None):
        self.ex = ex
        self.tr = tracer
        self.tr2 = tracer2
        self.report = report
        self.emitted = set()
        self.partial = set()    # emitted holders (module_list/dict) of only the children called
        self.consts = {}        # state-dict key -> a constant the graphs hold

    def module(self, m, path):
        kind = self.ex.kind_of(m)
        self.emitted.add(path)
        if kind in ("leaf", "missing"):
            return self.ex.leaf(m, path or "<root>", self.report, self.tr.leaf_cfg.get(path))
        if kind == "seq":
            self.ex.use("sequential", self.report, "nn.Sequential", path)
            kids = []
            for n, c in m.named_children():
                p = f"{path}.{n}" if path else n
                kids.append(dict(name=n, **self.module(c, p)))
            return {"type": "sequential", "children": kids}
        if kind == "holder":
            self.report.add("construct", f"calling a {type(m).__name__}", path)
            return {"type": "module_dict"}
        if kind == "params":
            return self.param_holder(m, path)
        frame = self.tr.defs.get(path)
        if frame is None:
            # registered under two names (locuslab's TCN: self.chomp1 and
            # self.net[1]): traced under the first
            frame = self.tr.defs.get(self.tr.paths.get(id(m)))
        if frame is None:
            self.report.add("construct", f"module '{path}' ({type(m).__name__}) is exported as a "
                            "graph but its forward never ran in the trace", path)
            return {"type": "graph"}
        return self.graph(m, path, frame)

    def param_holder(self, m, path):
        """nn.ParameterList / ParameterDict, whose tensors a forward reads
        (self.params[0], self.scales["a"]: graph `reads` "params.0"): a graph
        of no inputs and no nodes owning every one of them under PyTorch's
        names ("params.0", "scales.a"), so the state dict is PyTorch's."""
        self.ex.use("graph", self.report, type(m).__name__, path)
        self.emitted.add(path)
        entries = []
        for n, t in m.named_parameters(recurse=False):
            shape = ", ".join(str(int(d)) for d in t.shape)
            entries.append(f"{_quote(n)}: [{shape}]")
        if not entries:
            self.report.add("construct", f"an empty {type(m).__name__}", path)
            return {"type": "graph"}
        first = entries[0].rsplit(":", 1)[0]
        return {"type": "graph", "config": {"inputs": [], "nodes": [], "outputs": [first],
                                            "parameters": entries}}

    def holder(self, m, path, called_rel, prefix):
        """A child the graph does not call but calls into (a ModuleList of
        blocks): a module_list / module_dict holding what is called."""
        cls = _forward_class(m, self.ex.schema).__name__
        ctype = "module_list" if cls == "ModuleList" else "module_dict"
        self.ex.use(ctype, self.report, f"holding {type(m).__name__}", path)
        self.emitted.add(path)
        self.partial.add(path)
        kids = []
        for n, c in m.named_children():
            rel = f"{prefix}.{n}"
            p = f"{path}.{n}" if path else n
            if rel in called_rel:
                kids.append(dict(name=n, **self.module(c, p)))
            elif any(r.startswith(rel + ".") for r in called_rel):
                kids.append(dict(name=n, **self.holder(c, p, called_rel, rel)))
        return {"type": ctype, "children": kids}

    def prepare(self):
        """Before anything is written: sizes that follow the batch (both
        traces), then concatenations of a list input hoisted to the caller."""
        for path, f in self.tr.defs.items():
            if f.kind != "graph":
                continue
            f2 = self.tr2.defs.get(path) if self.tr2 is not None else None
            if f2 is not None:
                self.dynamic(f, f2)
        hoisted = {}
        for path, f in self.tr.defs.items():
            if f.kind == "graph" and len(f.inputs) > _MAX_CAT:
                h = self.hoist_child(f)
                if h is not None:
                    hoisted[path] = h
        if hoisted:
            for path, f in list(self.tr.defs.items()) + [("", self.tr.caller)]:
                if f.kind in ("graph", "caller"):
                    self.hoist_parent(f, hoisted)

    @staticmethod
    def hoist_child(f):
        """A graph with more inputs than a call can take (densenet's layers
        get the list of all earlier features) whose forward only concatenates
        them, in order: the graph takes the concatenation instead."""
        for n in f.nodes:
            if n.cat_all is None:
                continue
            refs, dim, chain = n.cat_all
            if not refs or refs[0] not in f.inputs:
                continue
            start = f.inputs.index(refs[0])
            if f.inputs[start:start + len(refs)] != refs:
                continue
            chain_ids = {c.uid for c in chain}
            others = [m for m in f.nodes if m.uid not in chain_ids]
            if any(r in refs for m in others for r in m.inputs) or \
                    any(r in refs for r in f.outputs):
                continue
            if any(r in refs for c in chain for r in c.inputs if not
                   any(r == k for k in refs)):
                continue
            name = n.name
            f.nodes = others
            for m in f.nodes:
                m.inputs = [name if r == n.name else r for r in m.inputs]
            f.inputs = f.inputs[:start] + [name] + f.inputs[start + len(refs):]
            f.taken.add(name)
            f.shapes[name] = None
            return start, len(refs), dim
        return None

    def hoist_parent(self, f, hoisted):
        new = []
        for n in f.nodes:
            if n.kind == "module":
                full = n.target if f.kind == "caller" or not f.path else f"{f.path}.{n.target}"
                h = hoisted.get(full)
                if h is not None:
                    start, count, dim = h
                    refs = n.inputs[start:start + count]
                    while len(refs) > 1:
                        part = refs[:_MAX_CAT]
                        name = f.fresh("concat")
                        c = _Node("op", name, "concat", part, {"dim": dim}, where=n.where,
                                  fn="torch.cat (of a list passed to a module)")
                        c.name = name
                        new.append(c)
                        refs = [name] + refs[_MAX_CAT:]
                    n.inputs = n.inputs[:start] + refs + n.inputs[start + count:]
            new.append(n)
        f.nodes = new

    def graph(self, m, path, frame):
        self.ex.use("graph", self.report, type(m).__name__, path)
        nodes, children, node_names = [], [], {}
        called_rel = []
        seen = collections.Counter()
        twins = {}
        for i, n in enumerate(frame.nodes):
            if n.kind == "module":
                called_rel.append(n.target)
        # the owners of the descendants' tensors it reads are in the tree too
        for ref, owner in self.tr.extra_reads.get(path, {}).items():
            frame.reads.setdefault(ref, owner)     # read by an ancestor through this graph
        emit_rel = called_rel + [o for o in frame.reads.values() if o not in called_rel]
        # node names: v1 ("PATH: ...", the node named after its module) when
        # the path reads bare and it is the first call; else v2 "NODE = PATH(...)"
        for i, n in enumerate(frame.nodes):
            if n.kind == "module":
                seen[n.target] += 1
                if seen[n.target] == 1 and all(_BARE.match(c) for c in n.target.split(".")):
                    n.name = n.target
                    node_names[i] = (n.target, False)
                elif seen[n.target] > 1 and not self.ex.graph_has("parameters") and \
                        self.ex.kind_of(m.get_submodule(n.target)) == "leaf" and \
                        not any(True for _ in m.get_submodule(n.target).parameters()) and \
                        not any(True for _ in m.get_submodule(n.target).buffers()):
                    # graph v1: a stateless module used twice gets a twin child
                    n.name = frame.fresh(n.target.replace(".", "_"))
                    node_names[i] = (n.name, False)
                    twins[i] = self.ex.leaf(m.get_submodule(n.target), f"{path}.{n.target}"
                                            if path else n.target, self.report)
                else:
                    n.name = frame.fresh(n.target.replace(".", "_") + "_call")
                    node_names[i] = (n.name, True)
                    self.ex.v2 = True
                    why = "calling one module more than once (weight sharing)" if \
                        seen[n.target] > 1 else f"a child named {n.target!r}"
                    if not self.ex.graph_has("parameters"):
                        self.report.add("construct", f"{why}: needs graph node syntax v2 "
                                        "(NODE = PATH(...)), which the loaded graph plugin "
                                        "lacks", path or "<root>")

        by_uid = {n.uid: i for i, n in enumerate(frame.nodes)}

        def fix(ref):
            if isinstance(ref, tuple):          # ("@", uid, k): output k of a module node
                base = node_names[by_uid[ref[1]]][0]
                return base if ref[2] == 0 else f"{base}:{ref[2]}"
            return ref

        # refs to module nodes were recorded as ("@", uid, k)
        for n in frame.nodes:
            n.inputs = [fix(r) for r in n.inputs]
        outs = [fix(r) for r in frame.outputs]
        for i, n in enumerate(frame.nodes):
            refs = ", ".join(n.inputs)
            if n.kind == "module":
                name, v2 = node_names[i]
                nodes.append(f"{name} = {_qpath(n.target)}({refs})" if v2 else
                             f"{name}: {refs}" if refs else f"{name}:")
                if i in twins:
                    children.append(dict(name=name, **twins[i]))
            else:
                nodes.append(f"{n.name}: {refs}" if refs else f"{n.name}:")
                if n.child is not None:
                    children.append(dict(name=n.name, **n.child))
                else:
                    info = self.ex.use(n.layer, self.report, n.fn, n.where)
                    child = {"name": n.name, "type": n.layer}
                    cfg = self.ex.typed_config(n.layer, info, n.cfg, self.report, n.fn, n.where)
                    if cfg:
                        child["config"] = cfg
                    children.append(child)
        if any(r == "?" for n in frame.nodes for r in n.inputs) or "?" in outs:
            nodes = []                           # reported already; nothing to write
        kids = []
        for cname, c in m.named_children():
            p = f"{path}.{cname}" if path else cname
            if cname in emit_rel:
                kids.append(dict(name=cname, **self.module(c, p)))
            elif any(r.startswith(cname + ".") for r in emit_rel):
                kids.append(dict(name=cname, **self.holder(c, p, emit_rel, cname)))
        cfg = {"inputs": frame.inputs, "nodes": nodes, "outputs": outs}
        if frame.reads:
            cfg["reads"] = list(frame.reads)
        for name, v in self.tr.extra_own.get(path, {}).items():
            frame.used_own.setdefault(name, v)   # read by an ancestor
        params, buffers, constants = [], [], []
        use_consts = self.ex.graph_has("constants")
        for name, t in frame.consts.items():
            entry = _const_entry(name, t) if use_consts else None
            if entry is not None:
                constants.append(entry)       # the values in the manifest
                continue
            key = f"{path}.{name}" if path else name
            self.consts[key] = t              # the values in the weights file
            shape = ", ".join(str(int(d)) for d in t.shape)
            buffers.append(f"{name}: [{shape}]" + (" i64" if t.dtype == torch.int64 else ""))
        non_persistent = getattr(m, "_non_persistent_buffers_set", ())
        for name, (is_buf, t) in frame.used_own.items():
            shape = ", ".join(str(int(d)) for d in t.shape)
            entry = _const_entry(name, t) if use_consts and is_buf and \
                name in non_persistent else None
            if entry is not None:
                constants.append(entry)
            elif is_buf:
                if t.dtype == torch.int64:
                    buffers.append(f"{name}: [{shape}] i64")
                elif t.is_floating_point():
                    buffers.append(f"{name}: [{shape}]")
                else:
                    self.report.add("construct", f"a buffer of dtype {t.dtype} ('{name}')",
                                    path or "<root>")
            else:
                params.append(f"{name}: [{shape}]")
        for key, val, what in (("parameters", params, "its own parameters"),
                               ("buffers", buffers, "its own buffers"),
                               ("constants", constants, "constant tensors"),
                               ("output_names", frame.output_names, "a dict output")):
            if val:
                if not self.ex.graph_has(key):
                    self.report.add("construct", f"a forward reading {what} "
                                    f"({', '.join(v.split(':')[0] for v in val)}): needs "
                                    f"graph config '{key}', which the loaded graph plugin "
                                    "lacks", path or "<root>")
                cfg[key] = val
        return {"type": "graph", "config": cfg, "children": kids + children}

    # -- dynamic sizes ------------------------------------------------------
    def dynamic(self, f1, f2):
        where = f1.path or "<root>"
        if [n.sig()[:3] + (len(n.inputs),) for n in f1.nodes] != \
                [n.sig()[:3] + (len(n.inputs),) for n in f2.nodes] or \
                len(f1.outputs) != len(f2.outputs):
            self.report.add("construct", "a forward whose ops change with the batch size "
                            "or a dynamic dim (pass dynamic=False to export for the "
                            "example's sizes only)",
                            where)
            return
        for (n1, c1), (n2, c2) in zip(f1.consts.items(), f2.consts.items()):
            if n1 != n2 or c1.shape != c2.shape or not torch.equal(c1, c2):
                self.report.add("construct", f"a tensor made in forward from no input whose "
                                f"values or size follow the batch or a dynamic dim ({n1}: "
                                f"{list(c1.shape)} vs {list(c2.shape)} in the second trace)",
                                where)
        if len(f1.consts) != len(f2.consts):
            self.report.add("construct", "tensors made in forward change with the batch "
                            "or a dynamic dim", where)
        order1 = list(f1.shapes.items())
        inserts = []
        for n1, n2 in zip(f1.nodes, f2.nodes):
            if n1.layer == "narrow" and n1.cfg != n2.cfg:
                # x.narrow(dim, start, length) with numbers that follow a
                # dynamic dim: the same as x[:, start:start + length]
                for n in (n1, n2):
                    d, a, ln = n.cfg["dim"], n.cfg["start"], n.cfg["length"]
                    n.layer = "getitem"
                    n.cfg = {"index": [":"] * d + [f"{a}:{a + ln}" if a + ln != 0 else f"{a}:"]}
                    if d < 0:
                        n.cfg = {"index": ["..."] + [n.cfg["index"][-1]] + [":"] * (-d - 1)}
            for k, v1 in list(n1.cfg.items()):
                v2 = n2.cfg.get(k)
                if v1 == v2:
                    continue
                fi = n1.cfg.get("from_input")
                if k in ("size", "shape") and fi is not None and isinstance(v1, list) and \
                        isinstance(v2, list) and len(v1) == len(v2) == len(fi) and \
                        all(a == b or f >= 0 for a, b, f in zip(v1, v2, fi)):
                    continue       # the entries that differ are read at run time already
                if k == "end" and n1.layer == "arange":
                    found = self.find_like(f1, f2, n1, order1, v1, v2)
                    if found is None:
                        self.report.add("construct", f"{n1.fn}: end {v1} follows a dynamic "
                                        "dim but is no input's dim", where)
                        continue
                    n1.inputs.append(found[0])
                    n1.cfg["from_input"] = [len(n1.inputs) - 1]
                    n1.cfg["from_dim"] = [found[1]]
                    continue
                if k == "index" and n1.layer == "getitem":
                    new = self.dynamic_slice(f1, f2, n1, order1, v1, v2)
                    if new is not None:
                        inserts.append((n1, new))
                        continue
                if k != n1.size_key or not isinstance(v1, list) or len(v1) != len(v2):
                    self.report.add("construct", f"{n1.fn}: argument '{k}' depends on a "
                                    f"dynamic dim ({v1} vs {v2} in the second trace)", where)
                    continue
                diff = [i for i, (a, b) in enumerate(zip(v1, v2)) if a != b]
                if n1.layer in ("view", "reshape") and len(diff) == 1 and -1 not in v1:
                    v1[diff[0]] = -1
                    continue
                if n1.layer in ("view", "reshape") and v1.count(-1) == 1:
                    # x.reshape(n * t, -1), t.reshape(b, heads, -1, h * w):
                    # the -1 is the same in both traces, so it is written, and
                    # a size that changes (the one no input's dim gives) is the -1
                    known = []
                    for f, v, n in ((f1, v1, n1), (f2, v2, n2)):
                        s_in = f.shapes.get(n.inputs[0])
                        rest = int(np.prod([a for a in v if a != -1]))
                        known.append(int(np.prod(s_in)) // rest if s_in and rest else None)
                    if known[0] is not None and known[0] == known[1]:
                        v1[v1.index(-1)] = known[0]
                        if len(diff) == 1:
                            v1[diff[0]] = -1
                            continue
                if n1.layer in ("repeat",):
                    self.report.add("construct", f"{n1.fn}: repeats depend on a dynamic dim",
                                    where)
                    continue
                fi = [-1] * len(v1)
                fd = [-1] * len(v1)
                ok = True
                if n1.layer in ("view", "reshape") and -1 not in v1:
                    # x.view(n, h * w): the one size no input's dim gives is -1
                    lost = [i for i in diff
                            if self.find_like(f1, f2, n1, order1, v1[i], v2[i]) is None]
                    if len(lost) == 1:
                        v1[lost[0]] = -1
                        diff = [i for i in diff if i != lost[0]]
                for i in diff:
                    found = self.find_like(f1, f2, n1, order1, v1[i], v2[i])
                    if found is None:
                        self.report.add("construct", f"{n1.fn}: size {v1[i]} follows the "
                                        "batch or a dynamic dim but is no input's dim", where)
                        ok = False
                        break
                    ref, dim = found
                    if ref not in n1.inputs:
                        n1.inputs.append(ref)
                    fi[i] = n1.inputs.index(ref)
                    fd[i] = dim
                if ok:
                    n1.cfg["from_input"] = fi
                    n1.cfg["from_dim"] = fd
        for n1, new in inserts:
            at = f1.nodes.index(n1)
            f1.nodes[at:at] = new

    def dynamic_slice(self, f1, f2, n1, order1, v1, v2):
        """A getitem whose numbers follow a dynamic dim, as slices relative to
        the run-time sizes. Per index entry, with [a, b) the slice in the
        input's dim of size L, n = b - a, e = L - b, in both traces:
          * a and e the same: the static slice "a:-e" (x[:, :x.size(1) - 1]
            is x[:, :-1]), and an int i with i - L the same is "-k";
          * a the same, n an input's dim T (a position table cut to the
            sequence, pos[:, s:s + t]): "a:", then arange(T, read at run
            time) and index_select;
          * e the same, n an input's dim T (the last T steps, h[:, -t:],
            h[:, p.size(1):] of h = cat([p, x], 1)): ":-e", flip,
            arange(T) and index_select, flip.
        Several entries may need nodes (mask[:, :, :t, :t]), one after the
        other. Returns
        the nodes to put before n1 (which becomes the last of them), or None
        (then reported)."""
        if len(v1) != len(v2):
            return None
        s1 = self.shape2(f1, f1, n1.inputs[0])
        s2 = self.shape2(f1, f2, n1.inputs[0])
        if s1 is None or s2 is None or len(s1) != len(s2):
            return None
        e1 = list(v1)
        dims = self.index_dims(v1, len(s1))
        if dims is None:
            return None
        todo = []
        for i, (a_s, b_s) in enumerate(zip(v1, v2)):
            if a_s == b_s:
                continue
            d_in, d_out = dims[i]
            if d_in is None:
                return None
            L1, L2 = int(s1[d_in]), int(s2[d_in])
            p1, p2 = self.parse_index(a_s), self.parse_index(b_s)
            if p1 is None or p2 is None or type(p1) is not type(p2):
                return None
            if isinstance(p1, int):
                k1 = p1 - L1 if p1 >= 0 else p1
                k2 = p2 - L2 if p2 >= 0 else p2
                if k1 != k2:
                    return None
                e1[i] = str(k1)
                continue
            a1, b1, st1 = p1.indices(L1)
            a2, b2, st2 = p2.indices(L2)
            if st1 != 1 or st2 != 1:
                return None
            b1, b2 = max(a1, b1), max(a2, b2)
            if a1 == a2 and L1 - b1 == L2 - b2:
                e = L1 - b1
                e1[i] = (f"{a1}:" if a1 else ":") + (f"-{e}" if e else "")
                continue
            todo.append((i, d_out, a1, a2, b1, b2, L1, L2))
        if not todo:
            n1.cfg["index"] = e1
            return []
        plans = []
        for i, d_out, a1, a2, b1, b2, L1, L2 in todo:
            found = self.find_like(f1, f2, n1, order1, b1 - a1, b2 - a2)
            if found is None:
                return None
            if a1 == a2:
                from_end = False
                e1[i] = f"{a1}:" if a1 else ":"
            elif L1 - b1 == L2 - b2:
                from_end = True
                e1[i] = f":-{L1 - b1}" if L1 - b1 else ":"
            else:
                return None
            plans.append((d_out, from_end, found, b1 - a1))
        new = []

        def node(layer, inputs, cfg):
            name = f1.fresh(layer)
            nd = _Node("op", name, layer, inputs, cfg, where=n1.where, fn=n1.fn)
            nd.name = name
            new.append(nd)
            return name

        src = n1.inputs[0]
        if any(e != ":" for e in e1):
            src = node("getitem", [src], {"index": e1})
        # one entry after the other (mask[:, :, :t, :t]: both dims of a
        # causal table cut to the length); n1 becomes the last node
        for k, (d_out, from_end, (ref, d), n) in enumerate(plans):
            last = k == len(plans) - 1
            if from_end:
                src = node("flip", [src], {"dims": [d_out]})
            ar = node("arange", [ref], {"end": n, "dtype": "int64", "from_input": [0],
                                        "from_dim": [d]})
            if last and not from_end:
                n1.layer, n1.inputs, n1.cfg = "index_select", [src, ar], {"dim": d_out}
                break
            src = node("index_select", [src, ar], {"dim": d_out})
            if from_end:
                if last:
                    n1.layer, n1.inputs, n1.cfg = "flip", [src], {"dims": [d_out]}
                    break
                src = node("flip", [src], {"dims": [d_out]})
        return new

    @staticmethod
    def parse_index(e):
        """An index entry string as an int or a slice (None for None, ...)."""
        if re.fullmatch(r"-?\d+", e):
            return int(e)
        m = re.fullmatch(r"(-?\d*):(-?\d*)(?::(-?\d*))?", e)
        if not m:
            return None
        a, b, st = (int(g) if g not in (None, "") else None for g in m.groups())
        return slice(a, b, st)

    @staticmethod
    def index_dims(entries, ndim):
        """Per index entry: (its dim in the input, in the output); None for
        an entry that is None or '...'."""
        real = [e for e in entries if e not in ("None", "...")]
        if entries.count("...") > 1:
            return None
        out, d_in, d_out = [], 0, 0
        for e in entries:
            if e == "None":
                out.append((None, None))
                d_out += 1
            elif e == "...":
                out.append((None, None))
                k = ndim - len(real)
                d_in += k
                d_out += k
            elif re.fullmatch(r"-?\d+", e):
                out.append((d_in, None))
                d_in += 1
            else:
                out.append((d_in, d_out))
                d_in += 1
                d_out += 1
        return out

    @staticmethod
    def shape2(f1, f2, ref):
        """The shape in the second trace of what ref names in the first."""
        if isinstance(ref, tuple):
            uids = {a.uid: b.uid for a, b in zip(f1.nodes, f2.nodes)}
            ref = ("@", uids.get(ref[1]), ref[2])
        if ref in f2.shapes:
            return f2.shapes[ref]
        own = f2.used_own.get(ref)            # a parameter or buffer of the graph
        return tuple(own[1].shape) if own is not None else None

    @staticmethod
    def find_like(f1, f2, node, order1, a, b):
        """An input's dim that is a in the first trace and b in the second:
        the node's inputs first, then the graph's, then any tensor made
        before the node (never its own output or a later one: a cycle)."""
        out = node.name if node.kind == "op" else ("@", node.uid, 0)
        refs = [r for r, _ in order1]
        before = refs[:refs.index(out)] if out in refs else refs
        cands = list(node.inputs) + list(f1.inputs) + list(reversed(before))
        uids = {a.uid: b.uid for a, b in zip(f1.nodes, f2.nodes)}
        for ref in cands:
            ref2 = ("@", uids.get(ref[1]), ref[2]) if isinstance(ref, tuple) else ref
            s1, s2 = f1.shapes.get(ref), f2.shapes.get(ref2)
            if s1 is None or s2 is None or len(s1) != len(s2):
                continue
            for d in range(len(s1)):
                if s1[d] == a and s2[d] == b:
                    return ref, d
        return None


# ---------------------------------------------------------------------------
# Running the trace
# ---------------------------------------------------------------------------

@contextlib.contextmanager
def _patched_call(tracer):
    orig = torch.nn.Module.__call__

    def call(mod, *args, **kwargs):
        return tracer.module_call(orig, mod, args, kwargs)

    # torch 1.13 skips __torch_function__ (modes included) for x[i], x[a:b]
    # and x[None] (an index that is not a tuple); x[(i,)] is the same
    # indexing and is dispatched, so the trace sees every getitem
    orig_getitem = torch.Tensor.__getitem__
    had_getitem = "__getitem__" in torch.Tensor.__dict__

    def getitem(self, idx):
        idx = idx if isinstance(idx, tuple) else (idx,)
        if any(isinstance(i, torch.Tensor) for i in idx):
            # nor does it dispatch an index holding a tensor (x[index],
            # table[relative_position_index]): the tracer is called here
            return tracer.__torch_function__(orig_getitem, (torch.Tensor,), (self, idx), {})
        return orig_getitem(self, idx)

    getitem.__name__ = "__getitem__"
    getitem.__qualname__ = "Tensor.__getitem__"

    # `with torch.no_grad():` inside a forward: the tensors it makes are
    # detached where used after it (the trace itself runs without grad)
    ng = torch.no_grad
    orig_enter, orig_exit = ng.__enter__, ng.__exit__

    def enter(self):
        r = orig_enter(self)
        self._nnmod_region = tracer.grad_region_enter()
        return r

    def exit_(self, *exc):
        region = self.__dict__.pop("_nnmod_region", None)
        if region is not None:
            tracer.grad_region_exit(region)
        return orig_exit(self, *exc)

    # custom torch.autograd.Function subclasses (Function.apply)
    fn_cls = torch.autograd.Function
    had_apply = "apply" in fn_cls.__dict__
    base_apply = torch._C._FunctionBase.__dict__.get("apply")

    def apply(cls, *args, **kwargs):
        real = base_apply.__get__(None, cls)
        if tracer.suspended or tracer.internal or not tracer.stack:
            return real(*args, **kwargs)
        return tracer.custom_function(cls, real, args, kwargs)

    unpatch = _patch_python(tracer)
    torch.nn.Module.__call__ = call
    torch.Tensor.__getitem__ = getitem
    ng.__enter__, ng.__exit__ = enter, exit_
    if base_apply is not None and not had_apply:
        fn_cls.apply = classmethod(apply)
    try:
        yield
    finally:
        torch.nn.Module.__call__ = orig
        if had_getitem:
            torch.Tensor.__getitem__ = orig_getitem
        else:
            del torch.Tensor.__getitem__
        ng.__enter__, ng.__exit__ = orig_enter, orig_exit
        if base_apply is not None and not had_apply:
            del fn_cls.apply
        unpatch()


def _hook_stochastic_depth(tracer, real):
    """torchvision.ops.stochastic_depth is Python, not a torch function, and
    returns its input at once when training is false (self.training while
    traced): the trace would not see it. It is recorded as a function."""
    def traced(input, p, mode, training=True):
        # the eval value as a new tensor (the node's own output)
        return real(input, p, mode, False).view_as(input)

    traced.__name__ = "stochastic_depth"
    traced.__qualname__ = "stochastic_depth"
    traced.__module__ = "torchvision.ops"

    def hook(input, p, mode, training=True):
        if tracer.suspended or tracer.internal or not tracer.stack or \
                not isinstance(input, torch.Tensor):
            return real(input, p, mode, bool(training))
        return tracer.__torch_function__(traced, (torch.Tensor,), (input, p, mode, training),
                                         {})
    return hook


_PACKED = ("packed sequences (torch.nn.utils.rnn.pack_padded_sequence, pack_sequence, "
           "pad_packed_sequence): nnmod's recurrent layers take the padded batch (mask "
           "the padding, or pick each sequence's last output by its length)")


def _hook_packed(tracer, real):
    """pack_padded_sequence and friends: reported once each, as what they
    are (not as the sort, scatter and .cpu() they run inside); what they
    return is unknown to the graph ("?"), so nothing downstream is taken
    for a constant."""
    def hook(*args, **kwargs):
        if tracer.suspended or tracer.internal or not tracer.stack:
            return real(*args, **kwargs)
        frame = tracer.stack[-1]
        tracer.report.add("construct", _PACKED, tracer.where())
        tracer.suspended += 1
        try:
            out = real(*args, **kwargs)
        finally:
            tracer.suspended -= 1
        for t in _flat(out):
            frame.bind(t, "?")
        return out
    return hook


# Python functions of other modules the trace must see, though they are not
# torch functions: (module, name, hook factory (tracer, the real function)).
_PY_HOOKS = [
    ("torchvision.ops.stochastic_depth", "stochastic_depth", _hook_stochastic_depth),
    ("torch.nn.utils.rnn", "pack_padded_sequence", _hook_packed),
    ("torch.nn.utils.rnn", "pack_sequence", _hook_packed),
    ("torch.nn.utils.rnn", "pad_packed_sequence", _hook_packed),
]


def _patch_python(tracer):
    """While tracing, each function of _PY_HOOKS (where its module is
    imported) runs a trampoline to its hook: the function object's code is
    swapped, so names imported with `from torchvision.ops import
    stochastic_depth` are caught too. Returns the undo."""
    undo = []
    for modname, fname, factory in _PY_HOOKS:
        mod = sys.modules.get(modname)
        fn = getattr(mod, fname, None) if mod is not None else None
        if not isinstance(fn, types.FunctionType) or fn.__closure__:
            continue
        code = fn.__code__
        real = types.FunctionType(code, fn.__globals__, fname, fn.__defaults__)
        real.__kwdefaults__ = fn.__kwdefaults__
        gname = f"_nnmod_export_hook_{fname}"
        ns = {}
        exec(f"def {fname}(*args, **kwargs):\n    return {gname}(*args, **kwargs)\n", ns)
        fn.__globals__[gname] = factory(tracer, real)
        fn.__code__ = ns[fname].__code__
        undo.append((fn, code, gname))

    def restore():
        for fn, code, gname in reversed(undo):
            fn.__code__ = code
            fn.__globals__.pop(gname, None)
    return restore


def _run_trace(ex, model, xs, report):
    tr = _Tracer(ex, model, report)
    caller = _Frame(None, "", "caller")
    for i, x in enumerate(xs):
        name = f"x{i}" if len(xs) > 1 else "x"
        caller.inputs.append(name)
        caller.bind(x, name)
    tr.stack.append(caller)
    graphs = [m for m in model.modules() if ex.kind_of(m) == "graph"]
    branches = collections.OrderedDict()     # paths whose forward branched on self.training
    for m in graphs:
        m.training = _TraceTraining(branches, tr.paths.get(id(m)))
    try:
        with torch.no_grad(), _patched_call(tr), tr:
            out = _call(model, xs)
    finally:
        for m in graphs:
            m.training = False
    if branches:
        paths = list(branches)
        shown = ", ".join(f"'{p}'" for p in paths[:6]) + (
            f" and {len(paths) - 6} more" if len(paths) > 6 else "")
        report.notes.append(
            f"Python control flow on self.training (`if self.training:`) at {shown}: the "
            "eval branch is what was exported, and nnmod runs it in train mode too (a "
            "train-only branch, such as sampling with torch.randn_like or an auxiliary "
            "output, is not in the manifest)")
    tr.stack.pop()
    tr.caller = caller
    return tr, out


def _dynamic_spec(xs, dynamic, dynamic_dims):
    """{input index: sorted dims} that may change size at run time."""
    if not dynamic:
        return {}
    if dynamic_dims is None:
        return {i: [0] for i, x in enumerate(xs) if x.dim() > 0}
    if isinstance(dynamic_dims, dict):
        items = dynamic_dims.items()
    elif isinstance(dynamic_dims, (tuple, list)):
        items = [(i, dynamic_dims) for i in range(len(xs))]
    else:
        raise TypeError("dynamic_dims: a dict {input index: dim or dims} or a list of dims "
                        "(of every input)")
    spec = {}
    for i, dims in items:
        if not isinstance(i, int) or not 0 <= i < len(xs):
            raise ValueError(f"dynamic_dims: no input {i!r} (the model takes {len(xs)})")
        dims = [dims] if isinstance(dims, int) else list(dims)
        n = xs[i].dim()
        for d in dims:
            if not isinstance(d, int) or not -n <= d < n:
                raise ValueError(f"dynamic_dims: input {i} has no dim {d!r} (it has {n})")
        spec[i] = sorted({d % n for d in dims})
    return {i: d for i, d in spec.items() if d}


def _bag_offsets(tr, xs):
    """{input index of offsets: (input index of the indices, include_last_offset)}
    for the EmbeddingBag calls whose offsets and indices are model inputs:
    the second trace gives them offsets that fit the new sizes (cut or
    repeated offsets are not offsets; PyTorch 1.13's max mode corrupts its
    heap when the last offset is not the input's length)."""
    ids = {id(x): i for i, x in enumerate(xs)}
    out = {}
    for off, inp, last in tr.bag_offsets:
        if id(off) in ids and id(inp) in ids and off.dim() == 1 and inp.dim() == 1:
            out[ids[id(off)]] = (ids[id(inp)], last)
    return out


def _vary(xs, spec, offsets=None, stride=1, avoid=(), uniform=False, odd=True):
    """The inputs of the second trace: every dynamic dim at another size.
    Dims of equal size in the example are taken to be one size (the batch
    of the tokens and of their mask); each such size gets a new value that
    no other has (so a size read from the second trace names its dim), and
    each changes by an amount no other does (so a difference of two sizes,
    y[:, -x.size(1):], changes too and is not taken for a constant): from
    the largest size down, a size above 2 shrinks by 1, 2, 3, ... (a
    position table cut to the sequence stays long enough), a size of 1 or 2
    grows by the first amount still free. With stride 2 (the check's third
    sizes) the amounts are doubled and the sizes in `avoid` (the second
    trace's) are not taken either. uniform: every size above 2 by one same
    amount (T and T + 1 stay one apart), sizes of 1 and 2 grow. Image sizes
    (dims 2+ of 4-d and 5-d inputs, at least 8) grow instead by one less
    than a multiple of a unit (the largest power of two up to half the size,
    at most 32), so that feature maps at a stride of up to 32 change with
    them, and so does the size's parity; with odd=False by a multiple of
    the unit (a model that needs image sizes divisible by its total stride,
    as a U-Net without padding to the skip's size)."""
    olds = sorted({int(xs[i].shape[d]) for i, dims in spec.items() for d in dims})
    taken = set(olds) | set(avoid)
    used = set()
    new = {}
    if uniform:
        # one amount for every size above 2 (T and T + 1 stay one apart)
        bigs = [v for v in olds if v > 2]
        for d in (-1, -2, -3, -4, 1, 2, 3, 4):
            cand = {v: v + stride * d for v in bigs}
            ws = set(cand.values())
            if all(w >= 1 for w in ws) and not ws & taken and len(ws) == len(cand):
                new.update(cand)
                taken |= ws
                break
    # image sizes (dims 2+ of 4-d and 5-d inputs) grow by multiples of a
    # stride-like unit (up to 32): a 48x64 image moved by 1 or 2 pixels
    # gives the same feature maps at stride 8, so a size that follows the
    # image there (a segmentation head's F.interpolate) would look constant
    spatial = {int(xs[i].shape[d]) for i, dims in spec.items() for d in dims
               if xs[i].dim() >= 4 and d >= 2}
    for v in sorted(olds, reverse=True):
        if v in new:
            continue
        if not uniform and v in spatial and v >= 8:
            unit = min(32, 1 << (int(v // 2).bit_length() - 1))
            for j in range(1, 4 * len(olds) + 8):
                # odd: an odd size's parity changes too (a U-Net's pad)
                k = stride * unit * j - (1 if odd else 0)
                if v + k not in taken and k not in used:
                    new[v] = v + k
                    taken.add(v + k)
                    used.add(k)
                    break
            if v in new:
                continue
        if uniform:
            steps = [stride * k for k in range(1, 2 * len(olds) + 4)] + \
                [-stride * k for k in range(1, v)]
        else:
            steps = [-stride * j for j in range(1, v) if v - stride * j >= 1] if v > 2 else []
            steps += [stride * j for j in range(1, 2 * len(olds) + 4)]
        for k in steps:
            w = v + k
            if w >= 1 and w not in taken and (uniform or k not in used):
                new[v] = w
                taken.add(w)
                used.add(k)
                break
    out = []
    for i, x in enumerate(xs):
        for d in spec.get(i, ()):
            v, w = int(x.shape[d]), new[int(x.shape[d])]
            x = x.index_select(d, torch.arange(w) % v)   # cut, or repeated from the start
        out.append(x)
    # offsets: bags spread evenly over the new indices (with
    # include_last_offset one more entry, the count). Calls that had as many
    # bags keep having as many (their outputs are added together): the new
    # count is that of the first such offsets input without the extra entry,
    # else one less than the varied length of one with it.
    bag_count = {}
    for i, (j, last) in sorted((offsets or {}).items(), key=lambda e: e[1][1]):
        b = int(xs[i].shape[0]) - (1 if last else 0)
        bag_count.setdefault(b, max(1, int(out[i].shape[0]) - (1 if last else 0)))
    for i, (j, last) in (offsets or {}).items():
        n = int(out[j].shape[0])
        bags = bag_count[int(xs[i].shape[0]) - (1 if last else 0)]
        off = [k * n // bags for k in range(bags)] + ([n] if last else [])
        out[i] = torch.tensor(off, dtype=xs[i].dtype)
    return out


def _model_name(model):
    return type(model).__name__


def _build_doc(model, xs, ctx, dynamic, report, dynamic_dims=None):
    """Traces model and returns (manifest doc, exporter, xs2)."""
    ex = _Exporter(ctx)
    spec = _dynamic_spec(xs, dynamic, dynamic_dims)
    was = model.training
    model.eval()
    try:
        # a module whose forward calls modules that are not below it (a
        # lambda calling a sibling passed in) is traced into its caller:
        # tried again with it inlined, until no such call is left
        for _ in range(8):
            first = Report(report.model_name)
            tr, _ = _run_trace(ex, model, xs, first)
            new = set()
            for p in tr.escapes:
                m = model.get_submodule(p)
                if id(m) not in ex.inline and not any(
                        True for _ in m.parameters(recurse=False)) and not any(
                        True for _ in m.buffers(recurse=False)):
                    new.add(id(m))
            if not new:
                break
            ex.inline |= new
        report.problems.update(first.problems)
        report.notes.extend(first.notes)
        tr2, xs2 = None, None
        if spec:
            offs = _bag_offsets(tr, xs)
            err = None
            # each dynamic size moved by its own amount; where the model
            # refuses that (sizes bound to each other: T and T + 1), all by
            # the same amount, as sessions before did
            for uniform, odd in ((False, True), (True, True), (False, False)):
                xs2 = _as_inputs(xs).like(_vary(xs, spec, offs, uniform=uniform, odd=odd))
                try:
                    tr2, _ = _run_trace(ex, model, xs2, Report(_model_name(model)))
                except Exception as e:  # noqa: BLE001 - the model refuses other sizes
                    err = err or e
                    tr2 = None
                    continue
                # the check's third sizes: what two traces fitted (x[:, :n // 2]
                # is x[:, :-4] at 8 and 7) is checked at a third point
                ex.xs3 = _as_inputs(xs).like(_vary(
                    xs, spec, offs, stride=2, uniform=uniform, odd=odd,
                    avoid={int(x.shape[d]) for i, x in enumerate(xs2) for d in spec.get(i, ())}))
                break
            if tr2 is None:
                report.notes.append(f"static sizes: the model fails at "
                                    f"{[list(x.shape) for x in xs2]} (dynamic dims "
                                    f"{spec}; {type(err).__name__}: {err})")
                xs2 = None
    finally:
        model.train(was)
    b = _Build(ex, tr, report, tr2)
    b.prepare()
    root = b.module(model, "")
    ex.consts = b.consts
    unused = [n for n, _ in model.named_modules() if n and n not in b.emitted
              and not any(n.startswith(u + ".") for u in b.emitted if u and u not in b.partial)
              and not any(u.startswith(n + ".") for u in b.emitted)]
    meta = {"exported_from": f"torch {torch.__version__}", "torch_class": type(model).__name__}
    top = [u for u in unused if not any(u.startswith(v + ".") for v in unused)]
    if top:
        meta["not_exported"] = ", ".join(top)
    if b.consts:
        meta["constants"] = ", ".join(b.consts)
    doc = {"format": "nnmod.manifest", "version": 1, "plugins": dict(sorted(ex.plugins.items())),
           "root": root, "metadata": meta}
    doc["plugins"] = _minimum_minors(doc, doc["plugins"])
    ties = _ties(model, top, b.emitted)
    if ties:
        doc["ties"] = ties
    return doc, ex, xs2


class _Inputs(list):
    """The example inputs as a flat list of tensors (the graph's inputs, in
    order) and how the model is called with them: `tree` rebuilds nested
    arguments, a char-RNN's forward(x, (h, c)) from [x, h, c]."""

    def __init__(self, xs, tree=None):
        super().__init__(xs)
        self.tree = tree

    def like(self, xs):
        return _Inputs(xs, self.tree) if xs is not None else None

    def args(self):
        if self.tree is None:
            return tuple(self)
        it = iter(self)

        def build(t):
            if t is None:
                return next(it)
            return type(t[0])(build(k) for k in t[1])
        return tuple(build(t) for t in self.tree)


def _as_inputs(example_input):
    """example_input (a tensor, or a tuple of tensors and of tuples or lists
    of tensors: forward(x, (h, c))) as _Inputs."""
    xs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    if isinstance(xs, _Inputs):
        return xs
    flat, tree, nested = [], [], False

    def walk(v):
        nonlocal nested
        if isinstance(v, (tuple, list)) and not hasattr(v, "_fields"):
            nested = True
            return (type(v)(), [walk(k) for k in v])
        flat.append(v if isinstance(v, torch.Tensor) else torch.as_tensor(v))
        return None
    for x in xs:
        tree.append(walk(x))
    return _Inputs(flat, tree if nested else None)


def _call(model, xs):
    """model(*xs) with nested arguments rebuilt."""
    return model(*xs.args()) if isinstance(xs, _Inputs) else model(*xs)


def _validate(doc, ctx, report, tmpdir):
    """Builds the manifest (no weights) in the runtime: the keys and shapes
    of nnmod's tree, or a runtime refusal in the report."""
    tmp = os.path.join(tmpdir, "noweights.json")
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    try:
        probe = from_manifest(tmp, weights={}, ctx=ctx, strict=False)
    except Error as e:
        report.add("runtime", str(e).replace("\n", " "), "<manifest>")
        return None
    sd = probe.state_dict()
    shapes = {k: tuple(t.shape) for k, t in sd.items()}
    del sd, probe
    return shapes


def export(model, path, example_input, weights=None, ctx=None, check=True, rtol=1e-4,
           atol=1e-5, dynamic=True, dynamic_dims=None):
    """Writes `model` (a torch.nn.Module) as an nnmod manifest at `path`
    (JSON: the path must end in .json) and its weights as safetensors
    (`weights`, default: path with .safetensors), the manifest naming them
    with their sha256.

    example_input: a tensor or a tuple of tensors. With dynamic (default),
    sizes that follow dim 0 of the inputs (the batch) are not baked in.
    dynamic_dims names the dims that may change instead: {input index: dim
    or dims} ({0: [0, 1]}: the batch and sequence of tokens [N, T]), or a
    list of dims of every input ([0, 1] for tokens and their padding mask);
    dims of equal size in the example are one size (give distinct dynamic
    dims distinct sizes). The model is traced a second time with those dims
    at other sizes; a size, slice end or arange end that changes with them
    is read from the input's dim at run time. With check, the exported
    model is loaded back and run on the example (and on the second trace's
    inputs) in eval mode; outputs beyond rtol/atol fail with
    nnmod.Error, naming the first module whose output differs. Returns
    (manifest path, weights path). Whatever nnmod lacks raises ONE
    nnmod.UnsupportedError listing every missing layer, function and
    construct with counts and module paths; nothing is written then.
    Modules that forward never calls are left out (their weights too) and
    listed in the manifest's metadata `not_exported`.
    """
    if not str(path).endswith(".json"):
        raise ValueError("nnmod.torch.export writes JSON manifests: give a path ending in .json")
    path = str(path)
    ctx = ctx or default_context()
    weights = weights or (os.path.splitext(path)[0] + ".safetensors")
    xs = _as_inputs(example_input)
    report = Report(_model_name(model))
    doc, ex, xs2 = _build_doc(model, xs, ctx, dynamic, report, dynamic_dims)
    if not report.ok:
        raise UnsupportedError(str(report))
    tmpdir = tempfile.mkdtemp(prefix="nnmod-export-")
    try:
        shapes = _validate(doc, ctx, report, tmpdir)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    if shapes is None:
        raise UnsupportedError(str(report))
    sd = _all_tensors(model)
    sd.update(ex.consts)      # tensors forward made from no input (metadata "constants")
    tensors = {}
    for k in shapes:
        if k not in sd:
            raise UnsupportedError(f"nnmod's tree has '{k}', the PyTorch model has not "
                                   "(a layer whose parameters differ from PyTorch's)")
        v = sd[k].detach().cpu()
        if v.is_floating_point():
            v = v.float()
        a = np.array(v.numpy(), order="C", copy=True)  # 0-d stays 0-d
        if tuple(a.shape) != tuple(shapes[k]):
            raise UnsupportedError(f"'{k}': PyTorch {list(a.shape)}, nnmod {list(shapes[k])} "
                                   "(a config the export mapped wrongly)")
        tensors[k] = a
    meta = doc["metadata"]
    # Written under temporary names beside the targets and renamed only
    # once the check passed: a failed export leaves no file behind (and an
    # earlier export at those paths untouched).
    final_doc = None
    tmp_w = _tmp_beside(weights, ".safetensors")
    tmp_m = _tmp_beside(path, ".json")
    tmp_final = None
    try:
        save_safetensors(tensors, tmp_w, metadata={"exported_from": meta["exported_from"]},
                         ctx=ctx)
        with open(tmp_w, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        mdir = os.path.dirname(os.path.abspath(path))

        def with_weights(wpath):
            d = dict(doc)
            d["weights"] = {"path": os.path.relpath(os.path.abspath(wpath), mdir),
                            "sha256": digest}
            return {k: d[k] for k in ("format", "version", "plugins", "root", "weights",
                                      "metadata", "ties") if k in d}

        with open(tmp_m, "w") as f:
            json.dump(with_weights(tmp_w), f, indent=1)
            f.write("\n")
        if check:
            _check(model, tmp_m, xs, ctx, rtol, atol)
            if xs2 is not None:
                _check(model, tmp_m, xs2, ctx, rtol, atol)
                xs3 = getattr(ex, "xs3", None)
                if xs3 is not None and _runs(model, xs3):
                    _check(model, tmp_m, xs3, ctx, rtol, atol,
                           what=" (a third size, not traced: a size the export derived from "
                                "the two traced ones is wrong here; export with dynamic=False "
                                "or keep that size out of forward)")
        final_doc = with_weights(weights)
        tmp_final = _tmp_beside(path, ".json")
        with open(tmp_final, "w") as f:
            json.dump(final_doc, f, indent=1)
            f.write("\n")
        os.replace(tmp_w, weights)
        os.replace(tmp_final, path)
    finally:
        for t in (tmp_w, tmp_m, tmp_final):
            if t is not None and os.path.exists(t):
                os.unlink(t)
    return path, weights


def _tmp_beside(target, suffix):
    """A free name in target's directory for export to write first (then
    renamed over target): a dot file with a random part, so it is made with
    the permissions any new file gets."""
    d = os.path.dirname(os.path.abspath(target))
    while True:
        name = os.path.join(d, f".{os.path.basename(target)}.{os.urandom(6).hex()}.tmp{suffix}")
        if not os.path.exists(name):
            return name


def _runs(model, xs):
    """Whether PyTorch runs model at these inputs (a model may refuse sizes
    other than its example's)."""
    was = model.training
    model.eval()
    try:
        with _reference_mode(model):
            _call(model, xs)
        return True
    except Exception:  # noqa: BLE001 - any refusal: the size is not checked
        return False
    finally:
        model.train(was)


def check(model, example_input, ctx=None, dynamic=True, verbose=True, compare=True,
          rtol=1e-4, atol=1e-5, dynamic_dims=None):
    """What export would say, without writing any file the caller sees:
    returns a Report (`ok`, `problems`; str() is the full list of what nnmod
    lacks, or a line saying the model exports) and prints it when verbose.
    With compare, a model that exports is also run against PyTorch and a
    mismatch lands in the report."""
    ctx = ctx or default_context()
    xs = _as_inputs(example_input)
    report = Report(_model_name(model))
    doc, ex, xs2 = _build_doc(model, xs, ctx, dynamic, report, dynamic_dims)
    if report.ok:
        tmpdir = tempfile.mkdtemp(prefix="nnmod-check-")
        try:
            if _validate(doc, ctx, report, tmpdir) is not None and compare:
                try:
                    export(model, os.path.join(tmpdir, "m.json"), xs, ctx=ctx,
                           check=True, rtol=rtol, atol=atol, dynamic=dynamic,
                           dynamic_dims=dynamic_dims)
                except UnsupportedError as e:
                    report.add("runtime", str(e), "<export>")
                except Error as e:
                    report.add("runtime", f"outputs differ: {e}", "<check>")
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
    if verbose:
        print(report)
    return report


def _outputs_list(out):
    if isinstance(out, dict):
        return list(out.values())
    if isinstance(out, (tuple, list)):
        return list(out)
    return [out]


def _reference_mode(model):
    """How PyTorch's reference outputs are computed: without gradients,
    unless the model has an nn.TransformerEncoder that would then take 1.13's
    nested-tensor fast path, which returns 0 at padded positions where the
    math path (and nnmod) return the computed values."""
    if any(isinstance(m, torch.nn.TransformerEncoder) and
           getattr(m, "enable_nested_tensor", False) for m in model.modules()):
        return torch.enable_grad()
    return torch.no_grad()


def _check(model, path, xs, ctx, rtol, atol, what=""):
    was = model.training
    model.eval()
    try:
        with _reference_mode(model):
            want = _call(model, xs)
    finally:
        model.train(was)
    m = from_manifest(path, ctx=ctx).eval()
    from ._autograd import no_grad
    from ._tensor import tensor
    want = [w for w in _flat(want)]
    if len(want) > 1 and m.layer_type != "graph":
        # the model is one layer of several outputs (nn.LSTM: output, h_n,
        # c_n): asked for all of them, as a graph node would
        m.n_outputs = len(want)
    try:
        with no_grad():
            got = m(*[tensor(x.detach().cpu().numpy(), ctx=ctx) for x in xs])
    except Error as e:
        if not what:
            raise
        raise Error(f"export check: nnmod fails at shapes {[list(x.shape) for x in xs]}{what}: "
                    f"{e}") from e
    got = _outputs_list(got)
    if len(want) != len(got):
        raise Error(f"export check: PyTorch returns {len(want)} outputs, nnmod {len(got)}")
    for i, (w, g) in enumerate(zip(want, got)):
        w = w.detach().cpu().numpy()
        g = g.numpy()
        if not _close(g, w, rtol, atol):
            err = float(np.max(np.abs(g - w))) if w.shape == g.shape else float("nan")
            first = _first_difference(model, m, xs, ctx, rtol, atol)
            raise Error(f"export check: output {i} differs from PyTorch's at batch "
                        f"{xs[0].shape[0] if xs[0].dim() else 1}{what} (shapes "
                        f"{list(w.shape)} vs {list(g.shape)}, max abs error {err}){first}")


def _close(g, w, rtol, atol):
    """Within atol + rtol * max|w|: float32 sums in another order differ by a
    few ulps of the largest values, not of each element."""
    if g.shape != w.shape:
        return False
    if w.size == 0:
        return True
    if not np.all(np.isfinite(g) == np.isfinite(w)):
        return False
    scale = float(np.max(np.abs(w[np.isfinite(w)]))) if np.isfinite(w).any() else 0.0
    return float(np.max(np.abs(np.nan_to_num(g - w)))) <= atol + rtol * scale


def _first_difference(model, m, xs, ctx, rtol, atol):
    """Module by module: the first module (in call order) whose output
    differs, for the message."""
    try:
        import nnmod
        want, order = {}, []

        def th(mod, args, out, name):
            if name not in want and isinstance(out, torch.Tensor):
                want[name] = out.detach().numpy().copy()
                order.append(name)

        hs = [mod.register_forward_hook(lambda mod, a, o, n=n: th(mod, a, o, n))
              for n, mod in model.named_modules() if n]
        model.eval()
        try:
            with _reference_mode(model):
                _call(model, xs)
        finally:
            for h in hs:
                h.remove()
        got = {}

        def nh(mod, args, out):
            p = mod.path
            if p in want and p not in got and not isinstance(out, tuple):
                got[p] = out.numpy().copy()

        h = nnmod.register_module_forward_hook(nh, ctx=ctx)
        try:
            with nnmod.no_grad():
                m(*[nnmod.tensor(x.numpy(), ctx=ctx) for x in xs])
        finally:
            h.remove()
        for name in order:
            if name in got:
                w, g = want[name], got[name]
                if not _close(g, w, rtol, atol):
                    e = float(np.max(np.abs(g - w))) if w.shape == g.shape else float("nan")
                    return (f"; first module that differs: '{name}' (shapes {list(w.shape)} vs "
                            f"{list(g.shape)}, max abs error {e})")
        return ""
    except Exception as e:  # noqa: BLE001 - a diagnosis must not hide the mismatch
        return f" (module-by-module comparison failed: {e})"
