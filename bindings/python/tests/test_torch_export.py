"""nnmod.torch.export: PyTorch models to manifests, loaded back and matched
against PyTorch. Skipped where PyTorch is not installed (CI has none)."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import nnmod  # noqa: E402
import nnmod.torch  # noqa: E402


def run_both(model, path, x, ctx):
    manifest, weights = nnmod.torch.export(model, str(path), x, ctx=ctx)
    m = nnmod.from_manifest(manifest, ctx=ctx).eval()
    model.eval()
    with torch.no_grad():
        want = model(x)
    got = m(x.numpy())
    return m, manifest, want, got


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc1 = nn.Linear(d, d)
        self.fc2 = nn.Linear(d, d)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.fc2(self.act(self.fc1(x))) + x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 6)
        self.blocks = nn.ModuleList([Block(6), Block(6)])
        self.heads = nn.ModuleDict({"a": nn.Linear(6, 2), "b": nn.Linear(6, 3)})
        self.spare = nn.Linear(2, 2)  # never called

    def forward(self, x):
        h = torch.relu(self.inp(x))
        for b in self.blocks:
            h = b(h)
        return self.heads["a"](h), self.heads["b"](h)


def test_sequential_is_written_as_a_tree(ctx, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3, bias=False))
    x = torch.randn(5, 4)
    m, manifest, want, got = run_both(model, tmp_path / "mlp.json", x, ctx)
    doc = json.load(open(manifest))
    assert doc["root"]["type"] == "sequential"
    assert [c["type"] for c in doc["root"]["children"]] == ["linear", "relu", "linear"]
    assert doc["root"]["children"][2]["config"]["bias"] is False
    assert len(doc["weights"]["sha256"]) == 64
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    assert list(m.state_dict()) == list(model.state_dict())
    # gradients match too
    xt = x.clone().requires_grad_(True)
    model.zero_grad()
    (model(xt) ** 2).mean().backward()
    xn = nnmod.tensor(x.numpy(), requires_grad=True, ctx=ctx)
    y = m(xn)
    (y * y).mean().backward()
    np.testing.assert_allclose(xn.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-6)
    for (n, p), (tn, tp) in zip(m.named_parameters(), model.named_parameters()):
        assert n == tn
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-4, atol=1e-6)
    del m, got, y, xn, p


def test_any_module_is_traced_into_a_graph(ctx, tmp_path):
    torch.manual_seed(1)
    model = Net()
    x = torch.randn(7, 4)
    m, manifest, want, got = run_both(model, tmp_path / "net.json", x, ctx)
    doc = json.load(open(manifest))
    assert doc["root"]["type"] == "graph"
    assert doc["metadata"]["not_exported"] == "spare"
    assert len(got) == 2
    for w, g in zip(want, got):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)
    keys = [k for k in model.state_dict() if not k.startswith("spare.")]
    assert sorted(m.state_dict()) == sorted(keys)
    del m, got


def test_unsupported_op_is_named(ctx, tmp_path):
    class Sinh(nn.Module):  # torch.sinh: no nnmod op (sin and cos are)
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.sinh(self.fc(x))

    with pytest.raises(nnmod.UnsupportedError) as e:
        nnmod.torch.export(Sinh(), str(tmp_path / "s.json"), torch.randn(2, 4), ctx=ctx)
    assert "torch.sinh" in str(e.value)


def test_unsupported_module_is_named(ctx, tmp_path):
    class Bi(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.bi = nn.Bilinear(4, 4, 2)

        def forward(self, x):
            h = self.fc(x)
            return self.bi(h, h)

    model = nn.Sequential(nn.Linear(4, 4), Bi())
    with pytest.raises(nnmod.UnsupportedError) as e:
        nnmod.torch.export(model, str(tmp_path / "b.json"), torch.randn(2, 4), ctx=ctx)
    assert "Bilinear" in str(e.value) and "'1.bi'" in str(e.value)
    assert not (tmp_path / "b.json").exists()


def test_every_problem_is_listed_once(ctx, tmp_path):
    """One message lists every missing layer, function and construct, with
    counts and where; check() says the same without writing anything."""
    class Many(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.bi = nn.Bilinear(4, 4, 4)

        def forward(self, x):
            h = torch.sinh(self.fc(x))
            h = torch.sinh(h) + torch.cosh(h)
            if h.sum() > 1e9:                 # data-dependent control flow
                h = h * 2
            return self.bi(h, h)

    model = Many()
    x = torch.randn(2, 4)
    with pytest.raises(nnmod.UnsupportedError) as e:
        nnmod.torch.export(model, str(tmp_path / "m.json"), x, ctx=ctx)
    msg = str(e.value)
    assert "Bilinear" in msg and "'bi'" in msg
    assert "torch.cosh" in msg
    assert "__bool__" in msg
    assert "(2x)" in msg                        # torch.sinh, twice
    assert list(tmp_path.iterdir()) == []
    rep = nnmod.torch.check(model, x, ctx=ctx, verbose=False)
    assert not rep.ok and str(rep) == msg.split(": ", 1)[1]
    assert list(tmp_path.iterdir()) == []


def _graph_v2(ctx):
    from nnmod.torch import _Schema
    info = _Schema(ctx).find("graph")
    return bool(info and info["fields"] and any(k == "parameters" for k, _ in info["fields"]))


def test_shared_weights(ctx, tmp_path):
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(self.fc(x))

    torch.manual_seed(6)
    if not _graph_v2(ctx):
        with pytest.raises(nnmod.UnsupportedError) as e:
            nnmod.torch.export(Twice(), str(tmp_path / "t.json"), torch.randn(2, 4), ctx=ctx)
        assert "more than once" in str(e.value)
        return
    x = torch.randn(2, 4)
    m, manifest, want, got = run_both(Twice(), tmp_path / "t.json", x, ctx)
    doc = json.load(open(manifest))
    assert any(" = fc(" in n for n in doc["root"]["config"]["nodes"])
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    del m, got


# Layers exported inside a Sequential after a Linear; each case runs where the
# nnmod layer it maps to is loaded (more plugins: more cases), else skips.
LAYER_CASES = [
    ("relu", lambda: nn.ReLU(), (3, 6)),
    ("identity", lambda: nn.Identity(), (3, 6)),
    ("gelu", lambda: nn.GELU(), (3, 6)),
    ("gelu", lambda: nn.GELU(approximate="tanh"), (3, 6)),
    ("silu", lambda: nn.SiLU(), (3, 6)),
    ("tanh", lambda: nn.Tanh(), (3, 6)),
    ("sigmoid", lambda: nn.Sigmoid(), (3, 6)),
    ("leaky_relu", lambda: nn.LeakyReLU(0.2), (3, 6)),
    ("elu", lambda: nn.ELU(alpha=0.5), (3, 6)),
    ("hardswish", lambda: nn.Hardswish(), (3, 6)),
    ("softmax", lambda: nn.Softmax(dim=1), (3, 6)),
    ("log_softmax", lambda: nn.LogSoftmax(dim=1), (3, 6)),
    ("layer_norm", lambda: nn.LayerNorm(6), (3, 6)),
    ("batch_norm1d", lambda: nn.BatchNorm1d(6), (3, 6)),
    ("dropout", lambda: nn.Dropout(0.3), (3, 6)),
    ("unflatten", lambda: nn.Unflatten(1, (2, 3)), (3, 6)),
    ("group_norm", lambda: nn.Sequential(nn.Unflatten(1, (6, 1)), nn.GroupNorm(2, 6)), (3, 6)),
    ("conv1d", lambda: nn.Sequential(nn.Unflatten(1, (2, 3)), nn.Conv1d(2, 4, 2)), (3, 6)),
    ("conv2d", lambda: nn.Sequential(nn.Unflatten(1, (1, 2, 3)), nn.Conv2d(1, 2, 2, padding=1),
                                     nn.Flatten()), (3, 6)),
    ("batch_norm2d", lambda: nn.Sequential(nn.Unflatten(1, (2, 3, 1)), nn.BatchNorm2d(2)),
     (3, 6)),
    ("max_pool2d", lambda: nn.Sequential(nn.Unflatten(1, (1, 2, 3)), nn.MaxPool2d(2, 1)),
     (3, 6)),
    ("avg_pool2d", lambda: nn.Sequential(nn.Unflatten(1, (1, 2, 3)), nn.AvgPool2d(2, 1)),
     (3, 6)),
    ("adaptive_avg_pool2d", lambda: nn.Sequential(nn.Unflatten(1, (1, 2, 3)),
                                                  nn.AdaptiveAvgPool2d((1, 2))), (3, 6)),
    ("conv_transpose2d", lambda: nn.Sequential(nn.Unflatten(1, (2, 1, 3)),
                                               nn.ConvTranspose2d(2, 3, 2, stride=2)), (3, 6)),
    ("dropout2d", lambda: nn.Sequential(nn.Unflatten(1, (2, 3, 1)), nn.Dropout2d(0.5)),
     (3, 6)),
]


def _have(ctx, layer):
    from nnmod.torch import _Schema
    return _Schema(ctx).find(layer) is not None


@pytest.mark.parametrize("layer,make,shape", LAYER_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(LAYER_CASES)])
def test_layer_exports_match_pytorch(ctx, tmp_path, layer, make, shape):
    torch.manual_seed(2)
    made = make()
    needed = {nnmod.torch._layer_type(type(m).__name__) for m in made.modules()} - {"sequential"}
    missing = [t for t in sorted(needed) if not _have(ctx, t)]
    if missing:
        pytest.skip(f"nnmod has no {', '.join(missing)} loaded")
    model = nn.Sequential(nn.Linear(shape[1], shape[1]), made)
    x = torch.randn(*shape)
    m, manifest, want, got = run_both(model, tmp_path / "l.json", x, ctx)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)
    del m, got


def test_functional_ops_in_a_graph(ctx, tmp_path):
    class F(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 3)
            self.b = nn.Linear(4, 3)

        def forward(self, x):
            return torch.nn.functional.relu(self.a(x) + self.b(x))

    torch.manual_seed(3)
    x = torch.randn(2, 4)
    m, manifest, want, got = run_both(F(), tmp_path / "f.json", x, ctx)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    del m, got


def test_batch_norm_running_stats_travel(ctx, tmp_path):
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(4, 6), nn.Unflatten(1, (3, 2, 1)), nn.BatchNorm2d(3),
                          nn.Flatten())
    needed = [nnmod.torch._layer_type(type(m).__name__) for m in model]
    if not all(_have(ctx, t) for t in needed):
        pytest.skip("nnmod lacks one of " + ", ".join(needed))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 4) * 3 + 1)  # moves running_mean / running_var
    x = torch.randn(5, 4)
    m, manifest, want, got = run_both(model, tmp_path / "bn.json", x, ctx)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)
    sd = m.state_dict()
    np.testing.assert_allclose(sd["2.running_var"].numpy(), model[2].running_var.numpy(),
                               rtol=1e-6)
    del m, got, sd


def test_embedding(ctx, tmp_path):
    if not _have(ctx, "embedding"):
        pytest.skip("nnmod has no embedding loaded")
    torch.manual_seed(5)
    model = nn.Sequential(nn.Embedding(10, 4, padding_idx=0), nn.Linear(4, 2))
    x = torch.tensor([[1, 0, 9], [3, 3, 2]])
    manifest, _ = nnmod.torch.export(model, str(tmp_path / "e.json"), x, ctx=ctx)
    m = nnmod.from_manifest(manifest, ctx=ctx)
    with torch.no_grad():
        want = model(x)
    np.testing.assert_allclose(m(x.numpy()).numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    del m


def _need(ctx, *layers):
    missing = [t for t in layers if not _have(ctx, t)]
    if missing:
        pytest.skip(f"nnmod has no {', '.join(missing)} loaded")


def test_hierarchical_graphs_keep_pytorch_paths(ctx, tmp_path):
    """Each custom module is a graph of its own; its own parameters (read
    directly, as a layer scale) are the graph's; names like 'block1-0' and
    keyword arguments to submodule calls travel."""
    if not nnmod.torch._Exporter(ctx).graph_has("parameters"):
        pytest.skip("the loaded graph plugin has no graph-owned parameters")

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.gamma = nn.Parameter(torch.full((4,), 0.5))

        def forward(self, x, bias=None):
            return x + self.gamma * self.fc(x)

    class Top(nn.Module):
        def __init__(self):
            super().__init__()
            self.add_module("block1-0", Scaled())
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            h = getattr(self, "block1-0")(x=x)
            return self.out(h)

    torch.manual_seed(7)
    model = Top()
    x = torch.randn(3, 4)
    m, manifest, want, got = run_both(model, tmp_path / "h.json", x, ctx)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    doc = json.load(open(manifest))
    blk = doc["root"]["children"][0]
    assert blk["name"] == "block1-0" and blk["type"] == "graph"
    assert blk["config"]["parameters"] == ["gamma: [4]"]
    assert sorted(m.state_dict()) == sorted(model.state_dict())
    # train: the graph-owned parameter gets PyTorch's gradient
    model.train()
    model.zero_grad()
    (model(x) ** 2).mean().backward()
    m.train()
    y = m(nnmod.tensor(x.numpy(), ctx=ctx))
    (y * y).mean().backward()
    g = dict(m.named_parameters())["block1-0.gamma"].grad.numpy()
    np.testing.assert_allclose(g, model.get_submodule("block1-0").gamma.grad.numpy(),
                               rtol=1e-4, atol=1e-6)
    del m, got, y, g


def test_batch_follows_the_input(ctx, tmp_path):
    """Exported at batch 1, run at batch 3: sizes taken from x.shape are
    written as -1 or read from the input at run time."""
    _need(ctx, "view", "expand", "reshape")

    class Shapes(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 6)
            self.token = nn.Parameter(torch.randn(1, 1, 6))

        def forward(self, x):
            n, c, h, w = x.shape
            t = self.token.expand(n, -1, -1)            # from_input / from_dim
            y = x.view(n, c * h * w)                    # -1
            y = self.fc(y).reshape(n, 1, 6)
            return torch.cat([t, y], 1)

    torch.manual_seed(8)
    model = Shapes().eval()
    manifest, _ = nnmod.torch.export(model, str(tmp_path / "s.json"), torch.randn(1, 6, 1, 1),
                                     ctx=ctx)
    doc = json.dumps(json.load(open(manifest)))
    assert "from_input" in doc
    m = nnmod.from_manifest(manifest, ctx=ctx).eval()
    x3 = torch.randn(3, 6, 1, 1)
    with torch.no_grad():
        want = model(x3)
    np.testing.assert_allclose(m(x3.numpy()).numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    del m


def test_list_of_many_tensors_is_concatenated_by_the_caller(ctx, tmp_path):
    """densenet's layers take the list of all earlier features (more than a
    call's 16 inputs) and concatenate it first: the export moves that
    concatenation into the caller."""
    class Layer(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.fc = nn.Linear(cin, 1)

        def forward(self, feats):
            return self.fc(torch.cat(feats, 1))

    class Block(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.layers = nn.ModuleList([Layer(2 + i) for i in range(n)])

        def forward(self, x):
            feats = [x]
            for layer in self.layers:
                feats.append(layer(feats))
            return torch.cat(feats, 1)

    torch.manual_seed(9)
    model = Block(20)
    x = torch.randn(2, 2)
    m, manifest, want, got = run_both(model, tmp_path / "d.json", x, ctx)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    del m, got


def test_dict_outputs_keep_their_names(ctx, tmp_path):
    if not nnmod.torch._Exporter(ctx).graph_has("output_names"):
        pytest.skip("the loaded graph plugin has no output_names")

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 2)
            self.b = nn.Linear(4, 3)

        def forward(self, x):
            return {"out": self.a(x), "aux": self.b(x)}

    torch.manual_seed(10)
    model = Two()
    x = torch.randn(2, 4)
    manifest, _ = nnmod.torch.export(model, str(tmp_path / "o.json"), x, ctx=ctx)
    doc = json.load(open(manifest))
    assert doc["root"]["config"]["output_names"] == ["out", "aux"]


def test_dynamic_image_size(ctx, tmp_path):
    """dynamic_dims beyond the batch: a CNN exported at 2x1x20x20 runs at
    other batch sizes and image sizes (the sizes a forward reads from
    x.shape are read at run time)."""
    _need(ctx, "conv2d", "max_pool2d", "adaptive_avg_pool2d")

    class Cnn(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            n, c, h, w = x.shape
            y = self.pool(torch.relu(self.conv(x)))
            y = y.reshape(n, 4, -1).mean(-1)          # a size read from x.shape
            return self.fc(y) + x.view(n, h * w).mean(1, keepdim=True)

    torch.manual_seed(11)
    model = Cnn().eval()
    manifest, _ = nnmod.torch.export(model, str(tmp_path / "c.json"), torch.randn(2, 1, 20, 20),
                                     ctx=ctx, dynamic_dims={0: [0, 2, 3]})
    m = nnmod.from_manifest(manifest, ctx=ctx).eval()
    for shape in ((1, 1, 20, 20), (3, 1, 12, 16), (2, 1, 32, 8)):
        x = torch.randn(*shape)
        with torch.no_grad():
            want = model(x).numpy()
        np.testing.assert_allclose(m(x.numpy()).numpy(), want, rtol=1e-5, atol=1e-5)
    del m


def test_writes_into_slices_are_functionalised(ctx, tmp_path):
    """x[...] = v, x[...].zero_(), x[..., k] += 1 on tensors the graph
    computes, and on a zeros tensor made in forward (swin's attention mask),
    become out-of-place ops; the export matches at two batch sizes and in a
    train step's gradients."""
    class W(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 6)

        def forward(self, x):
            y = self.fc(x).clone()
            y[:, 1:3].zero_()
            y[:, 0] = 2.0
            z = y.clone()
            z[:, 4:] = x[:, :2] * 3
            z[..., 3] += 1
            mask = x.new_zeros(6)
            mask[2:4] = 1.0
            mask[-1] = -1.0
            return z * mask + z

    torch.manual_seed(12)
    model = W()
    x = torch.randn(3, 6)
    m, manifest, want, got = run_both(model, tmp_path / "w.json", x, ctx)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    doc = json.load(open(manifest))
    assert "buffers" not in doc["root"]["config"]      # the mask is computed, not a constant
    m.train()
    y = m(x.numpy())
    (y * y).mean().backward()
    yt = model(x)
    (yt * yt).mean().backward()
    grads = {n: p.grad.numpy() for n, p in m.named_parameters()}
    np.testing.assert_allclose(grads["fc.weight"], model.fc.weight.grad.numpy(), rtol=1e-4,
                               atol=1e-6)
    del m, got, y


def test_child_linear_parameters_read_directly(ctx, tmp_path):
    """swin v2's pattern: F.linear with a child Linear's weight and a bias
    made from the child's bias (a copy with its middle third zeroed)."""
    class B(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(4, 9)

        def forward(self, x):
            b = self.qkv.bias.clone()
            n = b.numel() // 3
            b[n:2 * n].zero_()
            return F.linear(x, self.qkv.weight, b)

    F = nn.functional
    torch.manual_seed(13)
    model = B()
    x = torch.randn(2, 4)
    m, manifest, want, got = run_both(model, tmp_path / "b.json", x, ctx)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    assert set(m.state_dict()) == {"qkv.weight", "qkv.bias"}
    m.train()
    y = m(x.numpy())
    (y * y).mean().backward()
    yt = model(x)
    (yt * yt).mean().backward()
    grads = {n: p.grad.numpy() for n, p in m.named_parameters()}
    for k in ("qkv.weight", "qkv.bias"):
        np.testing.assert_allclose(grads[k], dict(model.named_parameters())[k].grad.numpy(),
                                   rtol=1e-4, atol=1e-6)
    del m, got, y
