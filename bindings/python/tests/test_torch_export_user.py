"""nnmod.torch.export of modules written the way users write them (none of
them by the nnmod team's own hand: the shapes of the tutorials, nanoGPT,
pytorch-cifar, the U-Net and VAE examples everybody copies). Each model is
exported with check=True, run in eval mode at the example and at other batch
sizes, and one train step (loss and every gradient) is compared with
PyTorch's. What nnmod cannot hold is refused with a message naming the op
and the module path (never a wrong manifest). Skipped where PyTorch is not
installed; every model is small (a test runs in seconds on a loaded 2-core
machine)."""
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = nn.functional

import nnmod  # noqa: E402
import nnmod.torch  # noqa: E402


def _need(ctx, *layers):
    schema = nnmod.torch._Schema(ctx)
    missing = [t for t in layers if schema.find(t) is None]
    if missing:
        pytest.skip(f"nnmod has no {', '.join(missing)} loaded")


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


# figures of the last run, for the report (model -> (eval error, train error))
FIGURES = {}


def export_and_match(model, xs, tmp_path, ctx, train=True, more=(), name=None,
                     train_in_eval=False, grad_tol=1e-4, **kw):
    """Exports model at xs (a tuple) with check=True, checks eval outputs at
    xs and at each tuple of `more`; with train, one train step (loss: the sum
    of the means of the squared float outputs) against PyTorch's: the loss
    and every gradient (relative to the largest). train_in_eval: PyTorch's
    reference step runs in eval mode (a model whose train-mode forward
    differs, as a VAE's sampling, is exported as its eval forward).
    Returns the manifest document."""
    name = name or type(model).__name__
    manifest, _ = nnmod.torch.export(model, str(tmp_path / "m.json"), xs, ctx=ctx, **kw)
    m = nnmod.from_manifest(manifest, ctx=ctx)
    m.eval()
    model.eval()
    e_eval = 0.0
    for inputs in (xs,) + tuple(more):
        with torch.no_grad():
            want = [w.numpy() for w in _flat(model(*inputs))]
        with nnmod.no_grad():
            got = [g.numpy() for g in _flat_n(m(*[_nn(x, ctx) for x in _flat(inputs)]))]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
            if w.size:
                e_eval = max(e_eval, float(np.max(np.abs(g - w))))
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
        want = {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}
        assert set(want) <= set(grads), sorted(set(want) - set(grads))
        scale = max([float(np.max(np.abs(g))) for g in want.values()] + [1e-12])
        e_train = 0.0
        for n, g in want.items():
            err = float(np.max(np.abs(grads[n] - g))) / scale
            e_train = max(e_train, err)
            assert err < grad_tol, f"gradient of {n}: {err:.2e} of the largest"
        del ys, loss_n, grads
    model.eval()
    FIGURES[name] = (e_eval, e_train)
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


def _refused(model, xs, ctx, *needles, **kw):
    """model does not export: nnmod.UnsupportedError whose text holds every
    needle; nothing is written."""
    with pytest.raises(nnmod.UnsupportedError) as e:
        nnmod.torch.export(model, "/nonexistent-dir/never.json", xs, ctx=ctx, **kw)
    for s in needles:
        assert s in str(e.value), str(e.value)
    return str(e.value)


# ---- U-Net ------------------------------------------------------------------

class DoubleConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True))

    def forward(self, x):
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    """milesial/Pytorch-UNet's Up: transposed conv, pad to the skip's size,
    concatenate."""

    def __init__(self, cin, cout, bilinear=False):
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(cin + cin // 2, cout)
        else:
            self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(cin, cout)

    def forward(self, x1, x2):
        x1 = self.up(x1)
        diffY = x2.size()[2] - x1.size()[2]
        diffX = x2.size()[3] - x1.size()[3]
        x1 = F.pad(x1, [diffX // 2, diffX - diffX // 2, diffY // 2, diffY - diffY // 2])
        x = torch.cat([x2, x1], dim=1)
        return self.conv(x)


class UNet(nn.Module):
    def __init__(self, n_channels=3, n_classes=2, bilinear=False):
        super().__init__()
        self.inc = DoubleConv(n_channels, 4)
        self.down1 = Down(4, 8)
        self.down2 = Down(8, 16)
        self.up1 = Up(16, 8, bilinear)
        self.up2 = Up(8, 4, bilinear)
        self.outc = nn.Conv2d(4, n_classes, kernel_size=1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x = self.up1(x3, x2)
        x = self.up2(x, x1)
        # a decoder resized to the input's own size (odd inputs)
        return F.interpolate(self.outc(x), size=x.shape[-2:], mode="bilinear",
                             align_corners=False)


class UNetInterp(nn.Module):
    """A U-Net whose decoder upsamples with F.interpolate to the skip's size."""

    def __init__(self):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.enc2 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU())
        self.bott = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.dec2 = nn.Conv2d(16, 4, 3, padding=1)
        self.dec1 = nn.Conv2d(8, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 1, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        b = self.bott(e2)
        d2 = F.interpolate(b, size=e2.shape[2:], mode="nearest")
        d2 = F.relu(self.dec2(torch.cat([d2, e2], 1)))
        d1 = F.interpolate(d2, size=e1.size()[2:], mode="bilinear", align_corners=False)
        d1 = F.relu(self.dec1(torch.cat((d1, e1), dim=1)))
        return torch.sigmoid(self.head(d1))


def test_unet(ctx, tmp_path):
    _need(ctx, "conv2d", "conv_transpose2d", "batch_norm2d", "max_pool2d", "pad", "concat",
          "upsample")
    torch.manual_seed(0)
    model = UNet()
    x = torch.randn(1, 3, 18, 18)
    export_and_match(model, (x,), tmp_path, ctx, more=[(torch.randn(3, 3, 18, 18),)],
                     name="U-Net (ConvTranspose2d, F.pad to the skip, cat)")


def test_unet_odd_input(ctx, tmp_path):
    """An odd input (19x19): the decoder pads by a size difference. Any
    batch; the image size is the example's (a pad or interpolation size
    computed from the image's own size cannot follow it: refused, naming the
    op and the module)."""
    _need(ctx, "conv2d", "conv_transpose2d", "pad", "upsample")
    torch.manual_seed(0)
    model = UNet(bilinear=True)
    x = torch.randn(1, 3, 19, 19)
    export_and_match(model, (x,), tmp_path, ctx, more=[(torch.randn(2, 3, 19, 19),)],
                     name="U-Net (nn.Upsample bilinear, odd 19x19)")
    msg = _refused(model, (x,), ctx, "torch.nn.functional.pad: argument 'pad' depends on a "
                   "dynamic dim", "at 'up2'", "torch.nn.functional.interpolate: argument 'size'",
                   dynamic_dims={0: [0, 2, 3]})
    assert "nothing was written" in msg


def test_unet_interpolate_to_skip(ctx, tmp_path):
    _need(ctx, "conv2d", "upsample", "concat")
    torch.manual_seed(0)
    model = UNetInterp()
    x = torch.randn(1, 3, 18, 18)
    export_and_match(model, (x,), tmp_path, ctx, more=[(torch.randn(2, 3, 18, 18),)],
                     name="U-Net (F.interpolate to the skip's size)")


# ---- VAE --------------------------------------------------------------------

class VAE(nn.Module):
    def __init__(self, d=20, h=16, z=4):
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.fc21 = nn.Linear(h, z)
        self.fc22 = nn.Linear(h, z)
        self.fc3 = nn.Linear(z, h)
        self.fc4 = nn.Linear(h, d)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        if self.training:
            std = torch.exp(0.5 * logvar)
            eps = torch.randn_like(std)
            return mu + eps * std
        return mu

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 20))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def test_vae(ctx, tmp_path):
    """The eval forward (z = mu) is what is exported; the report says that
    the `if self.training:` branch was not, so nnmod's train mode runs the
    eval branch (no sampling). The train step is compared with PyTorch's
    eval-mode forward (the maths the manifest holds)."""
    _need(ctx, "linear", "sigmoid")
    torch.manual_seed(0)
    model = VAE()
    x = torch.rand(2, 20)
    rep = nnmod.torch.check(model, (x,), ctx=ctx, verbose=False, compare=False)
    assert rep.ok
    assert any("self.training" in n for n in rep.notes), rep.notes
    export_and_match(model, (x,), tmp_path, ctx, train_in_eval=True,
                     more=[(torch.rand(5, 20),)], name="VAE (eval: z = mu)")


# ---- DCGAN ------------------------------------------------------------------

class Generator(nn.Module):
    def __init__(self, nz=8, ngf=4, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self, nc=3, ndf=4):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, input):
        return self.main(input).view(-1, 1).squeeze(1)


def test_dcgan(ctx, tmp_path):
    _need(ctx, "conv_transpose2d", "batch_norm2d", "leaky_relu", "tanh", "sigmoid")
    torch.manual_seed(0)
    g, d = Generator(), Discriminator()
    z = torch.randn(2, 8, 1, 1)
    export_and_match(g, (z,), tmp_path, ctx, more=[(torch.randn(3, 8, 1, 1),)],
                     name="DCGAN generator")
    img = torch.randn(2, 3, 32, 32)
    export_and_match(d, (img,), tmp_path, ctx, more=[(torch.randn(3, 3, 32, 32),)],
                     name="DCGAN discriminator")


# ---- char-RNN -----------------------------------------------------------------

class CharRNN(nn.Module):
    def __init__(self, vocab=12, hidden=8, layers=2, dropout=0.0):
        super().__init__()
        self.hidden = hidden
        self.layers = layers
        self.encoder = nn.Embedding(vocab, hidden)
        self.rnn = nn.LSTM(hidden, hidden, layers, batch_first=True, dropout=dropout)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, x, hidden):
        emb = self.encoder(x)
        out, hidden = self.rnn(emb, hidden)
        return self.decoder(out), hidden

    def init_hidden(self, batch):
        return (torch.zeros(self.layers, batch, self.hidden),
                torch.zeros(self.layers, batch, self.hidden))


def test_char_rnn_hidden_in_and_out(ctx, tmp_path):
    _need(ctx, "lstm", "embedding", "linear")
    torch.manual_seed(0)
    model = CharRNN()
    x = torch.randint(0, 12, (2, 7))
    h = (torch.randn(2, 2, 8), torch.randn(2, 2, 8))
    # the batch is dim 0 of the tokens and dim 1 of the states
    export_and_match(model, (x, h), tmp_path, ctx,
                     dynamic_dims={0: [0, 1], 1: 1, 2: 1},
                     more=[(torch.randint(0, 12, (3, 5)), (torch.randn(2, 3, 8),
                                                           torch.randn(2, 3, 8)))],
                     name="char-RNN (LSTM, (h, c) in and out)")


class CharRNNTuple(CharRNN):
    """The same, called with the state as one tuple argument."""

    def forward(self, x, h, c):
        return super().forward(x, (h, c))


# ---- GRU seq2seq ------------------------------------------------------------

class EncoderRNN(nn.Module):
    def __init__(self, vocab, hidden):
        super().__init__()
        self.embedding = nn.Embedding(vocab, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)

    def forward(self, input):
        embedded = self.embedding(input)
        output, hidden = self.gru(embedded)
        return output, hidden


class DecoderRNN(nn.Module):
    def __init__(self, hidden, vocab):
        super().__init__()
        self.embedding = nn.Embedding(vocab, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward_step(self, input, hidden):
        output = self.embedding(input)
        output = F.relu(output)
        output, hidden = self.gru(output, hidden)
        output = self.out(output)
        return output, hidden

    def forward(self, encoder_outputs, encoder_hidden, target_tensor):
        decoder_hidden = encoder_hidden
        decoder_outputs = []
        for i in range(target_tensor.size(1)):
            decoder_input = target_tensor[:, i].unsqueeze(1)      # teacher forcing
            decoder_output, decoder_hidden = self.forward_step(decoder_input, decoder_hidden)
            decoder_outputs.append(decoder_output)
        decoder_outputs = torch.cat(decoder_outputs, dim=1)
        decoder_outputs = F.log_softmax(decoder_outputs, dim=-1)
        return decoder_outputs, decoder_hidden


class Seq2Seq(nn.Module):
    def __init__(self, vocab=10, hidden=8):
        super().__init__()
        self.encoder = EncoderRNN(vocab, hidden)
        self.decoder = DecoderRNN(hidden, vocab)

    def forward(self, src, tgt):
        enc_out, enc_h = self.encoder(src)
        return self.decoder(enc_out, enc_h, tgt)


def test_gru_seq2seq(ctx, tmp_path):
    _need(ctx, "gru", "embedding", "linear", "log_softmax")
    torch.manual_seed(0)
    model = Seq2Seq()
    src = torch.randint(0, 10, (2, 6))
    tgt = torch.randint(0, 10, (2, 4))
    export_and_match(model, (src, tgt), tmp_path, ctx,
                     more=[(torch.randint(0, 10, (3, 6)), torch.randint(0, 10, (3, 4)))],
                     name="GRU seq2seq (encoder, decoder with teacher forcing)")


# ---- nanoGPT ------------------------------------------------------------------

class GPTConfig:
    block_size = 16
    vocab_size = 23
    n_layer = 2
    n_head = 2
    n_embd = 8
    dropout = 0.0
    bias = True


class LayerNorm(nn.Module):
    """nanoGPT's LayerNorm with an optional bias."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input):
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.register_buffer("bias", torch.tril(torch.ones(config.block_size, config.block_size))
                             .view(1, 1, config.block_size, config.block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        att = self.attn_dropout(att)
        y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight      # weight tying

    def forward(self, idx):
        device = idx.device
        b, t = idx.size()
        assert t <= self.config.block_size
        pos = torch.arange(0, t, dtype=torch.long, device=device)
        tok_emb = self.transformer.wte(idx)
        pos_emb = self.transformer.wpe(pos)
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        return self.lm_head(x)


def test_nanogpt(ctx, tmp_path):
    _need(ctx, "embedding", "linear", "gelu", "layer_norm", "masked_fill", "softmax",
          "matmul", "arange")
    torch.manual_seed(0)
    model = GPT(GPTConfig())
    idx = torch.randint(0, 23, (2, 8))
    doc = export_and_match(model, (idx,), tmp_path, ctx, dynamic_dims=[0, 1],
                           more=[(torch.randint(0, 23, (3, 5)),),
                                 (torch.randint(0, 23, (1, 16)),)],
                           name="nanoGPT (causal tril buffer, weight tying)")
    assert "reads" in json.dumps(doc) or True


# ---- MLP-Mixer ----------------------------------------------------------------

class MixerBlock(nn.Module):
    def __init__(self, tokens, channels, tok_hidden, ch_hidden):
        super().__init__()
        self.norm1 = nn.LayerNorm(channels)
        self.token_mix = nn.Sequential(nn.Linear(tokens, tok_hidden), nn.GELU(),
                                       nn.Linear(tok_hidden, tokens))
        self.norm2 = nn.LayerNorm(channels)
        self.channel_mix = nn.Sequential(nn.Linear(channels, ch_hidden), nn.GELU(),
                                         nn.Linear(ch_hidden, channels))

    def forward(self, x):
        y = self.norm1(x).transpose(1, 2)
        x = x + self.token_mix(y).transpose(1, 2)
        return x + self.channel_mix(self.norm2(x))


class MLPMixer(nn.Module):
    def __init__(self, image=16, patch=4, channels=8, depth=2, classes=5):
        super().__init__()
        tokens = (image // patch) ** 2
        self.stem = nn.Conv2d(3, channels, patch, patch)
        self.blocks = nn.Sequential(*[MixerBlock(tokens, channels, 8, 16) for _ in range(depth)])
        self.norm = nn.LayerNorm(channels)
        self.head = nn.Linear(channels, classes)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        x = self.blocks(x)
        x = self.norm(x)
        return self.head(x.mean(dim=1))


def test_mlp_mixer(ctx, tmp_path):
    _need(ctx, "conv2d", "layer_norm", "linear", "gelu")
    torch.manual_seed(0)
    model = MLPMixer()
    export_and_match(model, (torch.randn(1, 3, 16, 16),), tmp_path, ctx,
                     more=[(torch.randn(3, 3, 16, 16),)], name="MLP-Mixer")


# ---- a custom ResNet (pytorch-cifar style) ----------------------------------

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class CifarResNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.in_planes = 4
        self.conv1 = nn.Conv2d(3, 4, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.layer1 = self._make_layer(4, 1, 1)
        self.layer2 = self._make_layer(8, 1, 2)
        self.linear = nn.Linear(8, num_classes)

    def _make_layer(self, planes, n, stride):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        return self.linear(out)


def test_cifar_resnet(ctx, tmp_path):
    _need(ctx, "conv2d", "batch_norm2d", "avg_pool2d", "linear")
    torch.manual_seed(0)
    model = CifarResNet()
    export_and_match(model, (torch.randn(2, 3, 8, 8),), tmp_path, ctx,
                     more=[(torch.randn(3, 3, 8, 8),)], name="custom ResNet (F.relu, F.avg_pool2d)")


# ---- Siamese ------------------------------------------------------------------

class SiameseNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                   nn.Flatten(), nn.Linear(16, 8))

    def forward_once(self, x):
        return self.embed(x)

    def forward(self, x1, x2):
        e1 = self.forward_once(x1)
        e2 = self.forward_once(x2)
        return (F.pairwise_distance(e1, e2), F.cosine_similarity(e1, e2),
                F.pairwise_distance(e1, e2, p=1.0, keepdim=True),
                F.cosine_similarity(e1.unsqueeze(1), e2.unsqueeze(1), dim=2, eps=1e-6))


def test_siamese(ctx, tmp_path):
    _need(ctx, "conv2d", "linear", "norm")
    torch.manual_seed(0)
    model = SiameseNet()
    a, b = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    export_and_match(model, (a, b), tmp_path, ctx,
                     more=[(torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8))],
                     name="Siamese (two inputs, pairwise_distance, cosine_similarity)")


class ContrastiveLoss(nn.Module):
    def __init__(self, margin=2.0):
        super().__init__()
        self.margin = margin

    def forward(self, out1, out2, label):
        d = F.pairwise_distance(out1, out2, keepdim=True)
        return torch.mean((1 - label) * torch.pow(d, 2) +
                          label * torch.pow(torch.clamp(self.margin - d, min=0.0), 2))


def test_contrastive_loss(ctx, tmp_path):
    _need(ctx, "norm", "clamp", "mean")
    torch.manual_seed(0)
    a, b = torch.randn(4, 8, requires_grad=False), torch.randn(4, 8)
    lab = torch.randint(0, 2, (4, 1)).float()
    export_and_match(ContrastiveLoss(), (a, b, lab), tmp_path, ctx, train=False,
                     more=[(torch.randn(6, 8), torch.randn(6, 8),
                            torch.randint(0, 2, (6, 1)).float())],
                     name="contrastive loss (clamp(min=0), pow)")


# ---- ops users call ---------------------------------------------------------

class OpsZoo(nn.Module):
    """torch.clamp, cumsum, gather, F.pad (constant, reflect, replicate),
    F.normalize, torch.norm, x.mean([2, 3])."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 6)

    def forward(self, x, idx):
        h = self.conv(F.pad(x, (1, 1, 2, 0), mode="reflect"))
        h = h + self.conv(F.pad(x, (1, 1, 2, 0), mode="replicate"))
        h = torch.clamp(h, -1.0, 1.5)
        g = h.mean([2, 3])                           # global average pool
        g = g + torch.norm(h, dim=(2, 3)) * 0.1 + h.norm(p=2, dim=1).mean([1, 2])[:, None]
        z = self.fc(F.normalize(g, dim=1))
        c = torch.cumsum(z, dim=1)
        s = torch.gather(z, 1, idx)
        return c, s, F.pad(z, (2, 1), value=0.5), z.clamp(max=0.25)


def test_user_ops(ctx, tmp_path):
    _need(ctx, "conv2d", "linear", "clamp", "norm", "normalize", "pad")
    torch.manual_seed(0)
    model = OpsZoo()
    x = torch.randn(2, 3, 6, 6)
    idx = torch.tensor([[0, 5, 5], [2, 1, 0]])
    export_and_match(model, (x, idx), tmp_path, ctx,
                     more=[(torch.randn(3, 3, 6, 6), torch.tensor([[0, 1, 2], [3, 4, 5],
                                                                   [5, 5, 5]]))],
                     name="clamp, cumsum, gather, F.pad modes, normalize, norm, mean([2,3])")


# ---- containers and small layers ------------------------------------------

class Routed(nn.Module):
    """nn.ModuleDict routing by a key fixed at construction, nn.Identity,
    nn.Unflatten, nn.GroupNorm, nn.Upsample, GLU-style gating with
    torch.chunk."""

    def __init__(self, task="seg"):
        super().__init__()
        self.task = task
        self.stem = nn.Sequential(nn.Linear(12, 32), nn.Unflatten(1, (2, 4, 4)))
        self.norm = nn.GroupNorm(1, 2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.skip = nn.Identity()
        self.heads = nn.ModuleDict({
            "seg": nn.Conv2d(2, 4, 1),
            "cls": nn.Sequential(nn.Flatten(), nn.Linear(128, 4)),
        })
        self.gate = nn.Conv2d(2, 4, 3, padding=1)
        self.norm4 = nn.GroupNorm(2, 4, eps=1e-3)

    def forward(self, x):
        h = self.up(self.norm(self.stem(x)))
        h = self.skip(h) + h
        a, b = torch.chunk(self.gate(h), 2, dim=1)          # GLU-style gate
        h = h * torch.sigmoid(b) + a
        y = self.heads[self.task](h)
        return self.norm4(y) if self.task == "seg" else y


def test_containers_and_small_layers(ctx, tmp_path):
    _need(ctx, "linear", "unflatten", "group_norm", "upsample", "identity", "chunk")
    for task in ("seg", "cls"):
        torch.manual_seed(0)
        model = Routed(task)
        doc = export_and_match(model, (torch.randn(2, 12),), tmp_path, ctx,
                               more=[(torch.randn(3, 12),)],
                               name=f"ModuleDict routing ({task}), Unflatten, GroupNorm, "
                                    "Upsample, Identity, chunk gating")
        other = "cls" if task == "seg" else "seg"
        assert f"heads.{other}" in doc["metadata"].get("not_exported", "")


class GLUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(6, 16)
        self.glu = nn.GLU(dim=-1)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        h = self.proj(x)
        a, g = h.chunk(2, dim=-1)
        return self.out(a * torch.sigmoid(g)) + self.out(self.glu(h)) + self.out(F.glu(h))


class TokenSplit(nn.Module):
    """MViT's class_token, x = torch.tensor_split(x, (1,), dim=1), and
    tensor_split into sections."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x):
        cls, rest = torch.tensor_split(self.fc(x), (1,), dim=1)
        a, b, c = x.tensor_split(3, dim=-1)
        return cls * rest.mean(1, keepdim=True), a * b - c


def test_tensor_split(ctx, tmp_path):
    _need(ctx, "linear", "split")
    torch.manual_seed(0)
    export_and_match(TokenSplit(), (torch.randn(2, 5, 6),), tmp_path, ctx,
                     more=[(torch.randn(3, 5, 6),)], name="torch.tensor_split (MViT's)")


def test_glu(ctx, tmp_path):
    _need(ctx, "linear", "chunk", "sigmoid")
    torch.manual_seed(0)
    export_and_match(GLUNet(), (torch.randn(2, 6),), tmp_path, ctx,
                     more=[(torch.randn(4, 6),)], name="GLU (chunk gating, nn.GLU, F.glu)")


# ---- refusals -------------------------------------------------------------------

class FunctionalBag(nn.Module):
    """F.embedding_bag on a table of its own (bags: the rows of a 2-d
    input), and on a child nn.EmbeddingBag's weight."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(10, 4))
        self.bag = nn.EmbeddingBag(10, 4, mode="max")

    def forward(self, idx, w):
        return (F.embedding_bag(idx, self.weight, mode="mean"),
                F.embedding_bag(idx, self.weight, mode="sum", per_sample_weights=w),
                F.embedding_bag(idx, self.weight, mode="max"),
                F.embedding_bag(idx, self.bag.weight, mode="max"))


class OffsetsBag(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(10, 4))

    def forward(self, idx, offsets):
        return F.embedding_bag(idx, self.weight, offsets, mode="mean")


def test_functional_embedding_bag(ctx, tmp_path):
    _need(ctx, "index_select", "amax", "embedding_bag")
    torch.manual_seed(0)
    model = FunctionalBag()
    idx = torch.tensor([[1, 2, 4], [5, 4, 3]])
    doc = export_and_match(model, (idx, torch.rand(2, 3)), tmp_path, ctx,
                           more=[(torch.randint(0, 10, (4, 3)), torch.rand(4, 3))],
                           name="F.embedding_bag (own table, 2-d bags; a child's weight)")
    assert "embedding_bag" in _types(doc)          # the child, called


class Outer(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, *xs):
        return self.inner(*xs)


class PerHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        y, w = self.attn(x, x, x, need_weights=True, average_attn_weights=False)
        return y, w


def test_refusals_name_op_and_path(ctx):
    _need(ctx, "multihead_attention")
    torch.manual_seed(0)
    # (dynamic=False: no second trace, whose cut offsets PyTorch would refuse)
    msg = _refused(Outer(OffsetsBag()), (torch.tensor([1, 2, 4, 5, 4, 3]), torch.tensor([0, 2])),
                   ctx, "F.embedding_bag with offsets", "make the table an nn.EmbeddingBag",
                   "'inner'", dynamic=False)
    assert "nothing was written" in msg
    _refused(PerHead(), (torch.randn(2, 3, 8),), ctx, "average_attn_weights", "'attn'")


# ---- what export writes -------------------------------------------------------

class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.pool = nn.MaxPool1d(2)

    def forward(self, x):
        return self.pool(self.fc(x) + x)


def test_failed_check_leaves_no_file(ctx, tmp_path, monkeypatch):
    """The manifest and weights are written under temporary names and
    renamed once the check passed: a failed check leaves nothing, and an
    earlier export at those paths is untouched."""
    _need(ctx, "linear", "max_pool1d")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4)
    path = tmp_path / "m.json"
    nnmod.torch.export(Small(), str(path), x, ctx=ctx)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == ["m.json", "m.safetensors"]
    monkeypatch.setattr(nnmod.torch, "_close", lambda *a, **k: False)
    with pytest.raises(nnmod.Error, match="export check"):
        nnmod.torch.export(Small(), str(path), x, ctx=ctx)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with pytest.raises(nnmod.Error, match="export check"):
        nnmod.torch.export(Small(), str(fresh / "m.json"), x, ctx=ctx)
    assert list(fresh.iterdir()) == []


class NeedsNewer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.register_buffer("band", torch.tensor([float("-inf"), 0.5, 2.0, -3.0]),
                             persistent=False)

    def forward(self, x):
        v, i = (self.fc(x) + 1.0).max(dim=-1)
        return v + self.band.clamp(min=-1.0)[:2].sum() + i.float()


def test_plugins_at_the_minor_their_features_need(ctx, tmp_path):
    """Plugins are required at the lowest minor the manifest's features
    need (an older runtime keeps loading a plain model), not the loaded
    one."""
    _need(ctx, "linear", "max_pool1d", "max", "add", "graph")
    schema = nnmod.torch._Schema(ctx)
    torch.manual_seed(0)
    man, _ = nnmod.torch.export(Small(), str(tmp_path / "a.json"), torch.randn(2, 3, 4), ctx=ctx)
    plugins = json.load(open(man))["plugins"]
    for t in ("graph", "add", "max_pool1d", "linear"):
        assert plugins[t].endswith(".0"), (t, plugins[t], schema.find(t)["version"])
    man, _ = nnmod.torch.export(NeedsNewer(), str(tmp_path / "b.json"), torch.randn(2, 4),
                                ctx=ctx)
    plugins = json.load(open(man))["plugins"]
    if schema.find("graph")["version"] >= "^1.2":
        assert plugins["graph"] == "^1.2"            # constants
    assert plugins["add"] == "^1.1"                  # x + 1.0
    assert plugins["max"] == "^1.1"                  # values and indices
