"""SentEval transfer tasks (MR, CR, SUBJ, MPQA, SST2, TREC, MRPC) on frozen embeddings.

Conneau & Kiela 2018, "SentEval: An Evaluation Toolkit for Universal Sentence Representations",
scikit-learn path (``usepytorch=False``), as SimCSE (Gao et al. 2021) reports its transfer table:
- MR, CR, SUBJ, MPQA: 10-fold stratified cross-validation (shuffled, seed 1111); in each outer
  fold the L2 strength C is picked by an inner 10-fold CV over C in 2^-2..2^3
  (SentEval's `InnerKFoldClassifier`); accuracy = mean over the outer folds.
- SST2: C in 2^-2..2^3 picked on dev, the classifier trained on train, scored on test
  (`SplitClassifier`).
- TREC (6 coarse classes) and MRPC: C in 2^-1..2^5 picked by 10-fold CV on train, trained on all
  of train, scored on test (`KFoldClassifier`); MRPC's features are [|u-v|, u*v], and it also
  reports F1 of the paraphrase class.
Classifier: `LogisticRegression(C, random_state=1111)` with scikit-learn's defaults, as SentEval.
Figures are x100. The tasks' data and readers (in SentEval's order and text) are
`embeval.eval.data.transfer`'s; which tasks exist and which make the average, the registry's.
"""

from __future__ import annotations

import functools
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from embeval.eval.data import tasks as task_registry
from embeval.eval.data.paths import DataError
from embeval.eval.data.transfer import Split, TransferData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransferConfig:
    """SentEval's settings; change them only to trade faithfulness for speed."""

    kfold: int = 10  # SimCSE evaluates with params kfold=10
    seed: int = 1111  # SentEval's default seed
    max_iter: int = 100  # scikit-learn's default, which SentEval uses
    n_jobs: int = -1  # joblib workers for the fits; -1 = every core
    # True: one joblib job per fold (all its C's), each fit on one BLAS/OpenMP thread, so the
    # cores hold one fit each instead of oversubscribed threads; False: SentEval's loop, one
    # job per (fold, C), library thread defaults (the reference the benchmark compares with).
    # Same fits either way: results are equal (tests/test_transfer.py, bench_transfer --compare).
    fast: bool = True


# ------------------------------------------------------------------------------- classifier


def _fit_score(c: float, cfg: TransferConfig, x, y, train, test, xte=None, yte=None):
    """Fit one logistic regression on rows `train` of (x, y); (accuracy, predictions) on rows
    `test`, or on (xte, yte) when given. Rows travel as indices so that joblib ships each
    matrix to the workers once (memory-mapped), not once per fit."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    xtr, ytr = (x, y) if train is None else (x[train], y[train])
    if xte is None:
        xte, yte = x[test], y[test]
    with warnings.catch_warnings():  # sklearn's 100 iterations, as SentEval; don't flood logs
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(C=c, random_state=cfg.seed, max_iter=cfg.max_iter).fit(xtr, ytr)
    pred = clf.predict(xte)
    return float(np.mean(pred == yte)), pred


def _fit_grid(regs, cfg: TransferConfig, x, y, train, test, xte=None, yte=None) -> list:
    """`_fit_score` for every C of `regs` on one fold, on one thread: the fast path's job.
    The fold's rows are gathered once (not once per C) and each fit runs single-threaded,
    since the cores are already busy with one such job each: sklearn's OpenMP loss and BLAS
    threads on a loaded machine spin-wait (11 s instead of 0.6 s for one TREC fit, measured)."""
    xtr, ytr = (x, y) if train is None else (x[train], y[train])
    if xte is None:
        xte, yte = x[test], y[test]
    with _threadpools().limit(limits=1):
        return [_fit_score(c, cfg, xtr, ytr, None, None, xte, yte) for c in regs]


@functools.cache
def _threadpools():
    """This process's BLAS/OpenMP pools, found once: finding them takes ~0.1 s, a fit less."""
    import sklearn.linear_model  # noqa: F401  (its OpenMP and BLAS libraries loaded first)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _fits(jobs: list, cfg: TransferConfig) -> list[list]:
    """Run `jobs`, each (regs, x, y, train, test[, xte, yte]): [[(accuracy, predictions) per C]
    per job]. Fast path: one joblib job per fold (`_fit_grid`), or per C when there is a single
    fold (SST2's dev, a final fit); reference: one joblib job per (fold, C), as before."""
    from joblib import Parallel, delayed

    if not cfg.fast:
        flat = Parallel(n_jobs=cfg.n_jobs)(
            delayed(_fit_score)(c, cfg, *rest) for regs, *rest in jobs for c in regs
        )
        sizes = np.cumsum([0] + [len(regs) for regs, *_ in jobs])
        return [flat[i:j] for i, j in zip(sizes[:-1], sizes[1:], strict=True)]
    if len(jobs) == 1 and len(jobs[0][0]) == 1:  # a final fit: here, without a worker
        return [_fit_grid(*jobs[0][:1], cfg, *jobs[0][1:])]
    if len(jobs) == 1:  # one fold (SST2's dev): spread its C's instead
        regs, *rest = jobs[0]
        return [[r[0] for r in _fits([([c], *rest) for c in regs], cfg)]]
    return Parallel(n_jobs=cfg.n_jobs)(delayed(_fit_grid)(regs, cfg, *rest) for regs, *rest in jobs)


def _folds(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(skf.split(np.zeros(len(y)), y))


def check_classes(task: str, split: str, y: np.ndarray, classes, need: int, why: str) -> None:
    """Every class present with at least `need` examples, else a clear error."""
    counts = np.bincount(y, minlength=len(classes))
    for name, n in zip(classes, counts, strict=True):
        if n == 0:
            raise DataError(f"{task} {split}: class {name!r} has no examples (empty class)")
        if n < need:
            raise DataError(
                f"{task} {split}: class {name!r} has {n} examples, fewer than {why} needs "
                f"({need} per class); use a larger --limit or the full data"
            )


def min_per_class_nested(k: int) -> int:
    """Smallest class size that leaves k examples for the inner k-fold in every outer fold."""
    m = k
    while m - -(-m // k) < k:  # outer test part takes at most ceil(m / k)
        m += 1
    return m


def inner_kfold(x, y, task, classes, cfg: TransferConfig, timings: dict | None = None) -> dict:
    """SentEval's InnerKFoldClassifier: outer k-fold test accuracy, C from inner k-fold."""
    k, regs = cfg.kfold, [2.0**t for t in range(-2, 4)]
    check_classes(task, "all", y, classes, min_per_class_nested(k), f"nested {k}-fold CV")
    outer = _folds(y, k, cfg.seed)
    inner = [_folds(y[tr], k, cfg.seed) for tr, _ in outer]
    t0 = time.perf_counter()
    jobs = [
        (regs, x, y, tr[itr], tr[ite])
        for (tr, _), f in zip(outer, inner, strict=True)
        for itr, ite in f
    ]
    acc = np.array([[a for a, _ in r] for r in _fits(jobs, cfg)])  # (k * k, regs)
    acc = np.ascontiguousarray(acc.reshape(k, k, len(regs)).transpose(0, 2, 1))  # (k, regs, k)
    dev = np.round(100 * acc.mean(axis=2), 2)  # (k, regs); the old reduction order, rounded
    best = [regs[int(np.argmax(row))] for row in dev]  # before the argmax, as SentEval
    t1 = time.perf_counter()
    final = [([c], x, y, tr, te) for c, (tr, te) in zip(best, outer, strict=True)]
    test = [round(100 * r[0][0], 2) for r in _fits(final, cfg)]
    _timed(timings, t0, t1, time.perf_counter())
    return {
        "accuracy": round(float(np.mean(test)), 2),
        "dev_accuracy": round(float(np.mean(dev.max(axis=1))), 2),
        "C": best,
        "n": int(len(y)),
    }


def _timed(timings: dict | None, t0: float, t1: float, t2: float) -> None:
    """Seconds of the two phases: the search for C (every fold x C) and the final fit(s)."""
    if timings is not None:
        timings["search_s"] = timings.get("search_s", 0.0) + t1 - t0
        timings["final_s"] = timings.get("final_s", 0.0) + t2 - t1


def kfold_then_test(train: Split, test: Split, xtr, xte, task, classes, cfg, timings=None) -> dict:
    """SentEval's KFoldClassifier: C by k-fold CV on train, then train on all of it, test."""
    k, regs = cfg.kfold, [2.0**t for t in range(-1, 6)]
    check_classes(task, "train", train.y, classes, k, f"{k}-fold CV")
    folds = _folds(train.y, k, cfg.seed)
    t0 = time.perf_counter()
    acc = np.array(
        [[a for a, _ in r] for r in _fits([(regs, xtr, train.y, a, b) for a, b in folds], cfg)]
    )
    dev = np.round(100 * np.ascontiguousarray(acc.T).mean(axis=1), 2)  # (regs,), as before
    c = regs[int(np.argmax(dev))]
    t1 = time.perf_counter()
    [[(a, pred)]] = _fits([([c], xtr, train.y, None, None, xte, test.y)], cfg)
    _timed(timings, t0, t1, time.perf_counter())
    return {"accuracy": round(100 * a, 2), "dev_accuracy": float(dev.max()), "C": c, "pred": pred}


def split_classifier(tr: Split, dv: Split, te: Split, xs, task, classes, cfg, timings=None) -> dict:
    """SentEval's SplitClassifier: C picked on dev, trained on train, scored on test."""
    regs = [2.0**t for t in range(-2, 4)]
    check_classes(task, "train", tr.y, classes, 1, "training")
    xtr, xdv, xte = xs
    t0 = time.perf_counter()
    [res] = _fits([(regs, xtr, tr.y, None, None, xdv, dv.y)], cfg)
    dev = np.round([100 * a for a, _ in res], 2)
    c = regs[int(np.argmax(dev))]
    t1 = time.perf_counter()
    [[(a, _)]] = _fits([([c], xtr, tr.y, None, None, xte, te.y)], cfg)
    _timed(timings, t0, t1, time.perf_counter())
    return {"accuracy": round(100 * a, 2), "dev_accuracy": float(dev.max()), "C": c}


def evaluate(
    data: TransferData,
    embed: Callable[[list[str]], np.ndarray],
    config: TransferConfig | None = None,
    timings: dict | None = None,
) -> dict:
    """Metrics of one task; `embed` maps sentences to (N, D) vectors (e.g. a cache lookup).
    `timings`, when given, receives the seconds of the search for C and of the final fit(s)."""
    from sklearn.metrics import f1_score

    cfg = config or TransferConfig()
    sp, task, classes = data.splits, data.task, data.classes
    for name, s in sp.items():
        if len(s) == 0:
            raise DataError(f"{task} {name}: no examples")
        if s.y.min() < 0 or s.y.max() >= len(classes):
            raise DataError(f"{task} {name}: labels outside 0..{len(classes) - 1}")
    if "all" in sp:
        out = inner_kfold(embed(sp["all"].x), sp["all"].y, task, classes, cfg, timings)
        return {"split": data.split_label, **out}
    if "dev" in sp:  # SST2: SentEval's own dev split picks C
        xs = [embed(sp[k].x) for k in ("train", "dev", "test")]
        out = split_classifier(sp["train"], sp["dev"], sp["test"], xs, task, classes, cfg, timings)
    elif sp["train"].x2 is not None:  # MRPC: [|u-v|, u*v]
        xtr, xte = (pair_features(embed(sp[k].x), embed(sp[k].x2)) for k in ("train", "test"))
        out = kfold_then_test(sp["train"], sp["test"], xtr, xte, task, classes, cfg, timings)
        out["f1"] = round(100 * float(f1_score(sp["test"].y, out["pred"])), 2)
    else:
        xtr, xte = embed(sp["train"].x), embed(sp["test"].x)
        out = kfold_then_test(sp["train"], sp["test"], xtr, xte, task, classes, cfg, timings)
    out.pop("pred", None)
    return {"split": "test", "n": len(sp["test"]), "n_train": len(sp["train"]), **out}


def pair_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:  # (N, D), (N, D) -> (N, 2D)
    """SentEval's MRPC features: [|u - v|, u * v]."""
    return np.concatenate([np.abs(u - v), u * v], axis=1)


def transfer_average(tasks: dict[str, dict]) -> float | None:
    """Mean accuracy (each rounded to two decimals) of the tasks the registry flags
    `in_transfer_avg` (SimCSE's seven), when all of them ran; other tasks never count."""
    names = task_registry.transfer_avg_tasks()
    if not names or not all(t in tasks for t in names):
        return None
    return float(np.mean([round(tasks[t]["accuracy"], 2) for t in names]))
