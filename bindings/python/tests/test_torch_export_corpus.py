"""A corpus of modules users write (the shapes of tutorials, papers' reference
code and the models people copy), none of them already in test_zoo.py,
test_torch_export_user.py, test_torch_export_more.py or test_torch_seq.py,
exported with nnmod.torch.export and compared with PyTorch:

  * export with check=True (the exporter's own comparison);
  * eval outputs at the example and at other sizes (batch, length, image);
  * MODULE BY MODULE: every module PyTorch calls whose path nnmod's tree has
    (forward hooks on both sides), its first call's outputs;
  * `nnm run` on the manifest with the same inputs (`--input-file`,
    `--output`), where the tool is built;
  * one train step: the loss and every parameter's gradient.

What the exporter cannot hold yet is an expected failure (xfail) whose reason
is the exporter's own message, which must name the op and the module path.
Skipped without torch; small models (the file runs in a minute or two on one
loaded core)."""
import math
import os
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = nn.functional

import nnmod  # noqa: E402
import nnmod.torch  # noqa: E402
from nnmod._safetensors import load_safetensors, save_safetensors  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
FIGURES = {}      # name -> (eval error, modules compared, train error)


def _flat(y):
    if isinstance(y, dict):
        return [t for v in y.values() for t in _flat(v)]
    if isinstance(y, (tuple, list)):
        return [t for v in y for t in _flat(v)]
    return [y] if isinstance(y, torch.Tensor) else []


def _flat_n(y):
    if isinstance(y, dict):
        return [t for v in y.values() for t in _flat_n(v)]
    if isinstance(y, (tuple, list)):
        return [t for v in y for t in _flat_n(v)]
    return [y]


def _nn(x, ctx):
    return nnmod.tensor(x.numpy(), ctx=ctx)


def _close(g, w):
    if g.shape != w.shape:
        return False, float("nan")
    if w.size == 0:
        return True, 0.0
    w = w.astype(np.float64)
    g = g.astype(np.float64)
    if not np.all(np.isfinite(g) == np.isfinite(w)):
        return False, float("inf")
    fin = np.isfinite(w)
    scale = float(np.max(np.abs(w[fin]))) if fin.any() else 0.0
    err = float(np.max(np.abs(np.where(fin, g - w, 0.0))))
    return err <= ATOL + RTOL * scale, err


def _nnm_exe():
    exe = os.environ.get("NNM_EXE")
    if exe:
        return exe
    from nnmod import _lib
    cand = os.path.normpath(os.path.join(os.path.dirname(_lib.path), "..", "bin", "nnm"))
    return cand if os.path.isfile(cand) and os.access(cand, os.X_OK) else None


def module_by_module(model, m, xs, ctx):
    """Every module's first-call outputs, PyTorch's against nnmod's, for the
    paths both have. Returns how many modules were compared."""
    want, order = {}, []

    def th(mod, args, out, name):
        if name not in want:
            want[name] = [t.detach().numpy().copy() for t in _flat(out)]
            order.append(name)

    hs = [mod.register_forward_hook(lambda mod, a, o, n=n: th(mod, a, o, n))
          for n, mod in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(*xs)
    finally:
        for h in hs:
            h.remove()
    got = {}

    def nh(mod, args, out):
        p = mod.path
        if p in want and p not in got:
            got[p] = [t.numpy().copy() for t in _flat_n(out)
                      if isinstance(t, nnmod.Tensor)]

    h = nnmod.register_module_forward_hook(nh, ctx=ctx)
    try:
        with nnmod.no_grad():
            m(*[_nn(x, ctx) for x in _flat(xs)])
    finally:
        h.remove()
    n = 0
    for name in order:
        if name not in got:
            continue
        w, g = want[name], got[name]
        k = min(len(w), len(g))
        assert k or not w, f"module '{name}': PyTorch gives {len(w)} outputs, nnmod {len(g)}"
        for i in range(k):
            ok, err = _close(g[i], w[i].astype(np.float32) if w[i].dtype == np.float64
                             else w[i])
            assert ok, (f"module '{name}' output {i}: shapes {list(w[i].shape)} vs "
                        f"{list(g[i].shape)}, max abs error {err}")
        n += 1
    return n


def nnm_run(manifest, xs, want, tmp_path, ctx):
    """`nnm run` on the manifest with xs as input files; its outputs against
    PyTorch's (want: numpy arrays)."""
    exe = _nnm_exe()
    if exe is None:
        return False
    inp = str(tmp_path / "inputs.safetensors")
    out = str(tmp_path / "outputs.safetensors")
    arrays = {}
    for i, x in enumerate(_flat(xs)):
        a = x.numpy()
        if a.dtype not in (np.float32, np.int64, np.bool_):
            a = a.astype(np.float32 if np.issubdtype(a.dtype, np.floating) else np.int64)
        arrays[f"x{i}"] = np.ascontiguousarray(a)
    save_safetensors(arrays, inp, ctx=ctx)
    cmd = [exe, "run", "--eval", "--outputs", str(len(want)), "--output", out]
    for k in arrays:
        cmd += ["--input-file", f"{inp}:{k}"]
    cmd.append(manifest)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"nnm run failed: {r.stderr}"
    res = load_safetensors(out, ctx=ctx)
    assert len(res) == len(want), sorted(res)
    keys = [f"output_{i}" for i in range(len(want))]       # (the file's order is its own)
    if not all(k in res for k in keys):
        import json
        keys = json.load(open(manifest))["root"]["config"]["output_names"]   # a dict output
    got = [res[k] for k in keys]
    for g, w in zip(got, want):
        g = g.numpy()
        if w.dtype == np.bool_:
            g = g.astype(np.bool_)
        ok, err = _close(g, w)
        assert ok, f"nnm run output: max abs error {err}"
    return True


def roundtrip(model, xs, tmp_path, ctx, train=True, more=(), name=None, grad_tol=1e-4,
              train_in_eval=False, cli=True, **kw):
    """Export, then eval (example and `more`), module by module, nnm run and
    one train step against PyTorch. Returns the manifest path."""
    name = name or type(model).__name__
    xs = xs if isinstance(xs, tuple) else (xs,)
    model.eval()
    manifest, _ = nnmod.torch.export(model, str(tmp_path / "m.json"), xs, ctx=ctx, **kw)
    m = nnmod.from_manifest(manifest, ctx=ctx)
    m.eval()
    e_eval = 0.0
    first_want = None
    for inputs in (xs,) + tuple(more):
        with torch.no_grad():
            want = [w.numpy() for w in _flat(model(*inputs))]
        if first_want is None:
            first_want = want
        if len(want) > 1 and m.layer_type != "graph":
            m.n_outputs = len(want)
        with nnmod.no_grad():
            got = [g.numpy() for g in _flat_n(m(*[_nn(x, ctx) for x in _flat(inputs)]))]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            if w.dtype == np.bool_:
                g = g.astype(np.bool_)
            ok, err = _close(g, w)
            assert ok, f"output differs at shapes {[list(x.shape) for x in _flat(inputs)]}: {err}"
            e_eval = max(e_eval, err)
    n_mod = module_by_module(model, m, xs, ctx)
    if cli:
        nnm_run(manifest, xs, first_want, tmp_path, ctx)
    e_train = None
    if train:
        model.train(not train_in_eval)
        model.zero_grad()
        outs_t = _flat(model(*xs))
        floats = [y.is_floating_point() for y in outs_t]
        loss_t = sum((y * y).mean() for y, f in zip(outs_t, floats) if f)
        loss_t.backward()
        m.train(not train_in_eval)
        m.zero_grad()
        ys = [y for y, f in zip(_flat_n(m(*[_nn(x, ctx) for x in _flat(xs)])), floats) if f]
        loss_n = (ys[0] * ys[0]).mean()
        for y in ys[1:]:
            loss_n = loss_n + (y * y).mean()
        loss_n.backward()
        e_loss = abs(float(loss_n.numpy()) - float(loss_t)) / max(1.0, abs(float(loss_t)))
        assert e_loss <= 1e-5, f"loss {float(loss_n.numpy())} vs {float(loss_t)}"
        grads = {n: p.grad.numpy() for n, p in m.named_parameters() if p.grad is not None}
        # a parameter under several names (a module registered twice): any
        # of PyTorch's names will do
        names = {}
        for mn, mod in model.named_modules(remove_duplicate=False):
            for n, p in mod._parameters.items():
                if p is not None:
                    names.setdefault(id(p), []).append(f"{mn}.{n}" if mn else n)
        want_g = {}
        for n, p in model.named_parameters():
            if p.grad is not None:
                n = next((a for a in names[id(p)] if a in grads), n)
                want_g[n] = p.grad.numpy()
        assert set(want_g) <= set(grads), sorted(set(want_g) - set(grads))
        # nnmod must not give gradients PyTorch does not (torch.no_grad, detach)
        extra = {n for n, g in grads.items() if n not in want_g and np.any(g != 0)}
        assert not extra, f"gradients PyTorch does not compute: {sorted(extra)}"
        scale = max([float(np.max(np.abs(g))) for g in want_g.values()] + [1e-12])
        e_train = 0.0
        for n, g in want_g.items():
            err = float(np.max(np.abs(grads[n] - g))) / scale
            e_train = max(e_train, err)
            assert err < grad_tol, f"gradient of {n}: {err:.2e} of the largest"
        del ys, loss_n, grads
        model.eval()
    FIGURES[name] = (e_eval, n_mod, e_train)
    del m
    return manifest


def attempt(model, xs, tmp_path, ctx, needles=(), **kw):
    """roundtrip, or an expected failure carrying the exporter's message,
    which must name every needle (the op, the module path)."""
    try:
        return roundtrip(model, xs, tmp_path, ctx, **kw)
    except nnmod.UnsupportedError as e:
        msg = str(e)
        for s in needles:
            assert s in msg, msg
        pytest.xfail(msg)


def _refused(model, xs, ctx, *needles, **kw):
    with pytest.raises(nnmod.UnsupportedError) as e:
        nnmod.torch.export(model, "/nonexistent-dir/never.json", xs, ctx=ctx, **kw)
    for s in needles:
        assert s in str(e.value), str(e.value)
    return str(e.value)


def tokens(n, t, vocab, pad_tail=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, vocab, (n, t), generator=g)
    if pad_tail and n > 1:
        x[1, t - 2:] = 0
    return x


# ---- language models ---------------------------------------------------------

class RNNModel(nn.Module):
    """pytorch/examples word_language_model: embedding, a seq-first LSTM or GRU
    with the hidden state in and out, a decoder tied to the embedding."""

    def __init__(self, rnn_type="LSTM", ntoken=23, ninp=16, nhid=16, nlayers=2, dropout=0.2):
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.decoder.weight = self.encoder.weight

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        decoded = decoded.view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden


def test_word_language_model_lstm(ctx, tmp_path):
    torch.manual_seed(0)
    model = RNNModel("LSTM")
    x = tokens(7, 3, 23, pad_tail=False)           # [T, N]
    h = (torch.zeros(2, 3, 16), torch.randn(2, 3, 16))
    more = ((tokens(5, 4, 23, seed=1), (torch.randn(2, 4, 16), torch.randn(2, 4, 16))),)
    roundtrip(model, (x, h), tmp_path, ctx, more=more, train_in_eval=True,
              dynamic_dims={0: [0, 1], 1: 1, 2: 1})


def test_word_language_model_gru(ctx, tmp_path):
    torch.manual_seed(1)
    model = RNNModel("GRU", dropout=0.0)
    x = tokens(6, 2, 23, pad_tail=False)
    h = torch.randn(2, 2, 16)
    roundtrip(model, (x, h), tmp_path, ctx, more=((tokens(9, 5, 23), torch.randn(2, 5, 16)),),
              dynamic_dims={0: [0, 1], 1: 1})


class CharLM(nn.Module):
    """A char-level LM with the state made in forward (`weight.new_zeros`)
    when none is given, batch_first."""

    def __init__(self, vocab=30, hidden=24):
        super().__init__()
        self.embed = nn.Embedding(vocab, 12, padding_idx=0)
        self.lstm = nn.LSTM(12, hidden, num_layers=1, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x):
        w = self.head.weight
        h0 = w.new_zeros(1, x.size(0), self.lstm.hidden_size)
        c0 = w.new_zeros(1, x.size(0), self.lstm.hidden_size)
        out, _ = self.lstm(self.embed(x), (h0, c0))
        return self.head(out)


def test_char_lm_state_made_in_forward(ctx, tmp_path):
    torch.manual_seed(2)
    roundtrip(CharLM(), tokens(2, 9, 30), tmp_path, ctx, dynamic_dims=[0, 1],
              more=((tokens(4, 5, 30),),))


class LastStepClassifier(nn.Module):
    """A padded batch through a GRU, each sequence's last real output picked
    by its length (what the exporter's packed-sequence refusal suggests)."""

    def __init__(self, how="gather"):
        super().__init__()
        self.how = how
        self.emb = nn.Embedding(20, 8, padding_idx=0)
        self.gru = nn.GRU(8, 12, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(24, 3)

    def forward(self, x, lengths):
        h, _ = self.gru(self.emb(x))
        if self.how == "gather":
            idx = (lengths - 1).view(-1, 1, 1).expand(-1, 1, h.size(2))
            last = h.gather(1, idx).squeeze(1)
        elif self.how == "index":
            last = h[torch.arange(h.size(0)), lengths - 1]
        else:  # masked mean
            mask = (x != 0).unsqueeze(-1).float()
            last = (h * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.fc(last)


@pytest.mark.parametrize("how", ["gather", "index", "masked_mean"])
def test_last_step_by_length(ctx, tmp_path, how):
    torch.manual_seed(3)
    x = tokens(3, 6, 20)
    lengths = torch.tensor([6, 4, 6])
    attempt(LastStepClassifier(how), (x, lengths), tmp_path, ctx, name=f"last_step_{how}",
            needles=("'<root>'",))


# ---- seq2seq with attention (PyTorch's translation tutorial) --------------

class EncoderRNN(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)

    def forward(self, input):
        output, hidden = self.gru(self.embedding(input))
        return output, hidden


class BahdanauAttention(nn.Module):
    def __init__(self, hidden_size):
        super().__init__()
        self.Wa = nn.Linear(hidden_size, hidden_size)
        self.Ua = nn.Linear(hidden_size, hidden_size)
        self.Va = nn.Linear(hidden_size, 1)

    def forward(self, query, keys):
        scores = self.Va(torch.tanh(self.Wa(query) + self.Ua(keys)))
        scores = scores.squeeze(2).unsqueeze(1)
        weights = F.softmax(scores, dim=-1)
        context = torch.bmm(weights, keys)
        return context, weights


SOS = 1


class AttnDecoderRNN(nn.Module):
    def __init__(self, hidden_size, output_size, max_length=4):
        super().__init__()
        self.max_length = max_length
        self.embedding = nn.Embedding(output_size, hidden_size)
        self.attention = BahdanauAttention(hidden_size)
        self.gru = nn.GRU(2 * hidden_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, output_size)

    def forward(self, encoder_outputs, encoder_hidden, target_tensor=None):
        batch_size = encoder_outputs.size(0)
        decoder_input = torch.empty(batch_size, 1, dtype=torch.long).fill_(SOS)
        decoder_hidden = encoder_hidden
        decoder_outputs, attentions = [], []
        for i in range(self.max_length):
            decoder_output, decoder_hidden, attn_weights = self.forward_step(
                decoder_input, decoder_hidden, encoder_outputs)
            decoder_outputs.append(decoder_output)
            attentions.append(attn_weights)
            if target_tensor is not None:
                decoder_input = target_tensor[:, i].unsqueeze(1)
            else:
                _, topi = decoder_output.topk(1)
                decoder_input = topi.squeeze(-1).detach()
        decoder_outputs = F.log_softmax(torch.cat(decoder_outputs, dim=1), dim=-1)
        attentions = torch.cat(attentions, dim=1)
        return decoder_outputs, decoder_hidden, attentions

    def forward_step(self, input, hidden, encoder_outputs):
        embedded = self.embedding(input)
        query = hidden.permute(1, 0, 2)
        context, attn_weights = self.attention(query, encoder_outputs)
        input_gru = torch.cat((embedded, context), dim=2)
        output, hidden = self.gru(input_gru, hidden)
        return self.out(output), hidden, attn_weights


class AttnSeq2Seq(nn.Module):
    def __init__(self, greedy=False):
        super().__init__()
        self.greedy = greedy
        self.encoder = EncoderRNN(15, 16)
        self.decoder = AttnDecoderRNN(16, 13)

    def forward(self, src, tgt):
        enc_out, enc_hidden = self.encoder(src)
        return self.decoder(enc_out, enc_hidden, None if self.greedy else tgt)


def test_attention_seq2seq_teacher_forcing(ctx, tmp_path):
    torch.manual_seed(4)
    src, tgt = tokens(2, 7, 15, pad_tail=False), tokens(2, 4, 13, pad_tail=False)
    attempt(AttnSeq2Seq(), (src, tgt), tmp_path, ctx,
            more=((tokens(3, 5, 15, seed=3), tokens(3, 4, 13, seed=4)),),
            dynamic_dims={0: [0, 1], 1: 0}, needles=("decoder",))


def test_attention_seq2seq_greedy(ctx, tmp_path):
    torch.manual_seed(5)
    src, tgt = tokens(2, 7, 15, pad_tail=False), tokens(2, 4, 13, pad_tail=False)
    attempt(AttnSeq2Seq(greedy=True), (src, tgt), tmp_path, ctx, name="seq2seq_greedy",
            more=((tokens(3, 7, 15, seed=3), tokens(3, 4, 13, seed=4)),),
            needles=("decoder",))


# ---- a transformer written from scratch ------------------------------------

class MultiHeadedAttention(nn.Module):
    def __init__(self, h, d_model, dropout=0.1):
        super().__init__()
        self.d_k = d_model // h
        self.h = h
        self.linears = nn.ModuleList([nn.Linear(d_model, d_model) for _ in range(4)])
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, query, key, value, mask=None):
        if mask is not None:
            mask = mask.unsqueeze(1)
        nbatches = query.size(0)
        query, key, value = [lin(x).view(nbatches, -1, self.h, self.d_k).transpose(1, 2)
                             for lin, x in zip(self.linears, (query, key, value))]
        scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(self.d_k)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        p_attn = self.dropout(scores.softmax(dim=-1))
        x = torch.matmul(p_attn, value)
        x = x.transpose(1, 2).contiguous().view(nbatches, -1, self.h * self.d_k)
        return self.linears[-1](x)


class PositionalEncoding(nn.Module):
    def __init__(self, d_model, max_len=64):
        super().__init__()
        pe = torch.zeros(max_len, d_model)
        position = torch.arange(0, max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * -(math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(0))

    def forward(self, x):
        return x + self.pe[:, : x.size(1)].requires_grad_(False)


class SublayerConnection(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.norm = nn.LayerNorm(size)

    def forward(self, x, sublayer):
        return x + sublayer(self.norm(x))


class EncoderLayer(nn.Module):
    def __init__(self, d, h, ff):
        super().__init__()
        self.self_attn = MultiHeadedAttention(h, d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.ReLU(), nn.Linear(ff, d))
        self.sublayer = nn.ModuleList([SublayerConnection(d) for _ in range(2)])

    def forward(self, x, mask):
        x = self.sublayer[0](x, lambda x: self.self_attn(x, x, x, mask))
        return self.sublayer[1](x, self.ff)


class DecoderLayer(nn.Module):
    def __init__(self, d, h, ff):
        super().__init__()
        self.self_attn = MultiHeadedAttention(h, d)
        self.src_attn = MultiHeadedAttention(h, d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))
        self.sublayer = nn.ModuleList([SublayerConnection(d) for _ in range(3)])

    def forward(self, x, memory, src_mask, tgt_mask):
        m = memory
        x = self.sublayer[0](x, lambda x: self.self_attn(x, x, x, tgt_mask))
        x = self.sublayer[1](x, lambda x: self.src_attn(x, m, m, src_mask))
        return self.sublayer[2](x, self.ff)


class ScratchTransformer(nn.Module):
    """The Annotated Transformer's shape: padding masks from the tokens, a
    causal mask made with torch.tril(torch.ones(T, T)), sinusoidal positions
    in a buffer cut to the length, pre-norm residuals through lambdas."""

    def __init__(self, src_vocab=17, tgt_vocab=19, d=16, h=4, ff=32, n=2):
        super().__init__()
        self.d = d
        self.src_embed = nn.Embedding(src_vocab, d)
        self.tgt_embed = nn.Embedding(tgt_vocab, d)
        self.pos = PositionalEncoding(d)
        self.encoder = nn.ModuleList([EncoderLayer(d, h, ff) for _ in range(n)])
        self.decoder = nn.ModuleList([DecoderLayer(d, h, ff) for _ in range(n)])
        self.enc_norm = nn.LayerNorm(d)
        self.dec_norm = nn.LayerNorm(d)
        self.generator = nn.Linear(d, tgt_vocab)

    def forward(self, src, tgt):
        src_mask = (src != 0).unsqueeze(-2)
        size = tgt.size(1)
        subsequent = torch.tril(torch.ones((1, size, size))).type(torch.uint8)
        tgt_mask = (tgt != 0).unsqueeze(-2) & (subsequent == 1)
        x = self.pos(self.src_embed(src) * math.sqrt(self.d))
        for layer in self.encoder:
            x = layer(x, src_mask)
        memory = self.enc_norm(x)
        y = self.pos(self.tgt_embed(tgt) * math.sqrt(self.d))
        for layer in self.decoder:
            y = layer(y, memory, src_mask, tgt_mask)
        return F.log_softmax(self.generator(self.dec_norm(y)), dim=-1)


def test_transformer_from_scratch(ctx, tmp_path):
    torch.manual_seed(6)
    model = ScratchTransformer()
    for mod in model.modules():
        if isinstance(mod, nn.Dropout):
            mod.p = 0.0
    src, tgt = tokens(2, 7, 17), tokens(2, 5, 19, seed=1)
    attempt(model, (src, tgt), tmp_path, ctx, dynamic_dims=[0, 1],
            more=((tokens(3, 9, 17, seed=2), tokens(3, 4, 19, seed=3)),),
            needles=("<root>",))


class TorchAttentionBothWays(nn.Module):
    """nn.MultiheadAttention with key_padding_mask and a float attn_mask,
    and an nn.TransformerDecoder with tgt_mask and memory_key_padding_mask,
    in either layout."""

    def __init__(self, batch_first, d=16):
        super().__init__()
        self.batch_first = batch_first
        self.emb = nn.Embedding(21, d)
        self.attn = nn.MultiheadAttention(d, 4, batch_first=batch_first)
        layer = nn.TransformerDecoderLayer(d, 2, 32, dropout=0.0, batch_first=batch_first)
        self.dec = nn.TransformerDecoder(layer, 2)
        self.out = nn.Linear(d, 21)

    def forward(self, src, tgt):
        pad = src == 0                                   # [N, S]
        s = self.emb(src)
        t = self.emb(tgt)
        if not self.batch_first:
            s, t = s.transpose(0, 1), t.transpose(0, 1)
        mem, _ = self.attn(s, s, s, key_padding_mask=pad)
        causal = nn.Transformer.generate_square_subsequent_mask(tgt.size(1))
        y = self.dec(t, mem, tgt_mask=causal, memory_key_padding_mask=pad)
        if not self.batch_first:
            y = y.transpose(0, 1)
        return self.out(y)


@pytest.mark.parametrize("batch_first", [True, False])
def test_torch_attention_both_layouts(ctx, tmp_path, batch_first):
    torch.manual_seed(7)
    src, tgt = tokens(2, 7, 21), tokens(2, 5, 21, pad_tail=False, seed=1)
    roundtrip(TorchAttentionBothWays(batch_first), (src, tgt), tmp_path, ctx,
              name=f"torch_attention_bf{int(batch_first)}", dynamic_dims=[0, 1],
              more=((tokens(3, 9, 21, seed=2), tokens(3, 4, 21, pad_tail=False, seed=3)),))


class MiniBert(nn.Module):
    """Hugging Face's shape: word + position (a non-persistent position_ids
    buffer cut to the length) + token type embeddings, LayerNorm, an
    extended attention mask `(1.0 - mask[:, None, None, :]) * finfo.min`,
    an encoder of its own and a tanh pooler over [CLS]."""

    def __init__(self, vocab=31, d=16, heads=2, layers=2, max_pos=32):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, d, padding_idx=0)
        self.position_embeddings = nn.Embedding(max_pos, d)
        self.token_type_embeddings = nn.Embedding(2, d)
        self.LayerNorm = nn.LayerNorm(d, eps=1e-12)
        self.register_buffer("position_ids", torch.arange(max_pos).expand((1, -1)),
                             persistent=False)
        self.heads = heads
        self.qkv = nn.ModuleList([nn.Linear(d, 3 * d) for _ in range(layers)])
        self.o = nn.ModuleList([nn.Linear(d, d) for _ in range(layers)])
        self.ln1 = nn.ModuleList([nn.LayerNorm(d, eps=1e-12) for _ in range(layers)])
        self.ffn = nn.ModuleList([nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(),
                                                nn.Linear(4 * d, d)) for _ in range(layers)])
        self.ln2 = nn.ModuleList([nn.LayerNorm(d, eps=1e-12) for _ in range(layers)])
        self.pooler = nn.Linear(d, d)

    def forward(self, input_ids, attention_mask, token_type_ids):
        n, t = input_ids.shape
        pos = self.position_ids[:, :t]
        h = self.word_embeddings(input_ids) + self.position_embeddings(pos) + \
            self.token_type_embeddings(token_type_ids)
        h = self.LayerNorm(h)
        ext = (1.0 - attention_mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
        for qkv, o, ln1, ffn, ln2 in zip(self.qkv, self.o, self.ln1, self.ffn, self.ln2):
            q, k, v = qkv(h).split(h.size(-1), dim=-1)
            q, k, v = [a.view(n, t, self.heads, -1).permute(0, 2, 1, 3) for a in (q, k, v)]
            s = q @ k.transpose(-1, -2) / math.sqrt(q.size(-1)) + ext
            a = (s.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(n, t, -1)
            h = ln1(h + o(a))
            h = ln2(h + ffn(h))
        return h, torch.tanh(self.pooler(h[:, 0]))


def test_mini_bert(ctx, tmp_path):
    torch.manual_seed(8)
    ids = tokens(2, 7, 31)
    mask = (ids != 0).long()
    types = torch.zeros_like(ids)
    types[:, 4:] = 1
    ids2 = tokens(3, 5, 31, seed=9)
    roundtrip(MiniBert(), (ids, mask, types), tmp_path, ctx, dynamic_dims=[0, 1],
              more=((ids2, (ids2 != 0).long(), torch.ones_like(ids2)),))


class GPTWithLoss(nn.Module):
    """nanoGPT's `forward(idx, targets)`: the loss computed in forward with
    F.cross_entropy(..., ignore_index=-1)."""

    def __init__(self, vocab=19, d=16):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.block = nn.TransformerEncoderLayer(d, 2, 32, dropout=0.0, batch_first=True,
                                                norm_first=True, activation="gelu")
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.wte.weight = self.lm_head.weight

    def forward(self, idx, targets):
        t = idx.size(1)
        mask = torch.triu(torch.full((t, t), float("-inf")), diagonal=1)
        x = self.ln_f(self.block(self.wte(idx), src_mask=mask))
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                               ignore_index=-1)
        return logits, loss


def test_loss_computed_in_forward(ctx, tmp_path):
    torch.manual_seed(9)
    idx = tokens(2, 6, 19, pad_tail=False)
    tgt = tokens(2, 6, 19, pad_tail=False, seed=1)
    tgt[0, :2] = -1
    attempt(GPTWithLoss(), (idx, tgt), tmp_path, ctx, dynamic_dims=[0, 1],
            more=((tokens(3, 4, 19, seed=2), tokens(3, 4, 19, seed=3)),),
            needles=("cross_entropy", "'<root>'"))


# ---- image models ------------------------------------------------------------

class SinusoidalPosEmb(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, t):
        half = self.dim // 2
        emb = math.log(10000) / (half - 1)
        emb = torch.exp(torch.arange(half, device=t.device) * -emb)
        emb = t[:, None] * emb[None, :]
        return torch.cat((emb.sin(), emb.cos()), dim=-1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, tdim, groups=4):
        super().__init__()
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(tdim, cout))
        self.block1 = nn.Sequential(nn.GroupNorm(groups, cin), nn.SiLU(),
                                    nn.Conv2d(cin, cout, 3, padding=1))
        self.block2 = nn.Sequential(nn.GroupNorm(groups, cout), nn.SiLU(),
                                    nn.Conv2d(cout, cout, 3, padding=1))
        self.res = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, t):
        h = self.block1(x)
        h = h + self.mlp(t)[:, :, None, None]
        h = self.block2(h)
        return h + self.res(x)


class LinearAttention(nn.Module):
    def __init__(self, dim, heads=2, dim_head=8):
        super().__init__()
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.norm = nn.GroupNorm(1, dim)
        self.to_qkv = nn.Conv2d(dim, heads * dim_head * 3, 1, bias=False)
        self.to_out = nn.Conv2d(heads * dim_head, dim, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        qkv = self.to_qkv(self.norm(x)).chunk(3, dim=1)
        q, k, v = [t.reshape(b, self.heads, -1, h * w) for t in qkv]
        q = q.softmax(dim=-2) * self.scale
        k = k.softmax(dim=-1)
        context = torch.einsum("b h d n, b h e n -> b h d e", k, v)
        out = torch.einsum("b h d e, b h d n -> b h e n", context, q)
        out = out.reshape(b, -1, h, w)
        return self.to_out(out) + x


class DiffusionUNet(nn.Module):
    """A DDPM-style denoiser: sinusoidal time embedding made in forward,
    GroupNorm/SiLU residual blocks taking the time, einsum linear attention,
    strided-conv downsampling, nearest upsampling, skip concatenation."""

    def __init__(self, ch=8, tdim=16):
        super().__init__()
        self.time_mlp = nn.Sequential(SinusoidalPosEmb(ch), nn.Linear(ch, tdim), nn.GELU(),
                                      nn.Linear(tdim, tdim))
        self.init_conv = nn.Conv2d(3, ch, 3, padding=1)
        self.down1 = ResBlock(ch, ch, tdim)
        self.downsample = nn.Conv2d(ch, 2 * ch, 4, 2, 1)
        self.mid = ResBlock(2 * ch, 2 * ch, tdim)
        self.attn = LinearAttention(2 * ch)
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                nn.Conv2d(2 * ch, ch, 3, padding=1))
        self.up1 = ResBlock(2 * ch, ch, tdim)
        self.final = nn.Conv2d(ch, 3, 1)

    def forward(self, x, time):
        t = self.time_mlp(time)
        x = self.init_conv(x)
        h1 = self.down1(x, t)
        h = self.mid(self.downsample(h1), t)
        h = self.attn(h)
        h = self.up(h)
        h = self.up1(torch.cat((h, h1), dim=1), t)
        return self.final(h)


def test_diffusion_unet(ctx, tmp_path):
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("the first tries (odd image sizes) make torch throw, which aborts under a "
                    "preloaded libasan")
    torch.manual_seed(10)
    x, t = torch.randn(2, 3, 8, 12), torch.tensor([3.0, 250.0])
    roundtrip(DiffusionUNet(), (x, t), tmp_path, ctx, dynamic_dims={0: [0, 2, 3], 1: 0},
              more=((torch.randn(3, 3, 12, 8), torch.tensor([1.0, 2.0, 999.0])),))


class CycleResnetBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim))

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's generator: reflection padding, instance norm, strided
    convolutions, transposed convolutions with output_padding, tanh."""

    def __init__(self, ngf=8, n_blocks=2):
        super().__init__()
        model = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), nn.InstanceNorm2d(ngf),
                 nn.ReLU(True)]
        for i in range(2):
            m = 2 ** i
            model += [nn.Conv2d(ngf * m, ngf * m * 2, 3, stride=2, padding=1),
                      nn.InstanceNorm2d(ngf * m * 2), nn.ReLU(True)]
        model += [CycleResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):
            m = 2 ** (2 - i)
            model += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, stride=2, padding=1,
                                         output_padding=1),
                      nn.InstanceNorm2d(ngf * m // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, input):
        return self.model(input)


class PatchDiscriminator(nn.Module):
    def __init__(self, ndf=8):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.InstanceNorm2d(ndf * 2, affine=True),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 4, 1, 1, padding_mode="reflect"))

    def forward(self, x):
        return self.model(x)


def test_cyclegan(ctx, tmp_path):
    torch.manual_seed(11)
    roundtrip(ResnetGenerator(), torch.randn(1, 3, 16, 16), tmp_path, ctx,
              more=((torch.randn(2, 3, 16, 16),),), name="cyclegan_generator")
    d = tmp_path / "d"
    d.mkdir()
    roundtrip(PatchDiscriminator(), torch.randn(2, 3, 16, 16), d, ctx,
              name="patchgan_discriminator")


class SNDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        sn = nn.utils.spectral_norm
        self.net = nn.Sequential(sn(nn.Conv2d(3, 8, 3, 2, 1)), nn.LeakyReLU(0.1),
                                 sn(nn.Conv2d(8, 16, 3, 2, 1)), nn.LeakyReLU(0.1))
        self.fc = sn(nn.Linear(16 * 4 * 4, 1))

    def forward(self, x):
        return self.fc(self.net(x).flatten(1))


def test_spectral_norm_discriminator(ctx, tmp_path):
    torch.manual_seed(12)
    attempt(SNDiscriminator(), torch.randn(2, 3, 16, 16), tmp_path, ctx,
            train_in_eval=True, needles=("spectral_norm",))


class ConvVAE(nn.Module):
    """A convolutional VAE whose reparametrisation noise is an input (so
    train and eval agree), returning reconstruction, mu and logvar and the
    loss terms it computes."""

    def __init__(self, z=6):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 8, 4, 2, 1), nn.ReLU(),
                                 nn.Conv2d(8, 16, 4, 2, 1), nn.ReLU(), nn.Flatten())
        self.fc_mu = nn.Linear(16 * 4 * 4, z)
        self.fc_logvar = nn.Linear(16 * 4 * 4, z)
        self.dec = nn.Sequential(nn.Linear(z, 16 * 4 * 4), nn.ReLU(),
                                 nn.Unflatten(1, (16, 4, 4)),
                                 nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.ReLU(),
                                 nn.ConvTranspose2d(8, 1, 4, 2, 1), nn.Sigmoid())

    def forward(self, x, eps):
        h = self.enc(x)
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        std = torch.exp(0.5 * logvar)
        z = mu + eps * std
        recon = self.dec(z)
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return recon, mu, logvar, kld


def test_conv_vae_noise_as_input(ctx, tmp_path):
    torch.manual_seed(13)
    x = torch.rand(2, 1, 16, 16)
    roundtrip(ConvVAE(), (x, torch.randn(2, 6)), tmp_path, ctx,
              more=((torch.rand(3, 1, 16, 16), torch.randn(3, 6)),))


class SEBlock(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(c, c // r, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(c // r, c, bias=False), nn.Sigmoid())

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)


class ChannelAttention(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(c, c // r, 1, bias=False), nn.ReLU(),
                                 nn.Conv2d(c // r, c, 1, bias=False))

    def forward(self, x):
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    def __init__(self, k=7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, k, padding=k // 2, bias=False)

    def forward(self, x):
        avg = torch.mean(x, dim=1, keepdim=True)
        mx, _ = torch.max(x, dim=1, keepdim=True)
        return torch.sigmoid(self.conv(torch.cat([avg, mx], dim=1)))


class CBAMResBlock(nn.Module):
    """A residual block with Squeeze-Excitation and CBAM (channel attention
    from the average and max pools through one shared MLP, called twice;
    spatial attention over the channel mean and max)."""

    def __init__(self, c=16):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.se = SEBlock(c)
        self.ca = ChannelAttention(c)
        self.sa = SpatialAttention()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.se(out)
        out = self.ca(out) * out
        out = self.sa(out) * out
        return F.relu(out + x)


def test_se_and_cbam(ctx, tmp_path):
    torch.manual_seed(14)
    roundtrip(CBAMResBlock(), torch.randn(2, 16, 8, 8), tmp_path, ctx,
              more=((torch.randn(1, 16, 8, 8),),), train_in_eval=True)


class ESPCN(nn.Module):
    """Super-resolution by sub-pixel convolution: nn.PixelShuffle, and the
    functional forms both ways."""

    def __init__(self, r=2):
        super().__init__()
        self.r = r
        self.conv1 = nn.Conv2d(1, 16, 5, padding=2)
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, r * r, 3, padding=1)
        self.ps = nn.PixelShuffle(r)
        self.unshuffle = nn.PixelUnshuffle(r)

    def forward(self, x):
        h = torch.tanh(self.conv1(x))
        h = torch.tanh(self.conv2(h))
        y = self.ps(self.conv3(h))
        y2 = F.pixel_shuffle(self.conv3(h), self.r)
        back = F.pixel_unshuffle(y, self.r)
        return y + y2, self.unshuffle(y2) - back


def test_pixel_shuffle_super_resolution(ctx, tmp_path):
    torch.manual_seed(15)
    attempt(ESPCN(), torch.randn(2, 1, 6, 10), tmp_path, ctx,
            dynamic_dims={0: [0, 2, 3]}, more=((torch.randn(1, 1, 8, 8),),),
            needles=("pixel",))


class LayerNorm2d(nn.Module):
    """ConvNeXt's channels-first LayerNorm written out."""

    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c) + 0.1 * torch.randn(c))
        self.bias = nn.Parameter(0.1 * torch.randn(c))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class Norms(nn.Module):
    """Every norm users put on NCHW maps: GroupNorm, InstanceNorm2d (affine,
    and with running statistics), LayerNorm over channels via permute, the
    written-out channels-first LayerNorm, LocalResponseNorm, BatchNorm1d on
    [N, C, L]."""

    def __init__(self, c=8):
        super().__init__()
        self.gn = nn.GroupNorm(2, c)
        self.inorm = nn.InstanceNorm2d(c, affine=True)
        self.inorm_stats = nn.InstanceNorm2d(c, track_running_stats=True)
        self.ln = nn.LayerNorm(c)
        self.ln2d = LayerNorm2d(c)
        self.lrn = nn.LocalResponseNorm(3)
        self.bn1d = nn.BatchNorm1d(c)
        self.in1d = nn.InstanceNorm1d(c, affine=True)

    def forward(self, x):
        a = self.gn(x)
        b = self.inorm(x) + self.inorm_stats(x)
        c = self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        d = self.ln2d(x)
        e = self.lrn(x)
        seq = x.flatten(2)
        f = self.bn1d(seq) + self.in1d(seq)
        return a + b + c + d + e, f


def test_norms_over_nchw(ctx, tmp_path):
    torch.manual_seed(16)
    model = Norms()
    with torch.no_grad():
        model.inorm_stats.running_mean.uniform_(-1, 1)
        model.inorm_stats.running_var.uniform_(0.5, 2)
        model.bn1d.running_mean.uniform_(-1, 1)
    roundtrip(model, torch.randn(2, 8, 5, 6), tmp_path, ctx, train_in_eval=True,
              more=((torch.randn(3, 8, 5, 6),),))


class FunctionalNorms(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(c) + 0.5)
        self.bias = nn.Parameter(torch.randn(c))
        self.register_buffer("mean", torch.randn(c))
        self.register_buffer("var", torch.rand(c) + 0.5)

    def forward(self, x):
        a = F.group_norm(x, 4, self.weight, self.bias)
        b = F.instance_norm(x, weight=self.weight, bias=self.bias)
        c = F.batch_norm(x, self.mean, self.var, self.weight, self.bias, training=False)
        return a + b + c


def test_functional_norms(ctx, tmp_path):
    torch.manual_seed(17)
    attempt(FunctionalNorms(), torch.randn(2, 8, 4, 5), tmp_path, ctx,
            needles=("norm", "'<root>'"))


class Chomp1d(nn.Module):
    def __init__(self, chomp_size):
        super().__init__()
        self.chomp_size = chomp_size

    def forward(self, x):
        return x[:, :, :-self.chomp_size].contiguous()


class TemporalBlock(nn.Module):
    """locuslab/TCN's block: dilated causal Conv1d (padding then chomp),
    weight_norm (optional here), ReLU, dropout, a 1x1 downsample residual."""

    def __init__(self, n_in, n_out, k, dilation, wn=True, dropout=0.2):
        super().__init__()
        pad = (k - 1) * dilation
        wrap = nn.utils.weight_norm if wn else (lambda m: m)
        self.conv1 = wrap(nn.Conv1d(n_in, n_out, k, padding=pad, dilation=dilation))
        self.chomp1 = Chomp1d(pad)
        self.relu1 = nn.ReLU()
        self.dropout1 = nn.Dropout(dropout)
        self.conv2 = wrap(nn.Conv1d(n_out, n_out, k, padding=pad, dilation=dilation))
        self.chomp2 = Chomp1d(pad)
        self.relu2 = nn.ReLU()
        self.dropout2 = nn.Dropout(dropout)
        self.net = nn.Sequential(self.conv1, self.chomp1, self.relu1, self.dropout1,
                                 self.conv2, self.chomp2, self.relu2, self.dropout2)
        self.downsample = nn.Conv1d(n_in, n_out, 1) if n_in != n_out else None
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.net(x)
        res = x if self.downsample is None else self.downsample(x)
        return self.relu(out + res)


class TCN(nn.Module):
    def __init__(self, wn=True):
        super().__init__()
        chans = [4, 8, 8]
        layers = [TemporalBlock(3 if i == 0 else chans[i - 1], chans[i], 3, 2 ** i, wn=wn)
                  for i in range(len(chans))]
        self.network = nn.Sequential(*layers)
        self.linear = nn.Linear(chans[-1], 5)

    def forward(self, x):
        y = self.network(x)
        return self.linear(y[:, :, -1])


def test_tcn_causal_conv(ctx, tmp_path):
    torch.manual_seed(18)
    roundtrip(TCN(wn=False), torch.randn(2, 3, 20), tmp_path, ctx, train_in_eval=True,
              dynamic_dims={0: [0, 2]}, more=((torch.randn(3, 3, 13),),))


def test_tcn_weight_norm(ctx, tmp_path):
    torch.manual_seed(19)
    attempt(TCN(wn=True), torch.randn(2, 3, 20), tmp_path, ctx, name="tcn_weight_norm",
            train_in_eval=True, needles=("weight_norm",))


class StdConv2d(nn.Conv2d):
    """BiT's weight-standardised convolution: a Conv2d subclass whose
    forward standardises its weight and calls F.conv2d."""

    def forward(self, x):
        w = self.weight
        v, m = torch.var_mean(w, dim=[1, 2, 3], keepdim=True, unbiased=False)
        w = (w - m) / torch.sqrt(v + 1e-10)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class BlurSobel(nn.Module):
    """Fixed kernels in buffers through F.conv2d: a depthwise Gaussian blur
    (groups=3, reflect-padded first) and Sobel edges, then a learned
    weight-standardised convolution and a transposed F.conv_transpose2d
    with a parameter of its own."""

    def __init__(self):
        super().__init__()
        g = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
        k = torch.outer(g, g) / 256.0
        self.register_buffer("blur", k.expand(3, 1, 5, 5).clone())
        sx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        self.register_buffer("sobel", torch.stack([sx, sx.t()]).unsqueeze(1))
        self.conv = StdConv2d(3, 4, 3, padding=1)
        self.up_w = nn.Parameter(0.2 * torch.randn(4, 2, 2, 2))

    def forward(self, x):
        b = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.blur, groups=3)
        gray = b.mean(1, keepdim=True)
        edges = F.conv2d(gray, self.sobel, padding=1)
        h = torch.relu(self.conv(b))
        up = F.conv_transpose2d(h, self.up_w, stride=2)
        return edges, up


def test_functional_convolutions(ctx, tmp_path):
    torch.manual_seed(35)
    roundtrip(BlurSobel(), torch.randn(2, 3, 9, 12), tmp_path, ctx,
              dynamic_dims={0: [0, 2, 3]}, more=((torch.randn(1, 3, 7, 7),),))


# ---- graphs ------------------------------------------------------------------

class DenseGCN(nn.Module):
    """Kipf & Welling with a dense adjacency: D^-1/2 (A + I) D^-1/2 X W."""

    def __init__(self, fin=5, hid=8, classes=3):
        super().__init__()
        self.l1 = nn.Linear(fin, hid)
        self.l2 = nn.Linear(hid, classes)

    def forward(self, x, adj):
        a = adj + torch.eye(adj.size(0))
        d = a.sum(1).pow(-0.5)
        a = d[:, None] * a * d[None, :]
        h = F.relu(a @ self.l1(x))
        return F.log_softmax(a @ self.l2(h), dim=1)


def test_dense_gcn(ctx, tmp_path):
    torch.manual_seed(20)
    adj = (torch.rand(6, 6) > 0.6).float()
    adj = ((adj + adj.t()) > 0).float()
    attempt(DenseGCN(), (torch.randn(6, 5), adj), tmp_path, ctx,
            dynamic_dims={0: 0, 1: [0, 1]}, needles=("eye",))


class MessagePassing(nn.Module):
    """A GraphSAGE-style layer on an edge list: messages gathered by source
    (x[src]), summed into their destinations with index_add_ and
    scatter_add_, mean-normalised by the in-degree."""

    def __init__(self, fin=5, fout=8):
        super().__init__()
        self.msg = nn.Linear(fin, fout)
        self.self_lin = nn.Linear(fin, fout)

    def forward(self, x, edge_index):
        src, dst = edge_index[0], edge_index[1]
        m = self.msg(x)[src]
        agg = torch.zeros(x.size(0), m.size(1)).index_add_(0, dst, m)
        agg2 = torch.zeros_like(agg).scatter_add_(0, dst.unsqueeze(1).expand_as(m), m)
        deg = torch.zeros(x.size(0)).index_add_(0, dst, torch.ones(dst.size(0)))
        return self.self_lin(x) + (agg + agg2) / deg.clamp(min=1).unsqueeze(1)


def test_message_passing(ctx, tmp_path):
    torch.manual_seed(21)
    edges = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 2], [1, 2, 3, 4, 5, 0, 3, 3]])
    # the edge count follows the input; the node count stays the example's
    # (the second trace cannot make up edges that fit fewer nodes)
    more = torch.tensor([[0, 1, 2, 3, 4, 5, 1, 2, 5, 0, 3], [1, 2, 3, 4, 5, 0, 3, 3, 2, 4, 0]])
    roundtrip(MessagePassing(), (torch.randn(6, 5), edges), tmp_path, ctx,
              dynamic_dims={1: 1}, more=((torch.randn(6, 5), more),))


# ---- attention by einsum, ops, containers --------------------------------------

class EinsumAttention(nn.Module):
    def __init__(self, d=16, heads=4):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d)
        self.w = nn.Parameter(torch.randn(d, d) * 0.1)

    def forward(self, x, mask):
        b, n, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = [t.reshape(b, n, self.heads, -1) for t in (q, k, v)]
        sim = torch.einsum("bihd,bjhd->bhij", q, k) * (d // self.heads) ** -0.5
        sim = sim.masked_fill(~mask[:, None, None, :], float("-inf"))
        attn = sim.softmax(dim=-1)
        out = torch.einsum("bhij,bjhd->bihd", attn, v).reshape(b, n, d)
        out = torch.einsum("bnd,de->bne", out, self.w)
        gate = torch.einsum("bnd,bnd->bn", out, x)
        return self.proj(out) * gate.sigmoid()[..., None]


def test_einsum_attention(ctx, tmp_path):
    torch.manual_seed(22)
    x = torch.randn(2, 7, 16)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    roundtrip(EinsumAttention(), (x, mask), tmp_path, ctx, dynamic_dims=[0, 1],
              more=((torch.randn(3, 4, 16), torch.ones(3, 4, dtype=torch.bool)),))


class TensorOps(nn.Module):
    """The tensor functions and methods of everyday forwards."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 12)

    def forward(self, x):
        h = self.fc(x)                                        # [N, 12]
        a, b, c = torch.chunk(h, 3, dim=1)
        p, q = h.split([5, 7], dim=-1)
        s = torch.stack([a, b, c], dim=1).flatten(1)          # [N, 12]
        u = s.unflatten(1, (3, 4)).transpose(1, 2)            # [N, 4, 3]
        m = u.masked_fill(u > 0.5, 0.5)
        w = torch.where(m < 0, m * 0.1, m)
        cs = torch.cumsum(w, dim=1).clamp(-2.0, 2.0)
        img = cs.unsqueeze(1)                                 # [N, 1, 4, 3]
        pads = F.pad(img, (1, 2, 0, 1))[..., :4, :3] + \
            F.pad(img, (1, 1, 1, 1), mode="reflect")[..., 1:5, 1:4] + \
            F.pad(img, (2, 0, 0, 2), mode="replicate")[..., :4, :3]
        r = torch.cat([p.sum(-1, keepdim=True), q.amax(-1, keepdim=True),
                       pads.flatten(1), s.softmax(-1), torch.tanh(h) ** 2], dim=1)
        return r, h.argmax(dim=1), torch.floor(h * 3) + torch.round(h * 2)


def test_tensor_ops(ctx, tmp_path):
    torch.manual_seed(23)
    attempt(TensorOps(), torch.randn(2, 12), tmp_path, ctx, needles=("'<root>'",),
            more=((torch.randn(5, 12),),))


class MoreOps(nn.Module):
    """Ops that are compositions in nnmod: topk, sort and argsort of a short
    dim, tril/triu of a computed tensor, circular padding."""

    def forward(self, x):
        v, i = x.topk(2, dim=-1)
        srt, si = torch.sort(x, dim=-1, descending=True)
        lo = x.argsort(dim=1)
        t = torch.triu(x[:, :4, :4], diagonal=1) + torch.tril(x[:, :4, :4])
        c = F.pad(x, (1, 2), mode="circular")
        return v, i, srt, si, lo, t, c


def test_more_ops(ctx, tmp_path):
    torch.manual_seed(24)
    roundtrip(MoreOps(), torch.randn(2, 5, 6), tmp_path, ctx, more=((torch.randn(3, 5, 6),),),
              train=False)


class Prod(nn.Module):
    def forward(self, x):
        return x.prod(-1), torch.diff(x, dim=-1)


def test_ops_nnmod_lacks(ctx, tmp_path):
    attempt(Prod(), torch.randn(2, 5), tmp_path, ctx, needles=("Tensor.prod", "torch.diff",
                                                                "'<root>'"))


class Containers(nn.Module):
    """nn.ModuleDict iterated, nn.ParameterList / ParameterDict and a raw
    nn.Parameter used in products, registered buffers (normalisation
    constants), a Linear shared by two calls, nn.Identity, keyword
    arguments with defaults, dict and nested tuple outputs."""

    def __init__(self):
        super().__init__()
        self.branches = nn.ModuleDict({"a": nn.Linear(6, 6), "b": nn.Sequential(
            nn.Linear(6, 6), nn.Identity(), nn.Tanh())})
        self.scales = nn.ParameterList([nn.Parameter(torch.rand(6) + 0.5) for _ in range(2)])
        self.gates = nn.ParameterDict({"in": nn.Parameter(torch.randn(6)),
                                       "out": nn.Parameter(torch.randn(6))})
        self.w = nn.Parameter(torch.randn(6, 4) * 0.3)
        self.shared = nn.Linear(4, 4)
        self.register_buffer("mu", torch.randn(6))
        self.register_buffer("sigma", torch.rand(6) + 0.5)
        self.skip = nn.Identity()

    def forward(self, x, y=None, scale=2.0):
        x = (x - self.mu) / self.sigma
        outs = []
        for k, mod in self.branches.items():
            outs.append(mod(x * self.gates["in"]))
        h = sum(outs)
        for s in self.scales:
            h = h * s
        z = torch.sigmoid(self.gates["out"]) * h @ self.w
        z = self.shared(self.shared(z)) * scale
        if y is not None:
            z = z + self.skip(y)
        return {"logits": z, "parts": (outs[0], (outs[1], h))}


def test_containers_params_buffers(ctx, tmp_path):
    torch.manual_seed(25)
    roundtrip(Containers(), (torch.randn(3, 6), torch.randn(3, 4)), tmp_path, ctx,
              more=((torch.randn(1, 6), torch.randn(1, 4)),))


class ResidualFF(nn.Module):
    def __init__(self, d=12):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 24), nn.GELU(), nn.Linear(24, d))

    def forward(self, x):
        return x + self.ff(self.norm(x))


class SharedLayers(nn.Module):
    """ALBERT / Universal-Transformer style: ONE block (a module of its
    own with children) applied several times, weights shared."""

    def __init__(self):
        super().__init__()
        self.block = ResidualFF()
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        for _ in range(3):
            x = self.block(x)
        return self.head(x)


def test_block_called_several_times(ctx, tmp_path):
    torch.manual_seed(37)
    roundtrip(SharedLayers(), torch.randn(2, 5, 12), tmp_path, ctx, dynamic_dims=[0, 1],
              more=((torch.randn(3, 2, 12),),))


class StyleNormalization(nn.Module):
    """PyTorch's neural-style tutorial: mean and std kept as PLAIN tensor
    attributes (not buffers), and a Gram matrix."""

    def __init__(self):
        super().__init__()
        self.mean = torch.tensor([0.485, 0.456, 0.406]).view(-1, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).view(-1, 1, 1)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, img):
        f = self.conv((img - self.mean) / self.std)
        a, b, c, d = f.size()
        features = f.view(a * b, c * d)
        G = torch.mm(features, features.t())
        return G.div(a * b * c * d)


def test_style_transfer_gram(ctx, tmp_path):
    torch.manual_seed(26)
    roundtrip(StyleNormalization(), torch.rand(1, 3, 8, 8), tmp_path, ctx, dynamic=False)


class DuelingDQN(nn.Module):
    """Atari DQN on uint8 frames (x.float() / 255), dueling heads."""

    def __init__(self, actions=4):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(2, 8, 4, 2), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, 1), nn.ReLU(), nn.Flatten())
        self.value = nn.Sequential(nn.Linear(8 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 1))
        self.adv = nn.Sequential(nn.Linear(8 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, actions))

    def forward(self, x):
        h = self.features(x.float() / 255.0)
        v, a = self.value(h), self.adv(h)
        q = v + a - a.mean(dim=1, keepdim=True)
        return q, q.argmax(1)


def test_dueling_dqn_uint8(ctx, tmp_path):
    torch.manual_seed(27)
    x = torch.randint(0, 256, (2, 2, 14, 14), dtype=torch.uint8)
    attempt(DuelingDQN(), x, tmp_path, ctx, needles=("'<root>'",),
            more=((torch.randint(0, 256, (3, 2, 14, 14), dtype=torch.uint8),),))


class CapsuleRouting(nn.Module):
    """Dynamic routing between capsules: 5-d broadcasting matmul, squash,
    three unrolled routing iterations."""

    def __init__(self, n_in=6, d_in=4, n_out=3, d_out=5, iters=3):
        super().__init__()
        self.iters = iters
        self.W = nn.Parameter(0.3 * torch.randn(1, n_in, n_out, d_out, d_in))

    @staticmethod
    def squash(s, dim=-1):
        n2 = (s ** 2).sum(dim=dim, keepdim=True)
        return n2 / (1 + n2) * s / torch.sqrt(n2 + 1e-8)

    def forward(self, u):                                   # [N, n_in, d_in]
        u_hat = torch.matmul(self.W, u[:, :, None, :, None]).squeeze(-1)  # [N, in, out, d]
        b = torch.zeros(u.size(0), u.size(1), self.W.size(2))
        for i in range(self.iters):
            c = F.softmax(b, dim=2)
            v = self.squash((c.unsqueeze(-1) * u_hat).sum(dim=1))        # [N, out, d]
            if i < self.iters - 1:
                b = b + (u_hat * v.unsqueeze(1)).sum(-1)
        return v


def test_capsule_routing(ctx, tmp_path):
    torch.manual_seed(28)
    roundtrip(CapsuleRouting(), torch.randn(2, 6, 4), tmp_path, ctx,
              more=((torch.randn(4, 6, 4),),))


class DenseMoE(nn.Module):
    """A softly gated mixture of experts (every expert run, stacked)."""

    def __init__(self, d=8, n=3):
        super().__init__()
        self.gate = nn.Linear(d, n)
        self.experts = nn.ModuleList([nn.Sequential(nn.Linear(d, 16), nn.GELU(),
                                                    nn.Linear(16, d)) for _ in range(n)])

    def forward(self, x):
        g = F.softmax(self.gate(x), dim=-1)                          # [N, T, n]
        e = torch.stack([exp(x) for exp in self.experts], dim=-2)    # [N, T, n, d]
        return (g.unsqueeze(-1) * e).sum(-2)


def test_dense_moe(ctx, tmp_path):
    torch.manual_seed(29)
    roundtrip(DenseMoE(), torch.randn(2, 5, 8), tmp_path, ctx, dynamic_dims=[0, 1],
              more=((torch.randn(3, 3, 8),),))


class TopKMoE(nn.Module):
    """Sparse top-k gating: topk, softmax of the kept logits scattered back."""

    def __init__(self, d=8, n=4, k=2):
        super().__init__()
        self.k = k
        self.gate = nn.Linear(d, n)
        self.experts = nn.ModuleList([nn.Linear(d, d) for _ in range(n)])

    def forward(self, x):
        logits = self.gate(x)
        top, idx = logits.topk(self.k, dim=-1)
        gates = torch.zeros_like(logits).scatter(-1, idx, F.softmax(top, dim=-1))
        e = torch.stack([exp(x) for exp in self.experts], dim=-2)
        return (gates.unsqueeze(-1) * e).sum(-2)


def test_topk_moe(ctx, tmp_path):
    torch.manual_seed(30)
    attempt(TopKMoE(), torch.randn(2, 5, 8), tmp_path, ctx, needles=("topk", "'<root>'"))


class STN(nn.Module):
    """PyTorch's spatial transformer tutorial: affine_grid + grid_sample."""

    def __init__(self):
        super().__init__()
        self.loc = nn.Sequential(nn.Conv2d(1, 4, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(4 * 4 * 4, 6))

    def forward(self, x):
        theta = self.loc(x).view(-1, 2, 3)
        grid = F.affine_grid(theta, x.size(), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False)


def test_spatial_transformer(ctx, tmp_path):
    torch.manual_seed(31)
    attempt(STN(), torch.randn(2, 1, 12, 12), tmp_path, ctx,
            needles=("grid_sample", "'<root>'"))


class ProtoNet(nn.Module):
    """Prototypical networks: class prototypes as means of support
    embeddings, logits as negative (squared) distances by torch.cdist, and
    the embeddings' torch.linalg.vector_norm."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8))

    def forward(self, support, query):                  # [C, S, 6], [Q, 6]
        protos = self.embed(support).mean(1)            # [C, 8]
        q = self.embed(query)
        d = torch.cdist(q, protos)                       # [Q, C]
        return -d.pow(2), torch.linalg.vector_norm(q, dim=-1)


def test_prototypical_cdist(ctx, tmp_path):
    torch.manual_seed(36)
    roundtrip(ProtoNet(), (torch.randn(3, 4, 6), torch.randn(5, 6)), tmp_path, ctx,
              dynamic_dims={0: [0, 1], 1: 0},
              more=((torch.randn(4, 2, 6), torch.randn(7, 6)),))


# ---- autograd semantics the trace must keep ---------------------------------

class GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.neg() * ctx.alpha, None


class DANN(nn.Module):
    """Domain-adversarial training's gradient reversal layer (a custom
    autograd.Function): its backward is not its forward's derivative, so
    an export that kept only the forward would train the wrong way."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(6, 8), nn.ReLU())
        self.label = nn.Linear(8, 3)
        self.domain = nn.Linear(8, 2)

    def forward(self, x):
        f = self.features(x)
        return self.label(f), self.domain(GradReverse.apply(f, 0.5))


def test_custom_autograd_function_is_refused(ctx, tmp_path):
    torch.manual_seed(32)
    msg = _refused(DANN(), torch.randn(3, 6), ctx, "GradReverse", "autograd.Function",
                   "'<root>'")
    assert "detach" in msg      # it says how to write one that exports


class DANNDetach(DANN):
    """The same reversal written with detach: it exports and trains alike."""

    def forward(self, x):
        f = self.features(x)
        r = f.detach() * 1.5 - f * 0.5          # value f, gradient -0.5
        return self.label(f), self.domain(r)


def test_gradient_reversal_with_detach(ctx, tmp_path):
    torch.manual_seed(33)
    roundtrip(DANNDetach(), torch.randn(3, 6), tmp_path, ctx)


class Distill(nn.Module):
    """A teacher run under torch.no_grad() inside forward (knowledge
    distillation, momentum encoders): no gradient may reach it."""

    def __init__(self):
        super().__init__()
        self.student = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4))
        self.teacher = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4))

    def forward(self, x):
        s = self.student(x)
        with torch.no_grad():
            t = F.softmax(self.teacher(x) / 2.0, dim=-1)
        return s, (F.log_softmax(s / 2.0, dim=-1) * t).sum(-1)


def test_no_grad_inside_forward(ctx, tmp_path):
    torch.manual_seed(34)
    roundtrip(Distill(), torch.randn(3, 6), tmp_path, ctx)


def test_report_figures():
    """Prints the corpus's figures (pytest -s): eval max abs error, modules
    compared one by one, train-step gradient error."""
    for name, (e, n, t) in sorted(FIGURES.items()):
        print(f"{name:32s} eval {e:.1e}  modules {n:3d}  train "
              + ("-" if t is None else f"{t:.1e}"))


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q", "-rx", "-s"]))
