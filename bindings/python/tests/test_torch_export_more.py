"""nnmod.torch.export of the layers and constructs a stranger's own models
use beyond the zoo: EmbeddingBag, max pooling with indices and unpooling,
FeatureAlphaDropout, antialiased interpolation, functional stochastic depth,
parameters of descendants read directly, ParameterList/Dict, dynamic slices
from the end, non-persistent buffers. Each model is exported, run at the
example and at other sizes in eval mode, and (where its train mode is
deterministic) one train step's loss and every gradient are compared with
PyTorch's. Skipped where PyTorch is not installed."""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = nn.functional

import nnmod  # noqa: E402
import nnmod.torch  # noqa: E402


def _have(ctx, layer):
    return nnmod.torch._Schema(ctx).find(layer) is not None


def _need(ctx, *layers):
    missing = [t for t in layers if not _have(ctx, t)]
    if missing:
        pytest.skip(f"nnmod has no {', '.join(missing)} loaded")


def _outs(y):
    if isinstance(y, dict):
        return list(y.values())
    if isinstance(y, (tuple, list)):
        return list(y)
    return [y]


def _nn(x, ctx):
    return nnmod.tensor(x.numpy(), ctx=ctx)


def export_and_match(model, xs, tmp_path, ctx, train=True, more=(), **kw):
    """Exports model at xs (a tuple), checks eval outputs at xs and at each
    tuple of `more`; with train, one train step (loss: sum of the means of
    the squared float outputs) against PyTorch's: loss and every gradient.
    Returns the manifest document."""
    manifest, _ = nnmod.torch.export(model, str(tmp_path / "m.json"), xs, ctx=ctx, **kw)
    m = nnmod.from_manifest(manifest, ctx=ctx)
    m.eval()
    model.eval()
    for inputs in (xs,) + tuple(more):
        with torch.no_grad():
            want = [w.numpy() for w in _outs(model(*inputs))]
        with nnmod.no_grad():
            got = [g.numpy() for g in _outs(m(*[_nn(x, ctx) for x in inputs]))]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    if train:
        model.train()
        model.zero_grad()
        ys_t = [y for y in _outs(model(*xs)) if y.is_floating_point()]
        loss_t = sum((y * y).mean() for y in ys_t)
        loss_t.backward()
        m.train()
        m.zero_grad()
        ys = _outs(m(*[_nn(x, ctx) for x in xs]))
        ys = [y for y, t in zip(ys, _outs(model(*xs))) if t.is_floating_point()]
        loss_n = (ys[0] * ys[0]).mean()
        for y in ys[1:]:
            loss_n = loss_n + (y * y).mean()
        loss_n.backward()
        assert abs(float(loss_n.numpy()) - float(loss_t)) <= 1e-5 * max(1.0, abs(float(loss_t)))
        grads = {n: p.grad.numpy() for n, p in m.named_parameters() if p.grad is not None}
        want = {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}
        assert set(want) <= set(grads)
        scale = max([float(np.max(np.abs(g))) for g in want.values()] + [1e-12])
        for n, g in want.items():
            err = float(np.max(np.abs(grads[n] - g))) / scale
            assert err < 1e-4, f"gradient of {n}: {err:.2e} of the largest"
        del ys, loss_n, grads
    model.eval()
    doc = json.load(open(manifest))
    del m
    return doc


def _types(doc):
    out = []

    def walk(node):
        out.append(node["type"])
        for c in node.get("children", ()):
            walk(c)
    walk(doc["root"])
    return out


# ---- EmbeddingBag -----------------------------------------------------------

class Bags(nn.Module):
    """Every way of calling nn.EmbeddingBag: a 2-d input, offsets with an
    empty bag, per_sample_weights, padding_idx, include_last_offset, max."""

    def __init__(self):
        super().__init__()
        self.sum = nn.EmbeddingBag(12, 4, mode="sum", padding_idx=1)
        self.mean = nn.EmbeddingBag(12, 4, mode="mean")
        self.max = nn.EmbeddingBag(12, 4, mode="max", include_last_offset=True)
        self.fc = nn.Linear(4, 3)

    def forward(self, tokens, idx, offsets, weights, last_offsets):
        a = self.sum(idx, offsets, per_sample_weights=weights)
        b = self.mean(idx, offsets)
        c = self.max(idx, last_offsets)
        d = self.mean(tokens)
        return self.fc(a + b + c), d


def test_embedding_bag_every_mode(ctx, tmp_path):
    _need(ctx, "embedding_bag", "linear")
    torch.manual_seed(0)
    model = Bags()
    idx = torch.tensor([3, 1, 7, 7, 2, 11, 0, 5, 1])
    offsets = torch.tensor([0, 4, 4])                 # bag 1 is empty
    last = torch.tensor([0, 3, 5, 9])                 # include_last_offset: 3 bags
    weights = torch.rand(9)
    tokens = torch.randint(0, 12, (3, 5))
    doc = export_and_match(model, (tokens, idx, offsets, weights, last), tmp_path, ctx,
                           more=[(torch.randint(0, 12, (2, 5)), idx[:6], torch.tensor([0, 2, 6]),
                                  weights[:6], torch.tensor([0, 1, 2, 6]))])
    rep = nnmod.torch.check(model, (tokens, idx, offsets, weights, last), ctx=ctx,
                            verbose=False, compare=False)
    assert rep.ok and not rep.notes             # both traces ran: the sizes are dynamic
    kids = {c["name"]: c for c in doc["root"]["children"]}
    assert kids["sum"]["config"]["padding_idx"] == 1
    assert kids["max"]["config"]["include_last_offset"] is True
    assert kids["max"]["config"]["mode"] == "max"


def test_embedding_bag_as_the_whole_model(ctx, tmp_path):
    """The second trace (other sizes) gets offsets that fit its indices, so
    an EmbeddingBag with include_last_offset exports as it is."""
    _need(ctx, "embedding_bag")
    torch.manual_seed(1)
    bag = nn.EmbeddingBag(10, 3, mode="max", include_last_offset=True)
    export_and_match(bag, (torch.tensor([1, 2, 3, 4, 5, 6, 9]), torch.tensor([0, 2, 5, 7])),
                     tmp_path, ctx, train=False)


# ---- pooling with indices, unpooling ----------------------------------------

class PoolUnpool(nn.Module):
    def __init__(self, nd):
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[nd]
        self.conv = conv(2, 3, 3, padding=1)
        self.pool = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}[nd](2,
                                                                            return_indices=True)
        self.unpool = {1: nn.MaxUnpool1d, 2: nn.MaxUnpool2d, 3: nn.MaxUnpool3d}[nd](2)

    def forward(self, x):
        y, i = self.pool(self.conv(x))
        return self.unpool(torch.relu(y), i) + self.conv(x)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_pool_indices_and_unpool_modules(ctx, tmp_path, nd):
    _need(ctx, f"conv{nd}d", f"max_pool{nd}d", f"max_unpool{nd}d")
    torch.manual_seed(2)
    model = PoolUnpool(nd)
    shape = (2, 2) + (6,) * nd
    doc = export_and_match(model, (torch.randn(*shape),), tmp_path, ctx,
                           more=[(torch.randn(*((3, 2) + (6,) * nd)),)])
    kids = {c["name"]: c for c in doc["root"]["children"]}
    assert kids["pool"]["config"]["return_indices"] is True
    assert kids["unpool"]["type"] == f"max_unpool{nd}d"


class FunctionalPools(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        h = self.conv(x)
        y, i = F.max_pool2d(h, 2, return_indices=True)
        u = F.max_unpool2d(y, i, 2, output_size=h.shape[-2:])   # the default size
        a, j = F.adaptive_max_pool2d(h, (3, 2), return_indices=True)
        v, k = F.max_pool1d(h.flatten(2), 3, stride=3, return_indices=True)
        w = F.max_unpool1d(v, k, 3, stride=3)     # (overlapping windows: PyTorch's
        # gradient reaches both elements that name one index, nnmod's the last)
        z = F.avg_pool1d(h.flatten(2), 2) + F.adaptive_avg_pool1d(h.flatten(2), 32)
        return (u + h, a, j, w, z, F.max_pool2d(h, 3, 2, padding=1, ceil_mode=True),
                F.adaptive_max_pool1d(h.flatten(2), 4))


def test_functional_max_pooling_with_indices(ctx, tmp_path):
    _need(ctx, "conv2d", "max_pool2d", "max_unpool2d", "adaptive_max_pool2d", "max_pool1d",
          "max_unpool1d", "avg_pool1d", "adaptive_avg_pool1d", "adaptive_max_pool1d")
    torch.manual_seed(3)
    model = FunctionalPools()
    doc = export_and_match(model, (torch.randn(2, 1, 8, 8),), tmp_path, ctx,
                           more=[(torch.randn(4, 1, 8, 8),)])
    types = _types(doc)
    assert "max_unpool2d" in types and "adaptive_max_pool2d" in types


def test_unpool_to_another_size_is_refused(ctx, tmp_path):
    _need(ctx, "max_pool2d", "max_unpool2d")

    class Odd(nn.Module):
        def forward(self, x):
            y, i = F.max_pool2d(x, 2, return_indices=True)
            return F.max_unpool2d(y, i, 2, output_size=[7, 7])

    with pytest.raises(nnmod.UnsupportedError) as e:
        nnmod.torch.export(Odd(), str(tmp_path / "o.json"), torch.randn(1, 1, 7, 7), ctx=ctx)
    assert "output_size=[7, 7]" in str(e.value)
    assert list(tmp_path.iterdir()) == []


# ---- dropouts, interpolation, stochastic depth ----------------------------

def test_feature_alpha_dropout_follows_the_mode(ctx, tmp_path):
    _need(ctx, "conv2d", "feature_alpha_dropout")
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.FeatureAlphaDropout(0.3))
    x = torch.randn(2, 3, 4, 4)
    doc = export_and_match(model, (x,), tmp_path, ctx, train=False)
    assert doc["root"]["children"][1]["type"] == "feature_alpha_dropout"
    m = nnmod.from_manifest(str(tmp_path / "m.json"), ctx=ctx).train()
    y = m(x.numpy()).numpy()
    # train mode: whole channels take the dropped value alpha' * a * (p - 1)
    model.eval()
    with torch.no_grad():
        ref = model(x).numpy()
    changed = ~np.isclose(y, ref).reshape(2, 4, -1).all(-1)
    assert changed.any()
    del m


def test_interpolate_antialias(ctx, tmp_path):
    _need(ctx, "conv2d", "upsample")

    class Down(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            h = self.conv(x)
            return (F.interpolate(h, scale_factor=0.5, mode="bilinear", antialias=True) +
                    F.interpolate(h, size=(8, 8), mode="bicubic", antialias=True,
                                  align_corners=False).mean())

    torch.manual_seed(5)
    doc = export_and_match(Down(), (torch.randn(2, 2, 16, 16),), tmp_path, ctx)
    ups = [c for c in doc["root"]["children"] if c["type"] == "upsample"]
    assert all(c["config"]["antialias"] is True for c in ups)


class Residual(nn.Module):
    """torchvision's block pattern, written with the function."""

    def __init__(self, p):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.p = p

    def forward(self, x):
        from torchvision.ops import stochastic_depth
        h = torch.tanh(self.fc(x))
        d = F.dropout(h, self.p, self.training)       # y + h: h keeps its own value
        return x + stochastic_depth(h, self.p, "row", self.training) + d + h


def test_functional_stochastic_depth(ctx, tmp_path):
    pytest.importorskip("torchvision")
    _need(ctx, "stochastic_depth", "dropout", "tanh")
    torch.manual_seed(6)
    x = torch.randn(4, 6)
    doc = export_and_match(Residual(0.2), (x,), tmp_path, ctx, train=False)
    sd = [c for c in doc["root"]["children"] if c["type"] == "stochastic_depth"]
    assert sd and sd[0]["config"] == {"p": 0.2, "mode": "row"}
    # p = 1: train mode drops every sample's branch, deterministically, in
    # both; the gradient reaches fc through the undropped `+ h` only
    export_and_match(Residual(1.0), (x,), tmp_path, ctx, train=True)
    # p = 0, or training=False: nothing
    doc = export_and_match(Residual(0.0), (x,), tmp_path, ctx, train=True)
    assert "stochastic_depth" not in _types(doc)


def test_stochastic_depth_that_drops_in_eval_is_refused(ctx, tmp_path):
    pytest.importorskip("torchvision")
    from torchvision.ops import stochastic_depth

    class Always(nn.Module):
        def forward(self, x):
            return stochastic_depth(x, 0.5, "row") + F.dropout(x, 0.2)

    with pytest.raises(nnmod.UnsupportedError) as e:
        nnmod.torch.export(Always(), str(tmp_path / "a.json"), torch.randn(2, 3), ctx=ctx)
    msg = str(e.value)
    assert "torchvision.ops.stochastic_depth: training=True" in msg
    assert "torch.nn.functional.dropout: training=True" in msg       # both, in one message
    assert stochastic_depth.__code__.co_name == "stochastic_depth"  # restored


# ---- slices whose numbers follow a dynamic dim -----------------------------

class Slices(nn.Module):
    """Slices and indices written with sizes read from the inputs."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.pos = nn.Parameter(torch.randn(1, 20, 4))
        self.prefix = nn.Parameter(torch.randn(1, 3, 4))

    def forward(self, x, y):
        n, t, _ = x.shape
        h = torch.cat([self.prefix.expand(n, -1, -1), self.fc(x)], 1)
        a = h[:, -t:]                        # the last t steps
        b = h[:, self.prefix.size(1):]       # after the prefix
        c = h[:, :h.size(1) - 1]             # x[:, :-1]
        d = self.pos[:, 2:2 + t]             # a static start, a dynamic length
        e = h[:, h.size(1) - 1]              # h[:, -1]
        f = h.narrow(1, 3, t)
        g = y[:, -x.size(1):]                # y longer than x: the end of y
        k = y.narrow(1, y.size(1) - t, t)    # the same
        return a + b + d + f + g * k, c.sum(1) + e


def test_slices_follow_dynamic_dims(ctx, tmp_path):
    _need(ctx, "getitem", "flip", "arange", "index_select", "concat", "expand")
    torch.manual_seed(7)
    model = Slices()
    x, y = torch.randn(2, 5, 4), torch.randn(2, 9, 4)
    more = [(torch.randn(3, T, 4), torch.randn(3, U, 4))
            for T, U in ((3, 7), (8, 12), (1, 2), (5, 5))]
    doc = export_and_match(model, (x, y), tmp_path, ctx, more=more,
                           dynamic_dims={0: [0, 1], 1: [0, 1]})
    kinds = {c["name"]: c for c in doc["root"]["children"]}
    assert any(c["type"] == "flip" for c in kinds.values())      # y[:, -t:]
    assert not doc["root"]["config"].get("buffers")


def test_slice_of_an_unrelated_size_is_reported(ctx, tmp_path):
    class Strided(nn.Module):
        def forward(self, x):
            return x[:, :: x.size(1) // 4] * 2      # a step that follows the length

    with pytest.raises(nnmod.UnsupportedError) as e:
        nnmod.torch.export(Strided(), str(tmp_path / "h.json"), torch.randn(2, 8),
                           ctx=ctx, dynamic_dims=[0, 1])
    assert "depends on a dynamic dim" in str(e.value)


# ---- a single layer of several outputs --------------------------------------

def test_single_layer_model_gives_all_its_outputs(ctx, tmp_path):
    """An exported nn.LSTM is the `lstm` layer itself: called plainly it
    returns its output; n_outputs asks for (output, h_n, c_n), as PyTorch's
    out, (h_n, c_n)."""
    _need(ctx, "lstm", "gru")
    torch.manual_seed(8)
    lstm = nn.LSTM(4, 6, num_layers=2, batch_first=True).eval()
    x = torch.randn(3, 5, 4)
    manifest, _ = nnmod.torch.export(lstm, str(tmp_path / "l.json"), x, ctx=ctx)
    m = nnmod.from_manifest(manifest, ctx=ctx).eval()
    with torch.no_grad():
        out, (h, c) = lstm(x)
    assert m.n_outputs == 1
    np.testing.assert_allclose(m(x.numpy()).numpy(), out.numpy(), rtol=1e-5, atol=1e-6)
    got = m(x.numpy(), n_outputs=3)                 # one call
    assert len(got) == 3
    for g, w in zip(got, (out, h, c)):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)
    m.n_outputs = 3                                 # from now on
    assert m.n_outputs == 3 and len(m(x.numpy())) == 3
    with pytest.raises(ValueError):
        m.n_outputs = 0
    gru = nn.GRU(4, 6).eval()
    manifest, _ = nnmod.torch.export(gru, str(tmp_path / "g.json"), torch.randn(5, 2, 4),
                                     ctx=ctx)
    g = nnmod.from_manifest(manifest, ctx=ctx)
    y, hn = g(torch.randn(5, 2, 4).numpy(), n_outputs=2)
    assert list(hn.shape) == [1, 2, 6]
    del m, got, g, y, hn


# ---- what nnmod cannot hold: said in one message ----------------------------

class PackedAndPerHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)
        self.lstm = nn.LSTM(8, 8, batch_first=True)
        self.bi = nn.Bilinear(8, 8, 2)

    def forward(self, x, lengths):
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
        a, w = self.att(x, x, x, average_attn_weights=False)
        p = pack_padded_sequence(a, lengths, batch_first=True, enforce_sorted=False)
        o, _ = self.lstm(p)
        o, _ = pad_packed_sequence(o, batch_first=True)
        h = o.sum(1) + w.sum((1, 2, 3))[:, None]
        return self.bi(h, torch.cosh(h))


def test_packed_sequences_and_per_head_weights_are_named(ctx, tmp_path):
    """Each is named once as what it is (not as the sort, scatter_ and
    .cpu() pack_padded_sequence runs inside), with everything else missing,
    in one message; nothing is written."""
    model = PackedAndPerHead()
    with pytest.raises(nnmod.UnsupportedError) as e:
        nnmod.torch.export(model, str(tmp_path / "p.json"),
                           (torch.randn(2, 5, 8), torch.tensor([5, 3])), ctx=ctx)
    msg = str(e.value)
    assert "per-head attention weights" in msg and "average_attn_weights=False" in msg
    assert "packed sequences" in msg and "(2x)" in msg
    assert "Bilinear" in msg and "torch.cosh" in msg
    for noise in ("torch.sort", "scatter_", "Tensor.cpu", "empty_like", "as_tensor"):
        assert noise not in msg
    assert msg.count("average_attn_weights") == 1
    assert list(tmp_path.iterdir()) == []
    import torch.nn.utils.rnn as rnn
    assert rnn.pack_padded_sequence.__code__.co_name == "pack_padded_sequence"
    assert "lengths" in rnn.pack_padded_sequence.__code__.co_varnames     # restored


# ---- non-persistent buffers and tensors made in forward: graph constants ----

class Rotary(nn.Module):
    """Hugging Face's pattern: tables registered with persistent=False
    (rotary frequencies, a band mask with -inf, a bool keep mask, an index
    table), a constant made with torch.tensor in forward, and one
    persistent buffer."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        inv = 1.0 / (10000 ** (torch.arange(0, 8, 2).float() / 8))
        self.register_buffer("inv_freq", inv, persistent=False)
        band = torch.full((6, 6), float("-inf"))
        band[:, :3] = 0
        band[2, 4] = 0
        self.register_buffer("band", band, persistent=False)
        self.register_buffer("keep", torch.tensor([1, 0, 1, 1, 0, 1, 1, 0]).bool(),
                             persistent=False)
        self.register_buffer("idx", torch.tensor([3, 1, 2, 0]), persistent=False)
        self.register_buffer("stat", torch.rand(8) + 0.5)

    def forward(self, x):
        t = torch.arange(x.size(1), dtype=torch.float32)
        f = t[:, None] * self.inv_freq[None, :]
        h = self.fc(x) + torch.cat([f.sin(), f.cos()], -1)
        w = torch.softmax(h @ h.transpose(1, 2) + self.band, -1) @ h
        bias = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
        return (w.masked_fill(~self.keep, 0.0) * self.stat + bias +
                h[..., self.idx].sum(-1, keepdim=True))


def test_non_persistent_buffers_are_graph_constants(ctx, tmp_path):
    """Their values travel in the manifest (graph `constants`), so the
    manifest's state dict is exactly PyTorch's and a PyTorch state dict
    loads strictly; -inf and bool values are exact."""
    if not nnmod.torch._Exporter(ctx).graph_has("constants"):
        pytest.skip("the loaded graph plugin has no constants")
    _need(ctx, "sin", "cos", "softmax", "masked_fill", "index_select")
    torch.manual_seed(9)
    model = Rotary()
    x = torch.randn(2, 6, 8)
    doc = export_and_match(model, (x,), tmp_path, ctx, more=[(torch.randn(5, 6, 8),)])
    cfg = doc["root"]["config"]
    names = [c.split(":")[0] for c in cfg["constants"]]
    assert {"inv_freq", "band", "keep", "idx"} <= set(names)
    assert cfg["buffers"] == ["stat: [8]"]
    assert "constants" not in doc["metadata"]             # nothing in the weights file
    m = nnmod.from_manifest(str(tmp_path / "m.json"), ctx=ctx)
    assert sorted(m.state_dict()) == sorted(model.state_dict())
    m.load_state_dict({k: v.numpy() for k, v in model.state_dict().items()}, strict=True)
    band = dict(m.named_buffers())["band"].numpy()
    np.testing.assert_array_equal(band, model.band.numpy())          # -inf exact
    rep = nnmod.torch.check(model, x, ctx=ctx, verbose=False)
    assert rep.ok and not rep.notes
    del m


# ---- parameters of descendants read directly; ParameterList/Dict ----------

class TiedBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 1)
        self.norm = nn.LayerNorm(4)
        self.gamma = nn.Parameter(torch.rand(4) + 0.5)
        self.spare = nn.Linear(4, 4)           # never called: its bias is read above

    def forward(self, x):
        return self.norm(x)


class TiedLM(nn.Module):
    """Weight tying (logits = h @ emb.weight.T), a grandchild's conv weight
    in a product, a child graph's own parameter, a norm never called whose
    weight is used, a bias of a module never called, F.linear with a
    child's weight and no bias, ParameterList and ParameterDict entries."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.block = TiedBlock()
        self.ln = nn.LayerNorm(4)
        self.heads = nn.ModuleDict({"a": nn.Linear(4, 4)})
        self.scales = nn.ParameterList([nn.Parameter(torch.rand(4) + 0.5) for _ in range(2)])
        self.gates = nn.ParameterDict({"in": nn.Parameter(torch.rand(4)),
                                       "out gate": nn.Parameter(torch.rand(1, 4))})

    def forward(self, tok):
        h = self.block(self.emb(tok)) * self.gates["in"]
        mix = self.block.conv.weight.squeeze(-1)                    # [4, 4]
        h = h @ mix * self.block.gamma + self.ln.weight + self.block.spare.bias
        h = h + F.linear(h, self.heads["a"].weight)
        for s in self.scales:
            h = h * s
        return h @ self.emb.weight.T + self.gates["out gate"].sum()


def test_descendant_parameters_read_directly(ctx, tmp_path):
    if not nnmod.torch._Exporter(ctx).graph_has("reads"):
        pytest.skip("the loaded graph plugin has no reads")
    _need(ctx, "embedding", "conv1d", "layer_norm", "matmul", "transpose", "squeeze")
    torch.manual_seed(10)
    model = TiedLM()
    tok = torch.randint(0, 10, (2, 5))
    doc = export_and_match(model, (tok,), tmp_path, ctx, more=[(torch.randint(0, 10, (4, 5)),)])
    cfg = doc["root"]["config"]
    assert {"emb.weight", "block.conv.weight", "block.gamma", "ln.weight", "block.spare.bias",
            "heads.a.weight", "scales.0", "scales.1", "gates.in",
            "gates.`out gate`"} <= set(cfg["reads"])
    kids = {c["name"]: c for c in doc["root"]["children"]}
    assert kids["block"]["config"]["parameters"] == ["gamma: [4]"]
    assert set(kids["block"]["config"]["reads"]) == {"conv.weight", "spare.bias"}
    m = nnmod.from_manifest(str(tmp_path / "m.json"), ctx=ctx)
    assert sorted(m.state_dict()) == sorted(model.state_dict())
    m.load_state_dict({k: v.numpy() for k, v in model.state_dict().items()}, strict=True)
    del m


def test_a_tensor_of_a_module_not_below_is_reported(ctx, tmp_path):
    class Reader(nn.Module):
        def __init__(self, table):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.table = [table]               # a Python reference, not a submodule

        def forward(self, x):
            return self.fc(x) @ self.table[0].T

    class Top(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(6, 4)
            self.reader = Reader(self.emb.weight)

        def forward(self, x):
            return self.reader(x) + self.emb.weight.sum()

    with pytest.raises(nnmod.UnsupportedError) as e:
        nnmod.torch.export(Top(), str(tmp_path / "t.json"), torch.randn(2, 4), ctx=ctx)
    assert "'emb.weight' of another module directly" in str(e.value)
    assert "'reader'" in str(e.value)


class DynamicRotary(nn.Module):
    """Positions made in forward from the length, mixed with a constant
    table: the arange is a node, so the model runs at other lengths."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, 8, 2).float() / 8)),
                             persistent=False)

    def forward(self, x):
        t = torch.arange(x.size(1), dtype=torch.float32)
        f = t[:, None] * self.inv_freq[None, :]
        return self.fc(x) + torch.cat([f.sin(), f.cos()], -1)


def test_positions_made_in_forward_follow_the_length(ctx, tmp_path):
    if not nnmod.torch._Exporter(ctx).graph_has("constants"):
        pytest.skip("the loaded graph plugin has no constants")
    _need(ctx, "arange", "sin", "cos", "getitem")
    torch.manual_seed(11)
    doc = export_and_match(DynamicRotary(), (torch.randn(2, 6, 8),), tmp_path, ctx,
                           dynamic_dims=[0, 1],
                           more=[(torch.randn(3, 11, 8),), (torch.randn(1, 2, 8),)])
    assert any(c["type"] == "arange" for c in doc["root"]["children"])


class SharedTable(nn.Module):
    """F.embedding with a child's table (the child called), with a table of
    its own, and with a grandchild's Linear weight read directly."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(12, 4, padding_idx=0)
        self.table = nn.Parameter(torch.randn(12, 4))
        self.dec = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 12))  # [12, 4] weight

    def forward(self, tok):
        a = F.embedding(tok, self.emb.weight, padding_idx=0)     # the child, called
        b = F.embedding(tok, self.table)
        c = F.embedding(tok, self.dec[1].weight)      # a read, then index_select
        return self.dec[0](a + b * c)


def test_functional_embedding(ctx, tmp_path):
    if not nnmod.torch._Exporter(ctx).graph_has("reads"):
        pytest.skip("the loaded graph plugin has no reads")
    _need(ctx, "embedding", "index_select", "reshape")
    torch.manual_seed(12)
    tok = torch.randint(0, 12, (3, 5))
    tok[0, 0] = 0
    doc = export_and_match(SharedTable(), (tok,), tmp_path, ctx,
                           more=[(torch.randint(0, 12, (2, 5)),)])
    assert "dec.1.weight" in doc["root"]["config"]["reads"]
    assert any(n.startswith("emb:") for n in doc["root"]["config"]["nodes"])


def test_a_size_fitted_wrongly_is_caught_at_a_third_size(ctx, tmp_path):
    """x[:, :x.size(1) // 2] traced at lengths 8 and 7 looks like x[:, :-4]:
    the export check runs a third, untraced size and says so."""
    class Half(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x[:, : x.size(1) // 2])

    with pytest.raises(nnmod.Error) as e:
        nnmod.torch.export(Half(), str(tmp_path / "h.json"), torch.randn(2, 8, 4), ctx=ctx,
                           dynamic_dims=[0, 1])
    assert "a third size" in str(e.value)
    manifest, _ = nnmod.torch.export(Half(), str(tmp_path / "s.json"), torch.randn(2, 8, 4),
                                     ctx=ctx, dynamic=False)


def test_sizes_bound_to_each_other_stay_dynamic(ctx, tmp_path):
    """y one step longer than x: moved by different amounts the model fails
    (PyTorch raises), so the second trace moves them by one amount."""
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("the first try makes torch throw, which aborts under a preloaded libasan")

    class Shifted(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x, y):
            n, t, _ = x.shape
            return self.fc(x).view(n, t * 4) + y[:, 1:].reshape(n, -1)

    torch.manual_seed(13)
    model = Shifted()
    xs = (torch.randn(2, 6, 4), torch.randn(2, 7, 4))
    rep = nnmod.torch.check(model, xs, ctx=ctx, verbose=False,
                            dynamic_dims={0: [0, 1], 1: [0, 1]})
    assert rep.ok and not rep.notes, str(rep)
    export_and_match(model, xs, tmp_path, ctx, dynamic_dims={0: [0, 1], 1: [0, 1]},
                     more=[(torch.randn(3, 9, 4), torch.randn(3, 10, 4))])
