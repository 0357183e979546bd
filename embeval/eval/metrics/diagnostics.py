"""Diagnostics: the geometry of a run's embeddings, one registry entry per measure.

`score` measures every registered diagnostic; the `embeval score` table and the report list
them from `DIAGNOSTICS` (label, number format, direction), so a new diagnostic is one entry
here (or a user's ``package.module:name`` / entry point in ``embeval.diagnostics``) and shows up
everywhere. The maths are the pure functions of `embeval.eval.metrics.similarity`.

A diagnostic declares what it is measured on, both taken from the STS-B pairs a run scored
(`diagnostics.source` names the set):
- SENTENCES: the (N, D) embeddings of the distinct sentences of those pairs;
- POSITIVES: the (P, D), (P, D) embeddings of the pairs with gold > 4 (SimCSE's positives for
  alignment); a run without such pairs has no value for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from embeval.eval.metrics import similarity
from embeval.registry import Registry, UnknownUnit, first_line
from embeval.results.records import Diagnostics

SENTENCES = "sentences"
POSITIVES = "positives"
POSITIVE_GOLD_MIN = 4.0  # SimCSE: positive pairs are STS-B pairs with gold score > 4


@dataclass(frozen=True)
class Diagnostic:
    """One measure of an embedding space; `fn` is pure (embeddings in, a float out)."""

    fn: Callable[..., float]  # SENTENCES: fn(x (N, D)); POSITIVES: fn(x (P, D), y (P, D))
    needs: str  # SENTENCES or POSITIVES
    label: str  # as tables and the report print it
    fmt: str  # format spec of its value, e.g. ".3f"
    higher_is_better: bool
    doc: str = field(default="", compare=False)

    def __post_init__(self):
        if self.needs not in (SENTENCES, POSITIVES):
            raise ValueError(
                f"diagnostic needs {self.needs!r}; expected {SENTENCES} or {POSITIVES}"
            )
        # `--help` texts and docs read a unit's __doc__: the measure's own, not this class's
        object.__setattr__(self, "__doc__", self.doc or self.fn.__doc__ or "")

    def format(self, value: float | None) -> str:
        return "—" if value is None else format(value, self.fmt)

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    @property
    def summary(self) -> str:
        """The first sentence of its docstring: what the report's legend says of it."""
        return first_line(self)


def _check(label: str, unit) -> None:
    if not isinstance(unit, Diagnostic):
        raise UnknownUnit(
            f"diagnostic {label} is a {type(unit).__name__}; expected an "
            "embeval.eval.metrics.diagnostics.Diagnostic"
        )


DIAGNOSTICS: Registry[Diagnostic] = Registry("diagnostic", check=_check)


def diagnostic(name: str, *, needs: str, label: str, fmt: str, higher_is_better: bool):
    """Decorator: register a pure function as the diagnostic `name`."""

    def add(fn):
        DIAGNOSTICS.add(name, Diagnostic(fn, needs, label, fmt, higher_is_better))
        return fn

    return add


@diagnostic("alignment", needs=POSITIVES, label="alignment", fmt=".3f", higher_is_better=False)
def alignment(x: np.ndarray, y: np.ndarray) -> float:  # (P, D), (P, D) -> scalar
    """Mean squared distance between the two sides of a positive pair, L2-normalised.

    Wang & Isola 2020 ("Understanding contrastive representation learning through alignment and
    uniformity on the hypersphere"), alpha = 2: E_{(x, x+)} ||f(x) - f(x+)||^2, as SimCSE
    (Gao et al. 2021, Figure 2) measures it on STS-B pairs with gold > 4."""
    return similarity.alignment(x, y)


@diagnostic("uniformity", needs=SENTENCES, label="uniformity", fmt=".3f", higher_is_better=False)
def uniformity(x: np.ndarray) -> float:  # (N, D) -> scalar
    """How evenly the sentences spread over the unit sphere (log of a Gaussian potential).

    Wang & Isola 2020, t = 2: log E_{x != y} exp(-2 ||f(x) - f(y)||^2) over all pairs of
    distinct sentences, L2-normalised; SimCSE measures it on all STS-B sentences."""
    return similarity.uniformity(x)


@diagnostic("anisotropy", needs=SENTENCES, label="anisotropy", fmt=".3f", higher_is_better=False)
def anisotropy(x: np.ndarray) -> float:  # (N, D) -> scalar in [-1, 1]
    """Mean cosine between distinct sentences (0 = isotropic, 1 = one direction for all).

    Ethayarajh 2019 ("How contextual are contextualized word representations?") measures it on
    word vectors; PromptBERT (Jiang et al. 2022) on sentence embeddings, as here:
    1 / (N (N - 1)) sum_{i != j} cos(f(x_i), f(x_j))."""
    return similarity.anisotropy(x)


@diagnostic(
    "effective_rank", needs=SENTENCES, label="effective rank", fmt=".1f", higher_is_better=True
)
def effective_rank(x: np.ndarray) -> float:  # (N, D) -> scalar in [1, min(N, D)]
    """How many dimensions the embeddings use: exp of the entropy of the singular values.

    Roy & Vetterli 2007 ("The effective rank: a measure of effective dimensionality"):
    exp(-sum_k p_k log p_k) with p_k = s_k / sum s, s the singular values of the (N, D) matrix
    (not normalised, not centred). A collapsed space has a small one."""
    return similarity.effective_rank(x)


def measure(
    s1: Sequence[str],
    s2: Sequence[str],
    gold: np.ndarray,
    vectors: Callable[[list[str]], np.ndarray],
    source: str,
    names: Sequence[str] | None = None,
) -> dict:
    """Every diagnostic of `names` (default: all registered) on the pairs (s1, s2, gold).

    `vectors` maps texts to their (N, D) embeddings. Returns the results file's `diagnostics`
    object: `source`, `n_sentences`, `n_positive_pairs`, then one value per diagnostic in
    registry order (a POSITIVES one is left out when no pair has gold > POSITIVE_GOLD_MIN)."""
    pos = np.asarray(gold) > POSITIVE_GOLD_MIN
    unique = list(dict.fromkeys([*s1, *s2]))
    out: dict = {"source": source, "n_sentences": len(unique), "n_positive_pairs": int(pos.sum())}
    x = vectors(unique)  # (N, D)
    pairs = None
    for name in names if names is not None else DIAGNOSTICS.names():
        unit = DIAGNOSTICS.get(name)
        if unit.needs == SENTENCES:
            out[DIAGNOSTICS.canonical(name)] = float(unit.fn(x))
        elif pos.any():
            if pairs is None:  # (P, D), (P, D)
                pairs = (
                    vectors([s for s, p in zip(s1, pos, strict=True) if p]),
                    vectors([s for s, p in zip(s2, pos, strict=True) if p]),
                )
            out[DIAGNOSTICS.canonical(name)] = float(unit.fn(*pairs))
    return out


def formatted(d: dict) -> list[tuple[str, str]]:
    """(label, value) of each diagnostic of a results file's `diagnostics` object, as tables and
    the report print them: the registered ones in registry order ("—" where the run has none),
    then any other measure the file holds (a unit registered when it was scored, not now)."""
    values = Diagnostics.from_dict(d).values
    out = [(u.label, u.format(values.get(name))) for name, u in DIAGNOSTICS.items()]
    return out + [(k, f"{v:.3f}") for k, v in values.items() if k not in DIAGNOSTICS]
