"""View builders: how a batch of training examples becomes the texts the model encodes.

A view builder takes the batch's examples (tuples of texts, as `embeval.core.train_data` reads
them) and returns `Views`: view 0 holds the anchors, view 1 their positives (the diagonal of the
similarity matrix) and any further view extra candidate columns (hard negatives). Texts that two
views share (the same sentence twice) are one column of `Views.texts`, tokenized once and counted
once when cut to max_length. A method that makes its positives differently (another augmentation,
a back-translation) is one function and one `@VIEWS.register` line; the loop and the losses stay
as they are. A user's own builder is ``--view package.module:function`` or an entry point in the
group ``embeval.views``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from embeval.registry import Registry, UnknownUnit

Example = tuple[str, ...]


@dataclass(frozen=True)
class Views:
    """The texts of a batch's views: view v is `texts[order[v]]`, b texts each."""

    texts: list[list[str]]  # distinct text columns, (C, b)
    order: tuple[int, ...]  # (V,) column of each view: 0 anchors, 1 positives, 2+ extra columns

    def __post_init__(self):
        if len(self.order) < 2:
            raise ValueError(f"a view builder must give anchors and positives, got {self.order}")
        if not all(0 <= c < len(self.texts) for c in self.order):
            raise ValueError(f"views {self.order} name a column beyond the {len(self.texts)} given")
        if len({len(col) for col in self.texts}) > 1:
            raise ValueError("every view must hold one text per example of the batch")


ViewBuilder = Callable[[Sequence[Example]], Views]


def _check_view(label: str, fn) -> None:
    if not callable(fn):
        raise UnknownUnit(f"view {label}: expected a function view(examples) -> Views")


VIEWS: Registry[ViewBuilder] = Registry("view", check=_check_view)


@VIEWS.register("dropout")
def dropout(examples: Sequence[Example]) -> Views:
    """Unsupervised SimCSE (Gao, Yao & Chen, EMNLP 2021): each sentence twice, dropout as noise.

    The encoder runs in training mode, so the two forward passes of one sentence see different
    dropout masks; the second is the first's positive, the other sentences of the batch its
    negatives. Of a CSV's columns only sent0 is used.
    """
    return Views([[ex[0] for ex in examples]], (0, 0))


@VIEWS.register("pairs")
def pairs(examples: Sequence[Example]) -> Views:
    """Supervised SimCSE (Gao, Yao & Chen, EMNLP 2021): sent1 the positive, hard_neg a negative.

    As SimCSE's NLI training: an entailment is the positive, the contradiction (third CSV
    column) one more candidate column per anchor, (B, 2B) similarities.
    """
    if len(examples[0]) < 2:
        raise ValueError(
            "view 'pairs' needs a CSV with sent0,sent1[,hard_neg] columns; this file holds one "
            "sentence per line (use --view dropout)"
        )
    cols = range(len(examples[0]))  # sent0, sent1[, hard_neg]
    return Views([[ex[c] for ex in examples] for c in cols], tuple(cols))


@VIEWS.register("labelled-pairs")
def labelled_pairs(examples: Sequence[Example]) -> Views:
    """Labelled pairs (CSV sent0,sent1,label): sent0 the anchors, sent1 the second view; the
    label is not a text (an objective such as `sbert-nli` reads it from the examples)."""
    return Views([[ex[0] for ex in examples], [ex[1] for ex in examples]], (0, 1))


def default_view(columns: Sequence[str]) -> str:
    """The view a training file implies: one sentence per line -> dropout, a CSV -> pairs,
    a labelled CSV (sent0,sent1,label) -> labelled-pairs."""
    if "label" in columns:
        return "labelled-pairs"
    return "dropout" if len(columns) == 1 else "pairs"


def view_name(view: str | None, columns: Sequence[str]) -> str:
    """`view` as recorded in a run's config: the registered name (aliases and case resolved),
    user code as given, and None (by the data) replaced by the data's default."""
    return default_view(columns) if view is None else VIEWS.canonical(view)


def extra_views(view: str, example: Example) -> int:
    """How many views beyond anchors and positives `view` builds for examples like `example`
    (each adds one candidate column per anchor); a ValueError if the view cannot use them."""
    return len(VIEWS.get(view)([example]).order) - 2
