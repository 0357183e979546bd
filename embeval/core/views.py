"""View builders: how a batch of training examples becomes the texts the model encodes.

A view builder takes the batch's examples (tuples of texts, as `embeval.core.train_data` reads
them) and returns `Views`: view 0 holds the anchors, view 1 their positives (the diagonal of the
similarity matrix) and any further view extra candidate columns (hard negatives). Texts that two
views share (the same sentence twice) are one column of `Views.texts`, tokenized once and counted
once when cut to max_length. A method that makes its positives differently (another augmentation,
a back-translation) is one function and one `@VIEWS.register` line; the loop and the losses stay
as they are. A user's own builder is ``--view package.module:function`` or an entry point in the
group ``embeval.views``.

A builder's keyword arguments after `examples` are its settings (``--view-arg KEY=VALUE``, typed
by their defaults as loss arguments are). Noise below the text (ESimCSE's duplicated subword
tokens, ConSERT's embedding-layer shuffles and cutoffs) is an `Augment` per view: the batch
applies its `token_ids` to each tokenized sentence and its `position_ids` / `embeddings` to the
view's rows of the embedding layer (`embeval.core.augment`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from embeval.registry import Registry, UnknownUnit

Example = tuple[str, ...]


class Augment:
    """A view's noise below its text; override what the method changes (each default changes
    nothing). Randomness comes from Python's `random` or torch's global generator, whose states
    a run saves, so that --resume draws what an uninterrupted run draws."""

    def bind(self, tokenizer) -> None:
        """Called with the run's tokenizer before `token_ids` (noise that needs its ids)."""

    def token_ids(self, ids: list[int]) -> list[int]:
        """One sentence's token ids, [CLS] ... [SEP] without padding -> the view's ids."""
        return ids

    def position_ids(self, position_ids, attention_mask):  # (b, T), (b, T) -> (b, T)
        """The position ids the embedding layer uses for the view's rows."""
        return position_ids

    def embeddings(self, emb, attention_mask):  # (b, T, H), (b, T) -> (b, T, H)
        """The embedding layer's output (after its LayerNorm and dropout) for the view's rows."""
        return emb

    def changes_embedding_layer(self) -> bool:
        cls = type(self)
        return (
            cls.position_ids is not Augment.position_ids or cls.embeddings is not Augment.embeddings
        )


@dataclass(frozen=True)
class Views:
    """The texts of a batch's views: view v is `texts[order[v]]`, b texts each, with noise
    `augment[v]` (none when `augment` is empty or holds None). A single view (anchors only)
    leaves every candidate column, positives first, to the negatives providers."""

    texts: list[list[str]]  # distinct text columns, (C, b)
    order: tuple[int, ...]  # (V,) column of each view: 0 anchors, 1 positives, 2+ extra columns
    augment: tuple[Augment | None, ...] = ()  # (V,) or ()

    def __post_init__(self):
        if len(self.order) < 1:
            raise ValueError(f"a view builder must give anchors (and positives), got {self.order}")
        if not all(0 <= c < len(self.texts) for c in self.order):
            raise ValueError(f"views {self.order} name a column beyond the {len(self.texts)} given")
        if len({len(col) for col in self.texts}) > 1:
            raise ValueError("every view must hold one text per example of the batch")
        if self.augment and len(self.augment) != len(self.order):
            raise ValueError(f"{len(self.augment)} augmentations for {len(self.order)} views")


ViewBuilder = Callable[..., Views]  # view(examples, **settings)


def _check_view(label: str, fn) -> None:
    if not callable(fn):
        raise UnknownUnit(f"view {label}: expected a function view(examples, **args) -> Views")


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


def view_arguments(view: str, given: dict | None = None) -> dict:
    """The settings view builder `view` runs with: its keyword defaults overridden by `given`
    (text converted to the default's type); an unknown key or a bad value is a ValueError."""
    from embeval.core.losses import bind_loss_arguments  # the binder losses use

    return bind_loss_arguments(VIEWS.get(view), given, VIEWS.canonical(view), "view", skip=1)


def extra_views(view: str, example: Example, args: dict | None = None) -> int:
    """How many views beyond anchors and positives `view` builds for examples like `example`
    (each adds one candidate column per anchor); a ValueError if the view cannot use them or
    its settings `args` are out of range."""
    return max(0, len(VIEWS.get(view)([example], **view_arguments(view, args)).order) - 2)


@VIEWS.register("anchors")
def anchors(examples: Sequence[Example]) -> Views:
    """Anchors only (DistilCSE, caskcsg/sentemb DistilCSE/): each sentence once, every
    candidate column, positives first, comes from a negatives provider (``--negatives
    teacher``: the teacher's embeddings of the same sentences, then its queue)."""
    return Views([[ex[0] for ex in examples]], (0,))


@VIEWS.register("esimcse")
def esimcse(examples: Sequence[Example], dup_rate: float = 0.32, max_dup: int = 10) -> Views:
    """ESimCSE (Wu et al., COLING 2022; caskcsg/sentemb ESimCSE/): the positive repeats a few
    subword tokens of the sentence ("word repetition"), dropout still on.

    For a sentence of L tokens with [CLS] and [SEP] (cut to max_length first), n =
    randrange(min(max_dup, int(dup_rate * L))) positions among 1 .. L-2 are drawn without
    replacement and each of those tokens is written twice; when int(dup_rate * L) is 0 nothing
    changes (no draw). As the released code's `dup_type bpe`, not the paper's text: token level,
    [CLS]/[SEP] never repeated, the view may end longer than max_length. The code draws once
    per example when it preprocesses the data; this draws anew at every batch. Pair with
    ``--negatives momentum-queue`` for ESimCSE's momentum-contrast negatives.
    """
    from embeval.core.augment import TokenRepetition  # torch-free, but kept beside its kin

    rep = TokenRepetition(dup_rate, max_dup)  # checks its settings
    return Views([[ex[0] for ex in examples]], (0, 0), (None, rep))


CONSERT_AUGMENTS = ("none", "shuffle", "token_cutoff", "feature_cutoff")


@VIEWS.register("consert")
def consert(
    examples: Sequence[Example],
    aug1: str = "feature_cutoff",
    aug2: str = "shuffle",
    cutoff_rate: float = 0.2,
) -> Views:
    """ConSERT (Yan et al., ACL 2021; yym6472/ConSERT): two views of each sentence made in the
    embedding layer, `aug1` for the anchors and `aug2` for the positives.

    shuffle: the position ids of the sentence's tokens ([CLS]/[SEP] included) permuted;
    token_cutoff: int(cutoff_rate * n) of its n tokens' embedding rows zeroed; feature_cutoff:
    int(cutoff_rate * H) embedding dimensions zeroed; none: the sentence as is. Applied to the
    embedding layer's output, after its LayerNorm and dropout, as the code does. The defaults
    are the released unsupervised script's (feature cutoff 0.2 and shuffle); it also turns
    dropout off (``--dropout 0``). Pair with ``--loss nt-xent``.
    """
    from embeval.core.augment import Cutoff, TokenShuffle

    def make(name: str, which: str):
        if name not in CONSERT_AUGMENTS:
            raise ValueError(
                f"view consert: {which} must be one of {CONSERT_AUGMENTS}, got {name!r}"
            )
        if name == "shuffle":
            return TokenShuffle()
        if name.endswith("cutoff"):
            return Cutoff(name.split("_")[0], cutoff_rate)
        return None

    if not 0.0 <= cutoff_rate < 1.0:
        raise ValueError(f"view consert: cutoff_rate must be in [0, 1), got {cutoff_rate}")
    return Views([[ex[0] for ex in examples]], (0, 0), (make(aug1, "aug1"), make(aug2, "aug2")))


# kongds/Prompt-BERT run.sh, unsup-bert: TEMPLATE (anchors) and TEMPLATE2 (positives).
PROMPTBERT_TEMPLATES = (
    'This sentence of "[X]" means [MASK] .',
    'This sentence : "[X]" means [MASK] .',
)


@VIEWS.register("promptbert")
def promptbert(
    examples: Sequence[Example],
    template1: str = PROMPTBERT_TEMPLATES[0],
    template2: str = PROMPTBERT_TEMPLATES[1],
) -> Views:
    """Unsupervised PromptBERT (Jiang et al., EMNLP 2022; kongds/Prompt-BERT): each sentence in
    two different templates, `template1` for the anchors and `template2` for the positives,
    dropout still on; the training pooler reads the [MASK] state (``--pooler promptbert``, or
    ``promptbert_denoised`` to subtract each template's own empty-slot [MASK] state).

    The defaults are the released unsup-bert script's ``This sentence of "[X]" means [MASK] .``
    and ``This sentence : "[X]" means [MASK] .``. The texts stay bare sentences; each view's
    `PromptWrap` puts the sentence's tokens, cut to max_length, into its template, so truncation
    never cuts a template. The reference cuts the sentence's own tokens to max_seq_length;
    here max_length counts [CLS] and [SEP] too (as for every view), two tokens fewer. Neither
    adds a final period in training (the evaluation pooler does, as the reference's
    evaluation). The training config records the pooler with `template1`, as the reference
    evaluates with it.
    """
    from embeval.core.augment import PromptWrap

    for name, t in (("template1", template1), ("template2", template2)):
        for slot in ("[X]", "[MASK]"):
            if t.count(slot) != 1:
                raise ValueError(f"view promptbert: {name} {t!r} must hold {slot} exactly once")
    wraps = (PromptWrap(template1), PromptWrap(template2))
    return Views([[ex[0] for ex in examples]], (0, 0), wraps)
