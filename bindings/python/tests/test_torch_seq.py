"""nnmod.torch.export of sequence models: nn.LSTM / GRU / RNN (and the
cells), nn.MultiheadAttention and the nn.Transformer* layers exported as the
nnmod layers of the same names (not traced through their forward), with
their tuple outputs, optional inputs and masks. Each model is a user's kind
of model; it must export, match PyTorch in eval (at the example's batch and
one larger) and match one train step (loss and every gradient). Skipped
where PyTorch is not installed (CI has none)."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = nn.functional

import nnmod  # noqa: E402
import nnmod.torch  # noqa: E402


def _need(ctx, *layers):
    from nnmod.torch import _Schema
    s = _Schema(ctx)
    missing = [t for t in layers if s.find(t) is None]
    if missing:
        pytest.skip(f"nnmod has no {', '.join(missing)} loaded")


def _nn(x, ctx):
    return nnmod.tensor(x.numpy(), ctx=ctx)


def _outs(y):
    if isinstance(y, dict):
        return list(y.values())
    if isinstance(y, (tuple, list)):
        return list(y)
    return [y]


def export_and_match(model, xs, tmp_path, ctx, train=True, dynamic_dims=None, more=()):
    """Exports model at xs (a tuple of tensors), checks eval outputs at xs
    and at each input tuple of `more`, then one train step (loss = mean of
    the squared outputs): loss and every gradient against PyTorch."""
    kw = {} if dynamic_dims is None else {"dynamic_dims": dynamic_dims}
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
        loss_t = sum((y * y).mean() for y in _outs(model(*xs)))
        loss_t.backward()
        m.train()
        m.zero_grad()
        ys = _outs(m(*[_nn(x, ctx) for x in xs]))
        loss_n = (ys[0] * ys[0]).mean()
        for y in ys[1:]:
            loss_n = loss_n + (y * y).mean()
        loss_n.backward()
        assert abs(float(loss_n.numpy()) - float(loss_t)) <= 1e-5 * max(1.0, abs(float(loss_t)))
        grads = {n: p.grad.numpy() for n, p in m.named_parameters()}
        want = {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}
        assert set(grads) == {n for n, _ in model.named_parameters()}
        scale = max(float(np.max(np.abs(g))) for g in want.values())
        for n, g in want.items():
            err = float(np.max(np.abs(grads[n] - g))) / scale
            assert err < 1e-4, f"gradient of {n}: {err:.2e} of the largest"
        del ys, loss_n, grads
    model.eval()
    doc = json.load(open(manifest))
    del m
    return doc


class TextClassifier(nn.Module):
    """embedding -> 2-layer LSTM -> last step -> linear."""

    def __init__(self, vocab=50, d=8, hidden=12, classes=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, d, padding_idx=0)
        self.lstm = nn.LSTM(d, hidden, num_layers=2, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, tokens):
        out, (h, c) = self.lstm(self.emb(tokens))
        return self.fc(out[:, -1]) + 0.5 * self.fc(h[-1])


def test_text_classifier_lstm(ctx, tmp_path):
    _need(ctx, "embedding", "lstm")
    torch.manual_seed(0)
    model = TextClassifier()
    x = torch.randint(0, 50, (2, 7))
    doc = export_and_match(model, (x,), tmp_path, ctx, dynamic_dims={0: [0, 1]},
                           more=[(torch.randint(0, 50, (5, 7)),),
                                 (torch.randint(0, 50, (3, 11)),)])
    kids = {c["name"]: c for c in doc["root"]["children"]}
    assert kids["lstm"]["type"] == "lstm"
    assert kids["lstm"]["config"]["num_layers"] == 2
    assert "children" not in kids["lstm"]


class GruTagger(nn.Module):
    """A bidirectional GRU over features, with an initial state, tagging
    every step; the final states feed a second head."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(5, 8)
        self.gru = nn.GRU(8, 6, num_layers=2, bidirectional=True)
        self.tag = nn.Linear(12, 4)
        self.h0 = nn.Parameter(torch.randn(4, 1, 6) * 0.1)

    def forward(self, x):                       # [T, N, 5]
        h0 = self.h0.expand(-1, x.size(1), -1).contiguous()
        out, hn = self.gru(torch.tanh(self.inp(x)), h0)
        return self.tag(out), hn.sum(0)


def test_gru_sequence_model(ctx, tmp_path):
    _need(ctx, "gru")
    torch.manual_seed(1)
    model = GruTagger()
    x = torch.randn(6, 2, 5)
    # sequence-first: dim 0 is the length, dim 1 the batch; both may change
    export_and_match(model, (x,), tmp_path, ctx, dynamic_dims={0: [0, 1]},
                     more=[(torch.randn(3, 4, 5),), (torch.randn(9, 1, 5),)])


class Cells(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTMCell(4, 5)
        self.gru = nn.GRUCell(5, 5)
        self.rnn = nn.RNNCell(5, 3, nonlinearity="relu")
        self.rnn_full = nn.RNN(4, 3, batch_first=True)

    def forward(self, x):                       # [N, T, 4]
        h, c = self.lstm(x[:, 0])
        h, c = self.lstm(x[:, 1], (h, c))
        g = self.gru(h)
        r = self.rnn(g)
        out, hn = self.rnn_full(x)
        return r + hn[0] + out[:, -1]


def test_cells_and_rnn(ctx, tmp_path):
    _need(ctx, "lstm_cell", "gru_cell", "rnn_cell", "rnn")
    torch.manual_seed(2)
    model = Cells()
    export_and_match(model, (torch.randn(3, 4, 4),), tmp_path, ctx)


class TransformerClassifier(nn.Module):
    """tokens + padding mask -> embedding + positions -> 2 encoder layers
    (src_key_padding_mask) -> mean over the tokens kept -> linear."""

    def __init__(self, vocab=40, d=16, seq=8, classes=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(1, seq, d) * 0.1)
        layer = nn.TransformerEncoderLayer(d, 4, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.fc = nn.Linear(d, classes)

    def forward(self, tokens, pad_mask):        # pad_mask: True where padding
        h = self.emb(tokens) * 4.0 + self.pos[:, :tokens.size(1)]
        h = self.encoder(h, src_key_padding_mask=pad_mask)
        keep = (~pad_mask).float().unsqueeze(-1)
        return self.fc((h * keep).sum(1) / keep.sum(1))


def test_transformer_classifier_with_padding_mask(ctx, tmp_path):
    _need(ctx, "embedding", "transformer_encoder")
    torch.manual_seed(3)
    model = TransformerClassifier()
    tokens = torch.randint(0, 40, (2, 8))
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[0, 6:] = True
    mask[1, 3:] = True
    doc = export_and_match(model, (tokens, mask), tmp_path, ctx)
    kids = {c["name"]: c for c in doc["root"]["children"]}
    assert kids["encoder"]["type"] == "transformer_encoder"
    assert kids["encoder"]["config"]["num_layers"] == 2
    assert "children" not in kids["encoder"]     # the layer makes them itself
    # src_mask left out: a 0-element tensor in its place
    assert any("absent" in n for n in doc["root"]["config"]["nodes"])


class MaskedFromTokens(nn.Module):
    """The padding mask made in forward from the tokens (a comparison: f32
    0/1 in nnmod, cast to bool for the attention), a causal mask made with
    generate_square_subsequent_mask (nnmod's is_causal), and attention with
    keyword arguments."""

    def __init__(self, d=16):
        super().__init__()
        self.emb = nn.Embedding(30, d)
        self.layer = nn.TransformerEncoderLayer(d, 2, 24, dropout=0.0, batch_first=True,
                                                norm_first=True, activation="gelu")
        self.attn = nn.MultiheadAttention(d, 4, batch_first=True)
        self.out = nn.Linear(d, 2)

    def forward(self, tokens):
        pad = tokens == 0
        h = self.emb(tokens)
        causal = nn.Transformer.generate_square_subsequent_mask(tokens.size(1))
        h = self.layer(h, src_mask=causal, src_key_padding_mask=pad)
        a, _ = self.attn(query=h, key=h, value=h, key_padding_mask=pad, need_weights=False)
        return self.out(a[:, 0])


def test_masks_made_in_forward(ctx, tmp_path):
    _need(ctx, "embedding", "transformer_encoder_layer", "multihead_attention")
    torch.manual_seed(4)
    model = MaskedFromTokens()
    tokens = torch.randint(1, 30, (2, 6))
    tokens[0, 4:] = 0
    doc = export_and_match(model, (tokens,), tmp_path, ctx)
    kids = {c["name"]: c for c in doc["root"]["children"]}
    assert kids["layer"]["config"]["is_causal"] is True
    assert kids["layer"]["config"]["activation"] == "gelu"
    assert "buffers" not in doc["root"]["config"]     # no constant mask saved


class Seq2Seq(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.tf = nn.Transformer(d, 2, num_encoder_layers=1, num_decoder_layers=2,
                                 dim_feedforward=20, dropout=0.0)
        self.head = nn.Linear(d, 5)

    def forward(self, src, tgt):
        mask = self.tf.generate_square_subsequent_mask(tgt.size(0))
        return self.head(self.tf(src, tgt, tgt_mask=mask))


def test_nn_transformer(ctx, tmp_path):
    _need(ctx, "transformer")
    torch.manual_seed(5)
    model = Seq2Seq()
    doc = export_and_match(model, (torch.randn(5, 2, 16), torch.randn(4, 2, 16)), tmp_path,
                           ctx)
    kids = {c["name"]: c for c in doc["root"]["children"]}
    assert kids["tf"]["type"] == "transformer"
    assert kids["tf"]["config"]["tgt_is_causal"] is True


def test_decoder_stack_with_memory_mask(ctx, tmp_path):
    _need(ctx, "transformer_decoder")

    class Dec(nn.Module):
        def __init__(self):
            super().__init__()
            self.dec = nn.TransformerDecoder(
                nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0), 2, norm=nn.LayerNorm(8))

        def forward(self, tgt, memory, memory_key_padding_mask):
            return self.dec(tgt, memory, memory_key_padding_mask=memory_key_padding_mask)

    torch.manual_seed(6)
    mk = torch.tensor([[False, False, True], [False, False, False]])
    export_and_match(Dec(), (torch.randn(4, 2, 8), torch.randn(3, 2, 8), mk), tmp_path, ctx)


def test_unsupported_attention_arguments_are_listed(ctx, tmp_path):
    _need(ctx, "multihead_attention")

    class A(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2)
            self.layer = nn.TransformerEncoderLayer(8, 2, 16, activation=torch.sigmoid)

        def forward(self, x):
            a, w = self.attn(x, x, x, average_attn_weights=False)
            return self.layer(a), w

    r = nnmod.torch.check(A(), torch.randn(3, 2, 8), ctx=ctx, verbose=False)
    text = str(r)
    assert not r.ok
    assert "average_attn_weights=False" in text
    assert "activation" in text and "'layer'" in text


class FunctionalDropout(nn.Module):
    def __init__(self, training_arg):
        super().__init__()
        self.fc = nn.Linear(64, 64)
        self.training_arg = training_arg

    def forward(self, x):
        h = self.fc(x)
        if self.training_arg == "self":
            return F.dropout(h, 0.5, training=self.training)
        if self.training_arg == "false":
            return F.dropout(h, 0.5, training=False) + F.dropout(h, 0.0)
        return F.dropout(h, 0.5)                 # PyTorch's default: also in eval


def test_functional_dropout_follows_training_argument(ctx, tmp_path):
    _need(ctx, "dropout")
    torch.manual_seed(7)
    x = torch.randn(8, 64)
    model = FunctionalDropout("self")
    manifest, _ = nnmod.torch.export(model, str(tmp_path / "d.json"), x, ctx=ctx)
    doc = json.load(open(manifest))
    assert [c["type"] for c in doc["root"]["children"]].count("dropout") == 1
    m = nnmod.from_manifest(manifest, ctx=ctx)
    with torch.no_grad():
        h = model.fc(x).numpy()
    m.train()
    with nnmod.no_grad():
        y = m(_nn(x, ctx)).numpy()
    dropped = y == 0
    assert 0.3 < dropped.mean() < 0.7                      # train: dropout
    np.testing.assert_allclose(y[~dropped], 2 * h[~dropped], rtol=1e-5, atol=1e-6)
    m.eval()
    with nnmod.no_grad():
        np.testing.assert_allclose(m(_nn(x, ctx)).numpy(), h, rtol=1e-5, atol=1e-6)
    del m

    model = FunctionalDropout("false")                       # training=False: nothing
    manifest, _ = nnmod.torch.export(model, str(tmp_path / "e.json"), x, ctx=ctx)
    doc = json.load(open(manifest))
    assert "dropout" not in [c["type"] for c in doc["root"]["children"]]

    with pytest.raises(nnmod.UnsupportedError, match="training=self.training"):
        nnmod.torch.export(FunctionalDropout("default"), str(tmp_path / "f.json"), x, ctx=ctx)


class PositionalEncoder(nn.Module):
    """Sizes that follow the sequence length: a learned position table cut to
    it, positions from torch.arange(T), a view over [N, T] and a causal mask
    of T x T."""

    def __init__(self, d=16, max_len=12):
        super().__init__()
        self.emb = nn.Embedding(40, d)
        self.pos = nn.Parameter(torch.randn(1, max_len, d) * 0.1)
        self.pos_emb = nn.Embedding(max_len, d)
        self.layer = nn.TransformerEncoderLayer(d, 2, 32, dropout=0.0, batch_first=True)
        self.fc = nn.Linear(d, 3)

    def forward(self, tokens, pad_mask):
        n, t = tokens.shape
        h = self.emb(tokens) + self.pos[:, :t] + self.pos_emb(torch.arange(t))
        causal = torch.triu(torch.full((t, t), float("-inf")), diagonal=1)
        h = self.layer(h, src_mask=causal, src_key_padding_mask=pad_mask)
        h = h.reshape(n * t, -1).view(n, t, -1)
        keep = (~pad_mask).float().unsqueeze(-1)
        return self.fc((h * keep).sum(1) / keep.sum(1))


def test_dynamic_sequence_length(ctx, tmp_path):
    _need(ctx, "embedding", "transformer_encoder_layer", "arange")
    torch.manual_seed(8)
    model = PositionalEncoder()

    def inputs(n, t):
        tokens = torch.randint(0, 40, (n, t))
        mask = torch.zeros(n, t, dtype=torch.bool)
        mask[0, t - 2:] = True
        return tokens, mask

    # exported at [2, 8]; runs at other batch sizes and sequence lengths
    doc = export_and_match(model, inputs(2, 8), tmp_path, ctx, dynamic_dims=[0, 1],
                           more=[inputs(5, 3), inputs(1, 12), inputs(3, 10)])
    text = json.dumps(doc)
    assert "from_input" in text and "index_select" in text


def test_dynamic_dims_are_checked(ctx, tmp_path):
    with pytest.raises(ValueError, match="no dim 2"):
        nnmod.torch.export(nn.Linear(3, 3), str(tmp_path / "l.json"), torch.randn(2, 3),
                           ctx=ctx, dynamic_dims={0: [0, 2]})
    # without dynamic_dims the sequence length is the example's: said, not wrong
    _need(ctx, "embedding", "transformer_encoder_layer", "arange")
    model = PositionalEncoder()
    tokens = torch.randint(0, 40, (2, 8))
    mask = torch.zeros(2, 8, dtype=torch.bool)
    manifest, _ = nnmod.torch.export(model, str(tmp_path / "p.json"), (tokens, mask), ctx=ctx)
    m = nnmod.from_manifest(manifest, ctx=ctx).eval()
    with pytest.raises(nnmod.Error):
        m(_nn(tokens[:, :5], ctx), _nn(mask[:, :5], ctx))
    del m


def test_transformer_with_custom_encoder_is_traced(ctx, tmp_path):
    _need(ctx, "transformer_decoder")

    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(8, 8)

        def forward(self, src, mask=None, src_key_padding_mask=None):
            return torch.tanh(self.l(src))

    torch.manual_seed(9)
    tf = nn.Transformer(8, 2, 1, 1, 16, dropout=0.0, custom_encoder=Enc())
    doc = export_and_match(tf, (torch.randn(3, 2, 8), torch.randn(4, 2, 8)), tmp_path, ctx)
    kids = {c["name"]: c["type"] for c in doc["root"]["children"]}
    assert doc["root"]["type"] == "graph"
    assert kids == {"encoder": "graph", "decoder": "transformer_decoder"}


class NonPersistent(nn.Module):
    """Buffers registered with persistent=False (not in PyTorch's state
    dict), as Hugging Face models keep position ids and causal masks."""

    def __init__(self, d=8, n=10):
        super().__init__()
        self.emb = nn.Embedding(20, d)
        self.pos = nn.Embedding(n, d)
        self.register_buffer("position_ids", torch.arange(n).expand(1, -1), persistent=False)
        self.register_buffer("causal", torch.tril(torch.ones(n, n, dtype=torch.bool))
                             .view(1, 1, n, n), persistent=False)
        self.register_buffer("scale", torch.full((1,), 0.5), persistent=False)
        self.q = nn.Linear(d, d)

    def forward(self, tokens):
        t = tokens.size(1)
        h = self.emb(tokens) + self.pos(self.position_ids[:, :t])
        q = self.q(h)
        s = (q @ h.transpose(-1, -2)).unsqueeze(1) * self.scale
        s = s.masked_fill(~self.causal[:, :, :t, :t], float("-inf"))
        return (s.softmax(-1) @ h.unsqueeze(1)).squeeze(1)


def test_non_persistent_buffers_are_computed(ctx, tmp_path):
    _need(ctx, "embedding", "arange", "tril")
    torch.manual_seed(10)
    model = NonPersistent()
    tokens = torch.randint(0, 20, (2, 6))
    doc = export_and_match(model, (tokens,), tmp_path, ctx)
    assert "buffers" not in doc["root"]["config"]
    m = nnmod.from_manifest(str(tmp_path / "m.json"), ctx=ctx)
    assert set(m.state_dict()) == set(model.state_dict())      # PyTorch's keys
    del m
