import collections
import json
import os

import numpy as np
import pytest

import nnmod


def io(golden, name):
    return nnmod.load_safetensors(os.path.join(golden, "state", name), with_metadata=True)


def test_from_manifest_matches_pytorch(ctx, golden):
    # tests/golden/make_state_golden.py: PyTorch's output for these weights
    m = nnmod.from_manifest(os.path.join(golden, "state", "mlp.manifest.json"), ctx=ctx)
    (data, meta) = io(golden, "mlp_io.safetensors")
    y = m(data["input"])
    np.testing.assert_allclose(y.numpy(), data["output"].numpy(), rtol=1e-5, atol=1e-6)
    assert list(m.state_dict()) == meta["state_dict_keys"].split(",")
    del m, y, data


def test_weights_argument(ctx, golden, mlp_path):
    (data, _) = io(golden, "mlp_io.safetensors")
    w = os.path.join(golden, "state", "mlp.safetensors")
    # mlp.json names its children fc1/act/fc2, the golden file 0/1/2: strict fails by key
    with pytest.raises(nnmod.NotFoundError) as e:
        nnmod.from_manifest(mlp_path, weights=w, ctx=ctx)
    assert "fc1.weight" in str(e.value) or "0.weight" in str(e.value)
    sd = nnmod.load_safetensors(w, ctx=ctx)
    renamed = {k.replace("0.", "fc1.", 1).replace("2.", "fc2.", 1): v for k, v in sd.items()}
    m = nnmod.from_manifest(mlp_path, weights=renamed, ctx=ctx)
    np.testing.assert_allclose(m(data["input"]).numpy(), data["output"].numpy(), rtol=1e-5,
                               atol=1e-6)
    del m, sd, renamed, data


def test_structure(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    assert [n for n, _ in m.named_modules()] == ["", "fc1", "act", "fc2"]
    assert [n for n, _ in m.named_children()] == ["fc1", "act", "fc2"]
    assert m.layer_type == "sequential" and m.fc1.layer_type == "linear"
    assert m[0] == m.fc1 and m["fc2"] == m[-1] and len(m) == 3
    assert m.fc2.path == "fc2" and m.fc2.parent == m
    assert [(n, p.shape) for n, p in m.named_parameters()] == [
        ("fc1.weight", (8, 4)), ("fc1.bias", (8,)), ("fc2.weight", (3, 8)), ("fc2.bias", (3,))]
    assert list(m.named_buffers()) == []
    assert m.fc1.weight.shape == (8, 4)
    assert len(list(m.parameters())) == 4
    assert m.num_parameters() == 67
    with pytest.raises(AttributeError):
        m.nope
    with pytest.raises(KeyError):
        m["nope"]
    text = repr(m)
    assert "Linear(in_features=4, out_features=8, bias=True)" in text
    assert text.startswith("Sequential(")
    del m


def test_train_eval(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    assert m.training and m.fc1.training
    assert m.eval() is m
    assert not m.training and not m.fc2.training
    m.train()
    assert m.act.training
    del m


def test_call_errors_name_the_module(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    with pytest.raises(nnmod.ShapeError) as e:
        m(np.ones((2, 5), np.float32))
    assert e.value.status_name == "NNM_E_SHAPE"
    assert e.value.status == -3
    assert "fc1 (linear)" in e.value.message and "[2, 5]" in e.value.message
    assert isinstance(e.value, ValueError)
    with pytest.raises(nnmod.ShapeError):
        m(np.ones((2, 4), np.float32), np.ones((2, 4), np.float32))  # two inputs
    del m


def test_manifest_errors(ctx, tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"format": "nnmod.manifest", "version": 1, "plugins": {"linear": "^1.0"},'
                 ' "root": {"type": "linear", "config": {"in_features": "four",'
                 ' "out_features": 2}}}')
    with pytest.raises(nnmod.Error) as e:
        nnmod.from_manifest(str(p), ctx=ctx)
    assert "root.config.in_features" in str(e.value)
    with pytest.raises(nnmod.FileSystemError):
        nnmod.from_manifest(str(tmp_path / "missing.json"), ctx=ctx)


def test_state_dict_round_trip(ctx, mlp_path):
    a = nnmod.from_manifest(mlp_path, ctx=ctx)
    b = nnmod.from_manifest(mlp_path, ctx=nnmod.Context(seed=7))
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    assert not np.allclose(a(x).numpy(), b(x).numpy())
    sd = a.state_dict()
    assert isinstance(sd, collections.OrderedDict)
    assert np.shares_memory(sd["fc1.weight"].numpy(), a.fc1.weight.numpy())
    r = b.load_state_dict(sd)
    assert r.missing_keys == [] and r.unexpected_keys == []
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    del a, b, sd


def test_load_state_dict_reports_keys(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    before = m.fc2.bias.numpy().copy()
    sd = {"fc1.weight": np.zeros((8, 4), np.float32), "extra": np.zeros(1, np.float32)}
    with pytest.raises(nnmod.NotFoundError) as e:
        m.load_state_dict(sd)
    assert "fc1.bias" in str(e.value) and "extra" in str(e.value)
    assert m.fc1.weight.numpy().any()  # strict failure changed nothing
    r = m.load_state_dict(sd, strict=False)
    assert r.missing_keys == ["fc1.bias", "fc2.weight", "fc2.bias"]
    assert r.unexpected_keys == ["extra"]
    assert not m.fc1.weight.numpy().any()
    np.testing.assert_array_equal(m.fc2.bias.numpy(), before)
    with pytest.raises(nnmod.ShapeError) as e:
        m.load_state_dict({"fc1.weight": np.zeros((4, 8), np.float32)}, strict=False)
    assert "fc1.weight" in str(e.value)
    del m


def test_save_load_file(ctx, mlp_path, tmp_path):
    a = nnmod.from_manifest(mlp_path, ctx=ctx)
    f = str(tmp_path / "w.safetensors")
    a.save(f, metadata={"note": "hi"})
    b = nnmod.from_manifest(mlp_path, weights=f, ctx=nnmod.Context(seed=3))
    x = np.ones((1, 4), np.float32)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    _, meta = nnmod.load_safetensors(f, with_metadata=True, ctx=ctx)
    assert meta["note"] == "hi"
    r = b.load(f, strict=False)
    assert r == ([], [])
    # a strict load of a file missing keys is refused, and the error names them
    part = str(tmp_path / "part.safetensors")
    nnmod.save_safetensors({"fc1.weight": a.fc1.weight.numpy()}, part, ctx=ctx)
    with pytest.raises(nnmod.NotFoundError) as e:
        b.load(part)
    assert e.value.missing_keys == ["fc1.bias", "fc2.weight", "fc2.bias"]
    assert e.value.unexpected_keys == []
    m2 = str(tmp_path / "m.json")
    a.to_manifest(m2)
    c = nnmod.from_manifest(m2, weights=f, ctx=ctx)
    np.testing.assert_array_equal(a(x).numpy(), c(x).numpy())
    del a, b, c


def test_create_and_compose(ctx):
    net = nnmod.create("sequential", ctx=ctx, children=[
        ("fc", nnmod.create("linear", in_features=3, out_features=2, ctx=ctx)),
        nnmod.create("relu", ctx=ctx)])
    assert [n for n, _ in net.named_children()] == ["fc", "1"]
    assert net(np.ones((5, 3), np.float32)).shape == (5, 2)
    with pytest.raises(nnmod.Error) as e:
        nnmod.create("linear", in_features=3, ctx=ctx)
    assert "out_features" in str(e.value)
    with pytest.raises(nnmod.NotFoundError):
        nnmod.create("no_such_layer", ctx=ctx)
    del net


def test_graph_with_two_outputs(ctx, repo):
    m = nnmod.from_manifest(os.path.join(repo, "examples", "manifests", "two_heads.json"),
                            ctx=ctx)
    x = np.random.default_rng(2).standard_normal((2, 8)).astype(np.float32)
    cls, box = m(x)
    p = {n: t.numpy() for n, t in m.named_parameters()}
    h = np.maximum(x @ p["trunk.0.weight"].T + p["trunk.0.bias"], 0)
    np.testing.assert_allclose(cls.numpy(), h @ p["heads.cls.weight"].T + p["heads.cls.bias"],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(box.numpy(), h @ p["heads.box.weight"].T + p["heads.box.bias"],
                               rtol=1e-5, atol=1e-6)
    del m, cls, box, p


def test_graph_output_names_give_a_dict(ctx, tmp_path):
    # a graph with output_names returns a dict (one output too, as
    # torchvision's segmentation models return {"out": ...}); children may
    # have any name PyTorch takes; a graph parameter is a named parameter
    doc = {"format": "nnmod.manifest", "version": 1,
           "plugins": {"graph": "^1.1", "relu": "^1.0", "add": "^1.0"},
           "root": {"type": "graph", "config": {
               "parameters": ["bias: [3] ones"],
               "nodes": ["h = `block1-0`(x)", "y = add(h, bias)"],
               "outputs": ["y", "h"], "output_names": ["out", "aux"]},
               "children": [{"name": "block1-0", "type": "relu"},
                            {"name": "add", "type": "add"}]}}
    path = tmp_path / "named.json"
    path.write_text(json.dumps(doc))
    m = nnmod.from_manifest(str(path), ctx=ctx)
    x = np.array([[-1.0, 0.5, 2.0]], np.float32)
    y = m(x)
    assert isinstance(y, dict) and list(y) == ["out", "aux"]
    np.testing.assert_allclose(y["out"].numpy(), np.maximum(x, 0) + 1)
    np.testing.assert_allclose(y["aux"].numpy(), np.maximum(x, 0))
    assert [n for n, _ in m.named_parameters()] == ["bias"]
    assert [n for n, _ in m.named_children()] == ["block1-0", "add"]
    doc["root"]["config"]["outputs"] = ["y"]
    doc["root"]["config"]["output_names"] = ["out"]
    path.write_text(json.dumps(doc))
    m1 = nnmod.from_manifest(str(path), ctx=ctx)
    y1 = m1(x)
    assert list(y1) == ["out"]
    del m, m1, y, y1


def test_safetensors_round_trip(ctx, tmp_path):
    f = str(tmp_path / "t.safetensors")
    d = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 2], np.int64)}
    nnmod.save_safetensors(d, f, metadata={"k": "v"}, ctx=ctx)
    back, meta = nnmod.load_safetensors(f, with_metadata=True, ctx=ctx)
    assert sorted(back) == ["a", "b"]
    assert back["b"].dtype is nnmod.int64
    np.testing.assert_array_equal(back["a"].numpy(), d["a"])
    np.testing.assert_array_equal(back["b"].numpy(), d["b"])
    assert meta["k"] == "v" and "nnmod_version" in meta
    with pytest.raises(nnmod.Error):
        nnmod.load_safetensors(str(tmp_path / "none.safetensors"), ctx=ctx)
    del back


def test_replace_delete_and_tie(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    x = np.ones((2, 4), np.float32)
    m.act = nnmod.create("identity", ctx=ctx)  # model.act = nn.Identity()
    assert m.act.layer_type == "identity"
    assert [n for n, _ in m.named_children()] == ["fc1", "act", "fc2"]
    h = m.fc1(x).numpy()
    np.testing.assert_allclose(m(x).numpy(), h @ m.fc2.weight.numpy().T + m.fc2.bias.numpy(),
                               rtol=1e-5, atol=1e-6)
    # tying: one tensor under two names
    a = nnmod.create("linear", in_features=3, out_features=3, ctx=ctx)
    b = nnmod.create("linear", in_features=3, out_features=3, ctx=ctx)
    net = nnmod.create("sequential", children=[("a", a), ("b", b)], ctx=ctx)
    net.b.weight = net.a.weight
    assert np.shares_memory(net.b.weight.numpy(), net.a.weight.numpy())
    assert list(net.state_dict()) == ["a.weight", "a.bias", "b.weight", "b.bias"]
    assert [n for n, _ in net.named_parameters()] == ["a.weight", "a.bias", "b.bias"]
    del net.b
    assert [n for n, _ in net.named_children()] == ["a"]
    with pytest.raises(nnmod.NotFoundError):
        del net.b
    with pytest.raises(AttributeError):
        m.fc1 = 3
    del m, a, b, net, h


def test_requires_grad_freezes(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    m.fc1.requires_grad_(False)
    assert not m.fc1.weight.requires_grad and m.fc2.weight.requires_grad
    m(np.ones((1, 4), np.float32)).sum().backward()
    assert m.fc1.weight.grad is None and m.fc2.weight.grad is not None
    del m


def test_load_state_dict_error_carries_the_report(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    with pytest.raises(nnmod.ShapeError) as e:
        m.load_state_dict({"fc1.weight": np.zeros((4, 8), np.float32)}, strict=False)
    assert any("fc1.weight" in s for s in e.value.mismatched)
    with pytest.raises(nnmod.NotFoundError) as e:
        m.load_state_dict({"fc1.weight": np.zeros((8, 4), np.float32)})
    assert e.value.missing_keys == ["fc1.bias", "fc2.weight", "fc2.bias"]
    del m, e
