"""nnmod.torch.export of models that end in a loss module (issue 18): every
loss of plugins/losses, with its weights, exported and checked against
PyTorch by export's own check (loaded back and run). Skipped where PyTorch
is not installed."""
import json

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import nnmod.torch  # noqa: E402


class WithLoss(nn.Module):
    def __init__(self, loss, squash=False):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.loss = loss
        self.squash = squash

    def forward(self, x, t):
        y = self.fc(x)
        return self.loss(torch.sigmoid(y) if self.squash else y, t)


def probs(n, c):
    return torch.softmax(torch.randn(n, c), 1)


CASES = [
    ("cross_entropy", lambda: nn.CrossEntropyLoss(weight=torch.tensor([0.5, 2.0, 1.0])),
     lambda: probs(5, 3), False),
    ("cross_entropy", lambda: nn.CrossEntropyLoss(label_smoothing=0.1), lambda: probs(5, 3), False),
    ("bce_loss", lambda: nn.BCELoss(weight=torch.tensor([1.0, 0.5, 2.0])),
     lambda: torch.rand(5, 3), True),
    ("bce_with_logits", lambda: nn.BCEWithLogitsLoss(pos_weight=torch.tensor([1.0, 2.0, 3.0])),
     lambda: torch.rand(5, 3), False),
    ("kl_div", lambda: nn.KLDivLoss(reduction="batchmean"), lambda: probs(5, 3), False),
    ("l1_loss", lambda: nn.L1Loss(), lambda: torch.rand(5, 3), False),
    ("smooth_l1_loss", lambda: nn.SmoothL1Loss(beta=0.5), lambda: torch.rand(5, 3), False),
    ("huber_loss", lambda: nn.HuberLoss(delta=2.0, reduction="sum"), lambda: torch.rand(5, 3), False),
    ("mse_loss", lambda: nn.MSELoss(reduction="none"), lambda: torch.rand(5, 3), False),
]


@pytest.mark.parametrize("i", range(len(CASES)))
def test_export_loss(tmp_path, ctx, i):
    layer, make, target, squash = CASES[i]
    torch.manual_seed(i)
    model = WithLoss(make(), squash)
    x = torch.randn(5, 4)
    manifest, _ = nnmod.torch.export(model, str(tmp_path / "m.json"), (x, target()), ctx=ctx)
    doc = json.load(open(manifest))
    loss = [c for c in doc["root"]["children"] if c["name"] == "loss"][0]
    assert loss["type"] == layer
    w = getattr(model.loss, "weight", None)
    if w is not None:
        assert loss["config"]["weight"] == pytest.approx(w.tolist())


def test_export_loss_weight_2d_refused(tmp_path, ctx):
    model = WithLoss(nn.BCELoss(weight=torch.ones(5, 3)), True)
    with pytest.raises(nnmod.UnsupportedError, match="weight"):
        nnmod.torch.export(model, str(tmp_path / "m.json"), (torch.randn(5, 4), torch.rand(5, 3)),
                           ctx=ctx)


class CTCModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 5)
        self.loss = nn.CTCLoss(blank=0, zero_infinity=True)

    def forward(self, x, tg, il, tl):
        return self.loss(self.fc(x).log_softmax(2), tg, il, tl)


def test_export_ctc_loss(tmp_path, ctx):
    torch.manual_seed(0)
    x = torch.randn(6, 3, 4)
    tg = torch.tensor([[1, 2, 3], [2, 2, 1], [4, 1, 1]])
    il, tl = torch.tensor([6, 5, 6]), torch.tensor([3, 2, 1])
    # dim 0 of log_probs is time, not the batch: exported at its sizes
    manifest, _ = nnmod.torch.export(CTCModel(), str(tmp_path / "m.json"), (x, tg, il, tl), ctx=ctx,
                                     dynamic=False)
    doc = json.load(open(manifest))
    loss = [c for c in doc["root"]["children"] if c["name"] == "loss"][0]
    assert loss["type"] == "ctc_loss" and loss["config"]["zero_infinity"] is True
