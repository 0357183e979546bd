"""Typed records of a results file: an STS score, a transfer score, diagnostics, run metadata.

The results JSON stays the contract and `RunResult` keeps its objects as plain dicts (what the
report, `check` and `export` index into); a record is a typed, frozen copy of one of them:

    run = load_run("reports/runs/minilm-test.json")
    run.scores()["STS12"].subsets["MSRpar"].spearman     # STSScore -> SubsetScore
    run.meta_record().protocol, run.diagnostics_record().values["uniformity"]

`Record.from_dict(d).to_dict() == d` for every file embeval writes, keys in the same order:
fields the record does not name are kept in `extra`, and the source's key order is remembered.
Writers may build a record and store its `to_dict()`: it has the layout `score` writes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields

DIAGNOSTIC_COUNTS = ("n_sentences", "n_positive_pairs")  # `diagnostics` fields that are counts


def _ordered(d: dict, order: tuple[str, ...]) -> dict:
    """`d` with the keys of `order` (the source's key order) first, in that order."""
    head = {k: d[k] for k in order if k in d}
    return {**head, **{k: v for k, v in d.items() if k not in head}}


class _Record:
    """from_dict/to_dict for a dataclass whose fields are keys of the JSON object.

    A field is written when it has a value, or when the source had it (as null); `extra` holds
    the keys without a field, `_order` the source's key order. Fields with metadata key=False
    (a task's name, the key of its entry) are not written."""

    _nested: dict[str, type] = {}  # dict-valued field -> record class of each of its values
    _layout: tuple[str, ...] = ()  # key order of a record built in code, as `score` writes it

    @classmethod
    def _names(cls) -> set[str]:
        return {f.name for f in fields(cls) if f.metadata.get("key", True)} - {"extra", "_order"}

    @classmethod
    def from_dict(cls, d: dict, **given):
        d = copy.deepcopy(d)  # a view: editing its lists or dicts leaves the run's own alone
        names = cls._names()
        kw = {k: v for k, v in d.items() if k in names}
        for k, sub in cls._nested.items():
            if k in kw:
                kw[k] = {name: sub.from_dict(v) for name, v in kw[k].items()}
        extra = {k: v for k, v in d.items() if k not in names}
        return cls(**kw, **given, extra=extra, _order=tuple(d))

    def to_dict(self) -> dict:
        out = {}
        for name in self._names():
            v = getattr(self, name)
            if v is None and name not in self._order:
                continue
            if name in self._nested:
                if not v and name not in self._order:
                    continue
                v = {k: r.to_dict() for k, r in v.items()}
            out[name] = v
        order = self._order or self._layout or tuple(f.name for f in fields(self))
        return _ordered({**out, **self.extra}, order)


def _extra():
    return field(default_factory=dict)


def _order():
    return field(default=(), repr=False, compare=False)


@dataclass(frozen=True)
class Correlations(_Record):
    """Spearman and Pearson x100 of one aggregate of subsets (`all`, `mean`, `wmean`)."""

    spearman: float
    pearson: float | None = None
    extra: dict = _extra()
    _order: tuple[str, ...] = _order()


@dataclass(frozen=True)
class SubsetScore(_Record):
    """Spearman and Pearson x100 of one subset of an STS12-16 task (MSRpar, headlines, ...)."""

    spearman: float
    pearson: float | None = None
    n: int | None = None
    extra: dict = _extra()
    _order: tuple[str, ...] = _order()


@dataclass(frozen=True)
class STSScore(_Record):
    """One STS task: Spearman x100 is the primary figure (cosine vs gold; STS12-16: `all`)."""

    _nested = {"subsets": SubsetScore, "aggregates": Correlations}
    _layout = ("split", "n", "spearman", "pearson", "subsets", "aggregates")

    task: str = field(metadata={"key": False})  # the key of the entry in `tasks`
    spearman: float
    pearson: float | None = None
    split: str | None = None
    n: int | None = None
    subsets: dict[str, SubsetScore] = field(default_factory=dict)  # STS12-16 only
    aggregates: dict[str, Correlations] = field(default_factory=dict)  # all, mean, wmean
    extra: dict = _extra()
    _order: tuple[str, ...] = _order()

    @property
    def metrics(self) -> dict[str, float]:
        """The figures of the task, by metric name."""
        named = (("spearman", self.spearman), ("pearson", self.pearson))
        return {k: v for k, v in named if v is not None}


@dataclass(frozen=True)
class TransferScore(_Record):
    """One SentEval transfer task: test accuracy x100 (MRPC also F1), C chosen on dev/CV."""

    _layout = ("split", "n", "n_train", "accuracy", "dev_accuracy", "C", "f1")

    task: str = field(metadata={"key": False})
    accuracy: float
    split: str | None = None
    n: int | None = None
    n_train: int | None = None
    dev_accuracy: float | None = None
    f1: float | None = None
    C: float | list[float] | None = None  # one per outer fold under 10-fold CV
    extra: dict = _extra()
    _order: tuple[str, ...] = _order()

    @property
    def metrics(self) -> dict[str, float]:
        """The figures of the task, by metric name."""
        named = (("accuracy", self.accuracy), ("f1", self.f1), ("dev_accuracy", self.dev_accuracy))
        return {k: v for k, v in named if v is not None}


@dataclass(frozen=True)
class RankingScore(_Record):
    """One ranking task (EvalRank): MR (mean rank), MRR and Hits@k x100 of its positive pairs
    among a pool of `pool` sentences (`embeval.eval.metrics.ranking`)."""

    _layout = ("split", "n", "pool", "mr", "mrr")

    task: str = field(metadata={"key": False})
    mrr: float
    mr: float | None = None
    split: str | None = None
    n: int | None = None
    pool: int | None = None
    extra: dict = _extra()  # hits@k: one key per k
    _order: tuple[str, ...] = _order()

    @property
    def hits(self) -> dict[int, float]:
        """Hits@k x100 by k, in the file's order."""
        return {int(k[5:]): v for k, v in self.extra.items() if k.startswith("hits@")}

    @property
    def metrics(self) -> dict[str, float]:
        """The figures of the task, by metric name (mr, mrr, hits@k)."""
        named = {"mr": self.mr, "mrr": self.mrr, **{f"hits@{k}": v for k, v in self.hits.items()}}
        return {k: v for k, v in named.items() if v is not None}


@dataclass(frozen=True)
class Diagnostics(_Record):
    """Geometry of the embeddings (`embeval.eval.metrics.diagnostics`) and what it was measured on.

    `values`: every measure the file holds, by name (alignment, uniformity, ...); a run without
    positive pairs has no alignment, a run without STS-B no diagnostics at all."""

    source: str | None = None  # "TASK/SPLIT" of the pairs measured
    n_sentences: int | None = None
    n_positive_pairs: int | None = None
    values: dict[str, float] = field(default_factory=dict, metadata={"key": False})
    extra: dict = _extra()
    _order: tuple[str, ...] = _order()

    @classmethod
    def from_dict(cls, d: dict, **given):
        d = copy.deepcopy(d)
        named = {"source", *DIAGNOSTIC_COUNTS}
        values = {k: v for k, v in d.items() if k not in named and _is_measure(v)}
        kw = {k: d[k] for k in named if k in d}
        extra = {k: v for k, v in d.items() if k not in named and k not in values}
        return cls(**kw, values=values, **given, extra=extra, _order=tuple(d))

    def to_dict(self) -> dict:
        return _ordered({**super().to_dict(), **self.values}, self._order)


def _is_measure(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


@dataclass(frozen=True)
class RunMeta(_Record):
    """How a run was made: model, protocol, split, cut, embeval version, time, data checksums.

    The encoder's own description (`fingerprint`, `pooler`, `max_length`, `dtype`, device, batch
    size, cache counts, ...) is kept in `extra` beside `checkpoint`."""

    embeval_version: str | None = None
    created: str | None = None  # ISO 8601, UTC
    checkpoint: str | None = None
    protocol: str | None = None  # simcse | mteb
    split: str | None = None
    limit: int | None = None  # --limit N: first N pairs per task
    partial: bool | None = None  # True when --limit cut a task
    quantize: str | None = None  # "int8"; absent for float32
    transductive: bool | None = None  # True: fitted on the scored sentences (--whiten target)
    data_root: str | None = None
    data_checksums: dict[str, str] | None = None
    n_sentences: int | None = None
    world_size: int | None = None
    timings: dict[str, float] | None = None
    transfer: dict | None = None  # TransferConfig of runs with transfer tasks
    sweep: dict | None = None  # {"axis": "dims"|"layers", "value": N, "of": base run name}
    extra: dict = _extra()
    _order: tuple[str, ...] = _order()


def score_record(task: str, entry: dict) -> STSScore | TransferScore | RankingScore | None:
    """The typed record of one `tasks` entry: STS (has spearman), transfer (has accuracy),
    ranking (has mrr), or None for an entry of none of these kinds."""
    if "spearman" in entry:
        return STSScore.from_dict(entry, task=task)
    if "accuracy" in entry:
        return TransferScore.from_dict(entry, task=task)
    if "mrr" in entry:
        return RankingScore.from_dict(entry, task=task)
    return None
