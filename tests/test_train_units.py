"""Training units from registries: a user's loss (module path, entry point), loss arguments,
view builders and extra-negative providers, each checked to be the one that really ran."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from train_helpers import read_log, write_sentences

from embeval.cli import main
from embeval.core import losses
from embeval.core.batches import Batches
from embeval.core.model import random_tiny
from embeval.core.negatives import NEGATIVES, ExtraColumns, make_providers
from embeval.core.trainer import TrainConfig, Trainer
from embeval.core.views import VIEWS, Views, default_view, dropout, labelled_pairs, pairs
from embeval.registry import UnknownUnit

# A loss outside the package: InfoNCE times `scale`, recording each call (the shape of sim,
# tau, scale and the value) so that a test can tell it really ran with the given arguments.
TOY_LOSS = """
import torch
import torch.nn.functional as F

CALLS = []


def {name}(sim, temperature, scale=2.0):
    \"\"\"Toy: scale * InfoNCE.\"\"\"
    loss = scale * F.cross_entropy(sim / temperature, torch.arange(sim.shape[0]))
    CALLS.append((tuple(sim.shape), temperature, scale, loss.item()))
    return loss


def wrong(x, y):
    return x
"""


def write_module(folder, module: str, func: str = "my_loss"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(TOY_LOSS.format(name=func))


def train_args(tmp_path, *extra, n=8):
    data = write_sentences(tmp_path / "train.txt", n=n)
    args = ["train", "--model", "random-tiny", "--data", str(data), "--out", str(tmp_path / "o")]
    return [*args, "--batch-size", "4", "--no-eval", "--no-progress", "--log-steps", "1", *extra]


def check_toy_loss_ran(module, out, steps, scale):
    """Every logged loss is the toy's own value at that step (log-steps 1: one call per record),
    with the given scale and the default tau, over a (4, 4) similarity matrix."""
    calls = module.CALLS
    assert [c[:3] for c in calls] == [((4, 4), 0.05, scale)] * steps
    logged = [r["loss"] for r in read_log(out) if "loss" in r]
    assert logged == [c[3] for c in calls]


def test_a_loss_from_outside_the_package_trains_through_the_cli(tmp_path, monkeypatch):
    write_module(tmp_path / "code", "toy_mod_cli")
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    args = train_args(tmp_path, "--loss", "toy_mod_cli:my_loss", "--steps", "3")
    res = CliRunner().invoke(main, [*args, "--loss-arg", "scale=3"])
    assert res.exit_code == 0, res.output
    import toy_mod_cli

    check_toy_loss_ran(toy_mod_cli, tmp_path / "o", 3, 3.0)
    saved = json.loads((tmp_path / "o" / "train_config.json").read_text())
    assert saved["loss"] == "toy_mod_cli:my_loss" and saved["loss_args"] == {"scale": 3.0}
    # Its own arguments are checked as a built-in's are; a function of another shape is refused.
    bad = CliRunner().invoke(main, [*args, "--overwrite", "--loss-arg", "m=1"])
    assert bad.exit_code == 2
    assert "loss toy_mod_cli:my_loss has no argument 'm'; it accepts: scale (default 2.0)" in (
        bad.output
    )
    wrong = CliRunner().invoke(main, [*train_args(tmp_path, "--loss", "toy_mod_cli:wrong")])
    assert wrong.exit_code == 2
    assert "first two parameters must be (sim, temperature), got (x, y)" in wrong.output


def test_a_loss_from_an_installed_package_s_entry_point(tmp_path, monkeypatch):
    """An installed package declares `[embeval.losses] plug-loss = toy_plug:plugged`: its
    dist-info on sys.path is found as it would be in site-packages."""
    write_module(tmp_path / "site", "toy_plug", "plugged")
    info = tmp_path / "site" / "toy_plug-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plug\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[embeval.losses]\nplug-loss = toy_plug:plugged\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    res = CliRunner().invoke(main, train_args(tmp_path, "--loss", "plug-loss", "--steps", "2"))
    assert res.exit_code == 0, res.output
    import toy_plug

    check_toy_loss_ran(toy_plug, tmp_path / "o", 2, 2.0)
    saved = json.loads((tmp_path / "o" / "train_config.json").read_text())
    assert saved["loss"] == "plug-loss" and saved["loss_args"] == {"scale": 2.0}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--loss-arg", "lam=1"], "loss focal-infonce has no argument 'lam'; it accepts: m (def"),
        (["--loss-arg", "m=abc"], "argument m='abc' is not a float; it accepts: m (default 0.3)"),
        (["--loss-arg", "m"], "'m': expected KEY=VALUE"),
        (["--loss-arg", "m=1", "--loss-arg", "m=2"], "m is given twice"),
        (["--focal-m", "0.2", "--loss-arg", "m=0.1"], "sets m, as --loss-arg m=0.1 does"),
        (["--uniformity-weight", "2"], "--uniformity-weight: sets the loss argument 'lam', which"),
        (["--loss", "focal_infonce"], "did you mean 'focal-infonce'"),
        (["--view", "pair"], "unknown view 'pair'; did you mean 'pairs'"),
        (["--view", "pairs"], "train.txt: view 'pairs' needs a CSV with sent0,sent1"),
        (["--negatives", "nope"], "unknown negatives provider 'nope'"),
    ],
)
def test_bad_loss_arguments_views_and_negatives_are_named(tmp_path, extra, message):
    args = train_args(tmp_path, "--steps", "1")
    if "--loss" not in extra:
        extra = ["--loss", "focal-infonce", *extra]
    res = CliRunner().invoke(main, [*args, *extra])
    assert res.exit_code == 2 and message in " ".join(res.output.split()), res.output
    assert not (tmp_path / "o" / "best").exists()


def test_loss_arguments_convert_to_the_default_s_type():
    def toy(sim, temperature, a=1.0, n=2, flag=False, name="x", bare=None):
        return sim.sum()

    resolved = losses.bind_loss_arguments(toy, {"a": "3", "n": "4", "flag": "yes"}, "toy")
    assert resolved == {"a": 3.0, "n": 4, "flag": True, "name": "x", "bare": None}
    assert type(resolved["a"]) is float and type(resolved["n"]) is int
    assert losses.bind_loss_arguments(toy, {"a": 2, "bare": "t"}, "toy")["a"] == 2.0
    for given, bad in (({"n": "0.5"}, "n='0.5' is not a int"), ({"flag": "maybe"}, "flag=")):
        with pytest.raises(ValueError, match=bad):
            losses.bind_loss_arguments(toy, given, "toy")

    def needs(sim, temperature, k):
        return sim.sum()

    with pytest.raises(ValueError, match=r"loss needs needs 'k' \(--loss-arg KEY=VALUE\)"):
        losses.bind_loss_arguments(needs, {}, "needs")
    assert losses.bind_loss_arguments(needs, {"k": "v"}, "needs") == {"k": "v"}  # untyped


def test_every_built_in_loss_passes_the_check_user_losses_get():
    for name, fn in losses.LOSSES.items():
        losses.LOSSES.check(name, fn)
        assert fn.__doc__ and "(" in fn.__doc__.split("\n")[0], name  # the paper, named
    assert losses.in_batch_only(losses.align_uniform) and not losses.in_batch_only(losses.infonce)


# ---------------------------------------------------------------------- views
def test_view_builders():
    ex = [("a", "b", "c"), ("d", "e", "f")]
    assert dropout([("a",), ("d",)]) == Views([["a", "d"]], (0, 0))
    assert dropout(ex) == Views([["a", "d"]], (0, 0))  # a CSV's sent0 only
    assert pairs(ex) == Views([["a", "d"], ["b", "e"], ["c", "f"]], (0, 1, 2))
    assert pairs([t[:2] for t in ex]).order == (0, 1)
    with pytest.raises(ValueError, match="needs a CSV"):
        pairs([("a",)])
    with pytest.raises(ValueError, match="must give anchors"):
        Views([["a"]], ())
    assert Views([["a"]], (0,)).order == (0,)  # anchors only: providers give the candidates
    with pytest.raises(ValueError, match="beyond the 1 given"):
        Views([["a"]], (0, 1))
    assert default_view(("sent0",)) == "dropout" and default_view(("sent0", "sent1")) == "pairs"
    assert {"dropout", "pairs", "labelled-pairs"} <= set(VIEWS.names())
    assert default_view(("sent0", "sent1", "label")) == "labelled-pairs"
    assert labelled_pairs(ex) == Views([["a", "d"], ["b", "e"]], (0, 1))  # the label: no text


def recording(seen: list):
    """A stand-in for the model: records its inputs, returns random (n, 32) embeddings."""

    def forward(**inputs):
        seen.append(inputs)
        return torch.randn(len(inputs["input_ids"]), 32)

    return forward


def test_a_view_decides_the_columns(tmp_path):
    """The view of a triplet CSV is pairs unless told: (B, 2B) similarities; --view dropout reads
    its sent0 twice, (B, B). A shared view is tokenized once: both halves get the same ids."""
    csv = tmp_path / "nli.csv"
    csv.write_text("sent0,sent1,hard_neg\n" + "".join(f"a {i},b {i},c {i}\n" for i in range(8)))
    backbone, tok = random_tiny(0, hidden=32, layers=1, heads=2)
    shapes = {}
    for view in (None, "dropout"):
        cfg = TrainConfig(batch_size=4, steps=0, view=view, max_length=8)
        tr = Trainer(backbone, tok, csv, cfg, tmp_path / str(view), progress=False)
        seen = []
        tr.batches.forward = recording(seen)
        tr.compute_loss(tr.batch_examples(0))
        ids = seen[0]["input_ids"]
        shapes[tr.config.view] = ids.shape[0]
        if tr.config.view == "dropout":
            assert torch.equal(ids[:4], ids[4:])
    assert shapes == {"pairs": 12, "dropout": 8}


# ---------------------------------------------------------------------- extra negatives
COLS = torch.randn(3, 32, generator=torch.Generator().manual_seed(5))  # (k, H) fixed columns


class FixedColumns(ExtraColumns):
    """A toy provider: the same three columns every step; it records what it saw."""

    def __init__(self):
        self.seen, self.ended = [], []

    def columns(self, batch):
        self.seen.append(batch)
        return COLS

    def step_end(self, batch):
        self.ended.append(batch.step)


@pytest.fixture
def fixed_columns():
    provider = FixedColumns()
    NEGATIVES.add("toy-fixed", lambda: provider)
    losses.LOSSES.add("toy-spy", spy)
    SIMS.clear()
    yield provider
    NEGATIVES.remove("toy-fixed")
    losses.LOSSES.remove("toy-spy")


SIMS: list[torch.Tensor] = []


def spy(sim, temperature):
    SIMS.append(sim.detach().clone())
    return losses.infonce(sim, temperature)


def test_a_provider_s_columns_reach_the_loss(tmp_path, fixed_columns):
    """With negatives=["toy-fixed"] the loss sees (B, B + 3): the first B columns are the two
    dropout views' cosines, the last three the anchors' cosines with the provider's columns;
    the provider sees each batch's views and embeddings and hears of each step's end."""
    data = write_sentences(tmp_path / "train.txt", n=16)
    backbone, tok = random_tiny(0, hidden=32, layers=1, heads=2)
    cfg = TrainConfig(batch_size=8, steps=2, loss="toy-spy", negatives=["toy-fixed"], lr=1e-3)
    tr = Trainer(backbone, tok, data, cfg, tmp_path / "out", progress=False)
    tr.train()
    assert [tuple(s.shape) for s in SIMS] == [(8, 11), (8, 11)]
    batch = fixed_columns.seen[0]
    assert batch.step == 0 and batch.views.order == (0, 0) and batch.model is tr.model
    assert batch.examples == tr.batch_examples(0)
    z = F.normalize(batch.emb.detach().float(), dim=-1)  # (2, 8, 32)
    torch.testing.assert_close(SIMS[0][:, :8], z[0] @ z[1].T)
    torch.testing.assert_close(SIMS[0][:, 8:], z[0] @ F.normalize(COLS, dim=-1).T)
    assert fixed_columns.ended == [0, 1]
    saved = json.loads((tmp_path / "out" / "train_config.json").read_text())
    assert saved["negatives"] == ["toy-fixed"] and saved["view"] == "dropout"
    assert batch.tokenize(["a b"])["input_ids"].shape == (1, 4)


def test_providers_are_made_once_per_run_and_checked(tmp_path):
    NEGATIVES.add("toy-bad", object)
    try:
        with pytest.raises(UnknownUnit, match="made object, which has no columns"):
            make_providers(["toy-bad"])
    finally:
        NEGATIVES.remove("toy-bad")
    with pytest.raises(ValueError, match="negatives must be a list of names"):
        TrainConfig(negatives="toy").validate()
    assert "toy-bad" not in NEGATIVES.names()  # removed again: later tests see the built-ins only
    assert Batches.step_end  # the loop's hook for providers after each optimizer step


def test_cli_negatives_and_view_from_user_code(tmp_path, monkeypatch):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "toy_units.py").write_text(
        textwrap.dedent(
            """
            import torch
            from embeval.core.negatives import ExtraColumns

            SHAPES = []


            class Ones(ExtraColumns):
                def columns(self, batch):
                    return torch.ones(2, batch.emb.shape[-1])


            def spy(sim, temperature):
                SHAPES.append(tuple(sim.shape))
                return sim.mean()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    csv = tmp_path / "nli.csv"
    csv.write_text("sent0,sent1,hard_neg\n" + "".join(f"a {i},b {i},c {i}\n" for i in range(8)))
    args = train_args(tmp_path, "--steps", "1", "--loss", "toy_units:spy")
    args[args.index("--data") + 1] = str(csv)
    res = CliRunner().invoke(main, [*args, "--negatives", "toy_units:Ones", "--view", "dropout"])
    assert res.exit_code == 0, res.output
    import toy_units

    assert toy_units.SHAPES == [(4, 6)]  # 4 dropout positives + 2 provider columns
    saved = json.loads((tmp_path / "o" / "train_config.json").read_text())
    assert saved["negatives"] == ["toy_units:Ones"] and saved["view"] == "dropout"
