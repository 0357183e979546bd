"""The cards in cards/ load (every method, option and file checked as `embeval reproduce`
checks them before running), and the all-methods card and the training benchmark's METHODS keep
up with the registries: a loss, view, negatives provider or objective added to embeval and to
neither is a failure here, not a silently missing row."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from embeval.core.losses import LOSSES
from embeval.core.negatives import NEGATIVES
from embeval.core.objectives import OBJECTIVES
from embeval.core.views import VIEWS
from embeval.reproduce.card import load_card

ROOT = Path(__file__).resolve().parents[1]
CARDS = sorted((ROOT / "cards").glob("*.toml"))
IMPLIED_VIEWS = {"dropout", "pairs", "labelled-pairs"}  # chosen by the data, never named
# DistilCSE (--view anchors --negatives teacher) and DiffCSE need a second checkpoint, given by
# path: the card names them in a comment for the user to add with theirs.
NEEDS_A_CHECKPOINT = {"anchors", "teacher", "diffcse"}


def local_card(path: Path, shared_data: Path, tmp_path: Path) -> Path:
    """The card with its ../../shared/data paths pointed at this run's shared data."""
    copy = tmp_path / path.name
    copy.write_text(path.read_text().replace("../../shared/data", str(shared_data.resolve())))
    return copy


def units(methods: dict) -> set[str]:
    """The registry names a card's or METHODS' settings use (loss, view, providers, objective)."""
    used = set()
    for fields in methods.values():
        used |= {fields.get("loss", "infonce"), fields.get("view", "dropout")}
        used |= set(fields.get("negatives", []))
        used |= {fields["objective"]} if fields.get("objective") else set()
    return used


REGISTERED = set(LOSSES.names()) | set(VIEWS.names()) | set(NEGATIVES.names())
REGISTERED |= set(OBJECTIVES.names())


@pytest.mark.parametrize("path", CARDS, ids=[p.stem for p in CARDS])
def test_shipped_card_loads(path, shared_data, tmp_path):
    card = load_card(local_card(path, shared_data, tmp_path))
    assert card.baseline in card.methods and len(card.cells()) >= 2


def test_methods_card_trains_every_registered_unit(shared_data, tmp_path):
    card = load_card(local_card(ROOT / "cards" / "methods-minilm-cpu.toml", shared_data, tmp_path))
    missing = REGISTERED - IMPLIED_VIEWS - NEEDS_A_CHECKPOINT - units(card.methods)
    assert not missing, f"cards/methods-minilm-cpu.toml has no method using {sorted(missing)}"
    assert any(m.get("matryoshka_layers") for m in card.methods.values())  # 2DMSE


def test_training_benchmark_times_every_registered_unit(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sys.modules.pop("bench_train", None)
    from bench_train import METHODS

    missing = REGISTERED - IMPLIED_VIEWS - units(METHODS)
    assert not missing, f"benchmarks/bench_train.py METHODS has no method using {sorted(missing)}"
