"""The task registry: every benchmark task is one `Task` record in `TASKS`, found by name.

A record holds the facts about a task that used to be spread over the readers, the scorer,
the downloads and the MTEB export: its kind, splits, aliases, where its files live, how to
load it, its MTEB name and dataset revision, and whether it counts in SimCSE's averages.
Adding a task is adding a record; a task not flagged `in_simcse_avg` / `in_transfer_avg`
never changes an average (an average is computed only when all its flagged tasks ran).

Averages (Gao et al., 2021, SimCSE, Tables 1 and 2): STS Avg. = mean Spearman of STS12-16,
STS-B and SICK-R; transfer Avg. = mean accuracy of MR, CR, SUBJ, MPQA, SST2, TREC, MRPC.

A user's own task, without a fork: `embeval score --tasks my_pkg.tasks:TOY` loads the `Task`
record `TOY` from an importable module (or an entry point in the group `embeval.tasks`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from embeval.eval.data import evalrank, sts
from embeval.eval.data import transfer as tr
from embeval.eval.data.paths import DataError, data_root
from embeval.registry import Registry, UnknownUnit, closest

KINDS = ("sts", "transfer", "ranking")


@dataclass(frozen=True)
class Task:
    """One benchmark task: what it is, where its data lives, how it is loaded and counted.

    `loader(root, split, protocol)` returns the task's data for a data root (a `Path`): an
    `STSData` for kind "sts" (scored by the cosine of each pair against its gold score), a
    `TransferData` for kind "transfer" (a classifier on frozen embeddings), a `RankingData`
    for kind "ranking" (each positive pair's rank among a pool of sentences).
    """

    name: str
    kind: str  # one of KINDS
    loader: Callable[[Any, str, str], Any]
    splits: tuple[str, ...] = ("test",)
    aliases: tuple[str, ...] = ()
    description: str = ""  # what it is, with its paper or source; first sentence: --help
    mteb_name: str | None = None  # MTEB's task name, None when MTEB has no counterpart
    mteb_revision: str | None = None  # the HF dataset revision MTEB's task reads
    mteb_splits: tuple[str, ...] | None = None  # splits under --protocol mteb; None: `splits`
    in_simcse_avg: bool = False  # one of SimCSE's seven STS tasks (the Avg. column)
    in_transfer_avg: bool = False  # one of SimCSE's seven transfer tasks
    data_group: str | None = None  # top folder of the data root (download/verify --only)
    folder: str | None = None  # its folder under the data group
    subsets: tuple[str, ...] = ()  # STS12-16: scored pooled ('all'), reported per subset

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: kind {self.kind!r}, expected one of {KINDS}")
        if not callable(self.loader):
            raise ValueError(f"task {self.name!r}: loader must be callable(root, split, protocol)")
        object.__setattr__(self, "__doc__", self.description)  # the registry's help reads it

    def splits_for(self, protocol: str = "simcse") -> tuple[str, ...]:
        """The splits this task has under `protocol`."""
        return self.mteb_splits if protocol == "mteb" and self.mteb_splits else self.splits


def _check(label: str, unit) -> None:
    if not isinstance(unit, Task):
        raise UnknownUnit(
            f"task {label}: expected an embeval Task record (embeval.eval.data.tasks.Task), "
            f"got {type(unit).__name__}"
        )


TASKS: Registry[Task] = Registry("task", check=_check)


def register(task: Task) -> Task:
    """Add `task` to TASKS under its name and aliases."""
    TASKS.add(task.name, task, task.aliases)
    return task


# ------------------------------------------------------------------ the built-in tasks


def _sts_year(name: str, folder: str, subsets: tuple[str, ...], revision: str, doc: str):
    register(
        Task(
            name,
            "sts",
            partial(sts.read_year, name, folder, subsets),
            description=doc,
            mteb_name=name,
            mteb_revision=revision,
            in_simcse_avg=True,
            data_group="sts",
            folder=folder,
            subsets=subsets,
        )
    )


_sts_year(
    "STS12",
    "STS12-en-test",
    ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"),
    "a0d554a64d88156834ff5ae9920b964011b16384",
    "SemEval-2012 Task 6 STS pairs, 0-5 (Agirre et al., 2012). Five subsets; SimCSE's figure "
    "is the Spearman of all pairs pooled.",
)
_sts_year(
    "STS13",
    "STS13-en-test",
    ("FNWN", "headlines", "OnWN"),
    "7e90230a92c190f1bf69ae9002b8cea547a64cca",
    "*SEM 2013 shared task STS pairs, 0-5 (Agirre et al., 2013). The SMT subset is not "
    "distributed, as in SentEval.",
)
_sts_year(
    "STS14",
    "STS14-en-test",
    ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"),
    "6031580fec1f6af667f0bd2da0a551cf4f0b2375",
    "SemEval-2014 Task 10 English STS pairs, 0-5 (Agirre et al., 2014).",
)
_sts_year(
    "STS15",
    "STS15-en-test",
    ("answers-forums", "answers-students", "belief", "headlines", "images"),
    "ae752c7c21bf194d8b67fd573edf7ae58183cbe3",
    "SemEval-2015 Task 2 English STS pairs, 0-5 (Agirre et al., 2015).",
)
_sts_year(
    "STS16",
    "STS16-en-test",
    ("answer-answer", "headlines", "plagiarism", "postediting", "question-question"),
    "4d8694f8f0e0100860b497b999b3dbed754a0513",
    "SemEval-2016 Task 1 English STS pairs, 0-5 (Agirre et al., 2016).",
)
register(
    Task(
        "STSBenchmark",
        "sts",
        partial(sts.read_stsb, "STSBenchmark", "STSBenchmark"),
        splits=("test", "dev", "train"),
        aliases=("stsb", "sts-b", "sts_b"),
        description="STS Benchmark, pairs from the SemEval 2012-2017 STS tasks, 0-5 (Cer et al., "
        "2017). Train, dev and test splits.",
        mteb_name="STSBenchmark",
        mteb_revision="b0fddb56ed78048fa8b90373c8a3cfc37b684831",
        in_simcse_avg=True,
        data_group="sts",
        folder="STSBenchmark",
    )
)
register(
    Task(
        "SICKRelatedness",
        "sts",
        partial(sts.read_sick, "SICKRelatedness", "SICK"),
        splits=("test", "dev", "train"),
        aliases=("sick", "sickr", "sick-r"),
        description="SICK relatedness, sentence pairs scored 1-5 (Marelli et al., 2014, "
        "SemEval-2014 Task 1). MTEB scores all 9,927 pairs as one test set.",
        mteb_name="SICK-R",
        mteb_revision="20a6d6f312dd54037fe07a32d58e5e168867909d",
        mteb_splits=("test",),
        in_simcse_avg=True,
        data_group="sts",
        folder="SICK",
    )
)


def _transfer(name: str, reader, folder: str, doc: str, *files: str):
    register(
        Task(
            name,
            "transfer",
            partial(reader, name, folder, *files),
            description=doc,
            in_transfer_avg=True,
            data_group="transfer",
            folder=folder,
        )
    )


_transfer(
    "MR",
    tr.read_binary,
    "MR",
    "Movie review snippets, positive or negative (Pang & Lee, 2005). 10-fold CV.",
    "rt-polarity.pos",
    "rt-polarity.neg",
)
_transfer(
    "CR",
    tr.read_binary,
    "CR",
    "Customer product reviews, positive or negative (Hu & Liu, 2004). 10-fold CV.",
    "custrev.pos",
    "custrev.neg",
)
_transfer(
    "SUBJ",
    tr.read_binary,
    "SUBJ",
    "Movie sentences, objective or subjective (Pang & Lee, 2004). 10-fold CV.",
    "subj.objective",
    "subj.subjective",
)
_transfer(
    "MPQA",
    tr.read_binary,
    "MPQA",
    "MPQA opinion phrases, positive or negative polarity (Wiebe et al., 2005). 10-fold CV.",
    "mpqa.pos",
    "mpqa.neg",
)
_transfer(
    "SST2",
    tr.read_sst2,
    "SST",
    "Stanford Sentiment Treebank, binary sentence labels (Socher et al., 2013). C picked on "
    "dev, scored on test.",
)
_transfer(
    "TREC",
    tr.read_trec,
    "TREC",
    "TREC question classification, 6 coarse classes (Li & Roth, 2002). C by 10-fold CV on "
    "train, scored on test.",
)
_transfer(
    "MRPC",
    tr.read_mrpc,
    "MRPC",
    "Microsoft Research Paraphrase Corpus, paraphrase or not (Dolan et al., 2004). Features "
    "[|u-v|, u*v]; accuracy and F1.",
)


register(
    Task(
        "EvalRank",
        "ranking",
        partial(evalrank.read_evalrank, "EvalRank", "evalrank"),
        aliases=("evalrank", "eval-rank"),
        description="EvalRank sentence ranking: each positive STS-B pair's rank among ~25k pool "
        "sentences; MR, MRR, Hits@k (Wang et al., 2022, Just Rank).",
        data_group="evalrank",  # pos_pair.txt, background_sent.txt at the group's top
    )
)


# ------------------------------------------------------------------ looking tasks up


def group(kind: str) -> list[Task]:
    """The registered tasks of `kind`, in registration order: the `--tasks` group of that name."""
    return [t for _, t in TASKS.items() if t.kind == kind]


def simcse_avg_tasks() -> list[str]:
    """The tasks SimCSE's STS Avg. is the mean of: those flagged `in_simcse_avg`."""
    return [n for n, t in TASKS.items() if t.in_simcse_avg]


def transfer_avg_tasks() -> list[str]:
    """The tasks the transfer Avg. is the mean of: those flagged `in_transfer_avg`."""
    return [n for n, t in TASKS.items() if t.in_transfer_avg]


def mteb_task(name: str) -> Task | None:
    """The registered task `name` when MTEB has a counterpart for it, else None."""
    task = TASKS.get(name) if name in TASKS else None
    return task if task is not None and task.mteb_name else None


def resolve(name: str | Task, kinds: Sequence[str] = KINDS) -> Task:
    """The task `name` names: a registered name or alias of one of `kinds` (any case), else
    user code `package.module:NAME` or an entry point (embeval.tasks) holding a Task record.
    An unknown name fails with the closest known one and the list of known tasks."""
    if isinstance(name, Task):
        return name
    key = name.strip()
    known = {n.lower(): n for n, t in TASKS.items() if t.kind in kinds}
    known |= {a.lower(): n for n, t in TASKS.items() if t.kind in kinds for a in t.aliases}
    if key.lower() in known:
        return TASKS.get(known[key.lower()])
    task = None
    if key.lower() not in TASKS:  # a registered task of another kind is unknown here
        if ":" in key:
            task = TASKS.get(key)  # import errors name the module and attribute
        else:
            try:
                task = TASKS.get(key)  # an entry point
            except UnknownUnit:
                task = None
    if task is not None:
        if task.kind not in kinds:
            raise DataError(
                f"task {name!r} is a {task.kind} task; expected one of kind {', '.join(kinds)}"
            )
        return task
    close = closest(key, known)
    hint = f"; did you mean {close}?" if close else "."
    listed = ", ".join(dict.fromkeys(known.values()))
    raise DataError(f"unknown task {name!r}{hint} Known tasks: {listed}")


def select(
    names: Sequence[str | Task] | None, split: str = "test", protocol: str = "simcse"
) -> list[Task]:
    """Tasks for `--tasks`: names, aliases, user code, or groups named after a kind (`sts`,
    `transfer`) that expand to the registered tasks of that kind. Default: the STS tasks that
    have `split` under `protocol` (MTEB's SICK-R is one test set: no dev or train there)."""
    if not names:
        return [t for t in group("sts") if split in t.splits_for(protocol)]
    out: dict[str, Task] = {}
    for n in names:
        key = n.strip().lower() if isinstance(n, str) else None
        for task in (key in KINDS and group(key)) or [resolve(n)]:
            if out.get(task.name, task) != task:
                raise DataError(f"two different tasks are named {task.name!r}: rename one")
            out[task.name] = task
    return list(out.values())


def load(
    task: str | Task,
    split: str = "test",
    root: str | os.PathLike | None = None,
    protocol: str = "simcse",
):
    """The data of `task` for `split`: its loader run on the data root (see `data_root`)."""
    task = resolve(task)
    if split not in sts.SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(sts.SPLITS)}")
    if protocol not in sts.PROTOCOLS:
        raise DataError(
            f"unknown protocol {protocol!r}; expected one of {', '.join(sts.PROTOCOLS)}"
        )
    if split not in task.splits:
        has = " and ".join(task.splits)
        raise DataError(
            f"{task.name} has only a {has} split (asked for {split!r})"
            if len(task.splits) == 1
            else f"{task.name} has only the {has} splits (asked for {split!r})"
        )
    data = task.loader(data_root(root), split, protocol)
    expected = {"sts": sts.STSData, "transfer": tr.TransferData, "ranking": evalrank.RankingData}
    expected = expected.get(task.kind)
    if expected is not None and not isinstance(data, expected):
        raise DataError(
            f"task {task.name!r}: its loader returned {type(data).__name__}; a {task.kind} task "
            f"loads an {expected.__module__}.{expected.__name__}"
        )
    return data
