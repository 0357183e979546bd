"""Post-processing: encoder wrappers that transform the vectors after the model and the cache.

Each post-processor is one unit in `POSTPROCESSORS`: a class whose instances have
- ``fit_on``: None when there is nothing to learn (applied row by row, e.g. Normalize);
  ``"target"``: fitted on the sentences being scored, in `score` those of each task on its own
  (an STS task: both sides of its scored pairs; a transfer task: all its sentences), so task A's
  statistics never touch task B's vectors; or the path of a UTF-8 text file of sentences, one a
  line, fitted on their vectors;
- ``fit(x (N, D)) -> a fitted instance`` (only when fit_on is set; returns a new object);
- ``transform(x (M, D)) -> (M, D)``;
- optionally ``fit_repeats = True``: a target fit sees every occurrence of a sentence (both sides
  of every pair, duplicates kept) instead of the distinct sentences; ``params() -> dict``: its
  settings, recorded in the chain; ``cache_dir``: set to the embedding cache folder of the chain
  (None without a cache), where the unit may keep what it fitted.
A plain function ``(N, D) -> (N, D)`` is a post-processor without fitting. Your own runs without
a fork as ``--postprocess package.module:name``.

`PostProcessed(inner, name)` wraps any Encoder, as the cache does, so a chain reads
``PostProcessed(PostProcessed(CachedEncoder(TransformerEncoder), "normalize"), "whiten")``: the
cache holds the model's raw vectors and every post-processing applies after it. Its `encode`
fits a fitted unit on the sentences it is given (or its file). `score` encodes one combined list
for all tasks, so it splits the chain (`split_fitted`) and fits per task (`TaskVectors`); the
results record each step (name, what it was fitted on, how many sentences).
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from embeval.core.fileio import atomic_write
from embeval.eval.encoders.cache import CachedEncoder
from embeval.eval.encoders.transformer import Encoder, check_finite
from embeval.registry import Registry, UnknownUnit

log = logging.getLogger(__name__)
TARGET = "target"  # fit_on: the sentences being scored (in `score`, each task's own)


def _check(label: str, unit) -> None:
    if not callable(getattr(unit, "transform", None)) and not callable(unit):
        raise UnknownUnit(
            f"post-processor {label}: expected a class with transform(x) (and fit(x) when it "
            f"declares fit_on), or a function (N, D) -> (N, D); got {type(unit).__name__}"
        )


POSTPROCESSORS: Registry = Registry("post-processor", plural="postprocessors", check=_check)


@POSTPROCESSORS.register("normalize")
class Normalize:
    """Unit length: x / max(||x||, 1e-12) per row, as sentence-transformers' Normalize module.

    sentence-transformers (models/Normalize.py) ends a model with it, e.g. all-MiniLM-L6-v2;
    embeval applies it when the checkpoint's modules.json declares it. Cosines do not change;
    dot products become cosines, and transfer classifiers see unit vectors."""

    fit_on = None

    def transform(self, x: np.ndarray) -> np.ndarray:  # (N, D) -> (N, D)
        x = np.asarray(x, np.float32)
        return (x / np.maximum(torch_cpu_norm(x), 1e-12)).astype(np.float32, copy=False)


TORCH_LANES = 8  # partial sums of torch's float32 CPU norm kernel (one AVX2 register)


def torch_cpu_norm(x: np.ndarray) -> np.ndarray:  # (N, D) float32 -> (N, 1) float32
    """Row L2 norms summed in the order of torch's float32 CPU kernel (`norm_two` over the last
    dim): 8 float32 partial sums, lane j over elements j, j+8, ...; then the lanes in order, then
    the D mod 8 last squares. So Normalize gives, bit for bit, the vectors torch's
    F.normalize gave when it ran inside the model on the CPU (for D >= 16): SentEval classifiers
    move by up to 0.2 points on 1-ulp changes (TREC's C choice), and numpy's pairwise sum differs
    from torch's in about a third of the rows. Without torch: a warm run never imports it."""
    n, d = x.shape
    full = d - d % TORCH_LANES
    sq = x * x  # (N, D)
    lanes = np.zeros((n, TORCH_LANES), np.float32)
    if full:  # cumsum: sequential float32 additions, as the kernel's loop
        blocks = sq[:, :full].reshape(n, full // TORCH_LANES, TORCH_LANES)
        lanes = blocks.cumsum(axis=1, dtype=np.float32)[:, -1]  # (N, 8)
    tail = np.concatenate([lanes, sq[:, full:]], axis=1)  # (N, 8 + D mod 8)
    return np.sqrt(tail.cumsum(axis=1, dtype=np.float32)[:, -1:])  # (N, 1)


class WhiteningError(ValueError):
    """A whitening fit that cannot be made: K above the dimension or the covariance's rank."""


@POSTPROCESSORS.register("whiten", aliases=("whitening",))
class Whiten:
    """Whitening: y = (x - mu) W[:, :K], then unit length (BERT-whitening, WhiteningBERT).

    Fitted on vectors X (N, D): mu = mean(X), Sigma = np.cov(X.T) (N - 1 in the denominator),
    U, s, _ = svd(Sigma), W = U diag(1 / sqrt(s)); the first K columns are kept (K = D: no
    reduction). Su et al. 2021, "Whitening sentence representations for better semantics and
    faster retrieval" (bojone/BERT-whitening, eng/utils.py: compute_kernel_bias,
    transform_and_normalize); Huang et al. 2021, WhiteningBERT (same transform, fitted on the
    evaluated pairs). As bojone's `target` mode, a target fit takes both sides of every scored
    pair, duplicates kept (`fit_repeats`); that run is transductive and its results say so.

    Singular covariance (fewer distinct vectors than dimensions, or a constant direction): a
    direction whose variance s_i <= s_max * D * 2.2e-16 (numpy's matrix_rank tolerance) counts as
    absent; asking for more of them (K above the rank) is an error naming --whiten-dim and the
    rank, never a division by zero. With --whiten-dim at most the rank the transform is exact.

    With an embedding cache, each fit (mu, W) is kept in the model's cache folder under a key
    of the fit vectors' bytes and K: another checkpoint, fit set, earlier step or K never
    reuses it. Computed in float64; the output is float32."""

    fit_repeats = True
    cache_dir: Path | None = None

    def __init__(self, fit_on: str = TARGET, dim: int | None = None, mu=None, w=None):
        self.fit_on, self.dim = fit_on, dim  # dim None: all D dimensions
        self.mu, self.w = mu, w  # (D,), (D, K) once fitted

    def params(self) -> dict:
        return {"dim": self.dim}

    def fit(self, x: np.ndarray) -> Whiten:  # x (N, D)
        x = np.asarray(x, np.float32)
        n, d = x.shape
        k = d if self.dim is None else self.dim
        if k > d:
            raise WhiteningError(f"--whiten-dim {k} is above the vectors' dimension {d}")
        if n < 2:
            raise WhiteningError(f"whitening needs at least 2 fit vectors, got {n}")
        key = hashlib.sha256(f"whiten-v1;{k};{x.shape}".encode() + x.tobytes()).hexdigest()
        path = Path(self.cache_dir) / f"whiten-{key[:32]}.npz" if self.cache_dir else None
        if path is not None and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    mu, w = z["mu"], z["w"]
                if mu.shape == (d,) and w.shape == (d, k):
                    return Whiten(self.fit_on, self.dim, mu, w)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                log.warning("ignoring unreadable whitening cache %s (%s)", path, exc)
        asked = f"--whiten-dim {k}" if self.dim else f"whitening all {d} dimensions"
        mu, w = whitening(x.astype(np.float64), k, asked)
        if path is not None:
            try:
                atomic_write(path, lambda f: np.savez(f, mu=mu, w=w))
            except OSError as exc:  # the cache only saves time
                log.warning("could not cache the whitening fit in %s (%s)", path, exc)
        return Whiten(self.fit_on, self.dim, mu, w)

    def transform(self, x: np.ndarray) -> np.ndarray:  # (M, D) -> (M, K)
        y = (np.asarray(x, np.float64) - self.mu) @ self.w  # (M, K)
        return (y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def spectrum_rank(s: np.ndarray) -> int:
    """Directions with variance among descending covariance singular values s (D,): those above
    s_max * D * float64 eps (numpy's matrix_rank tolerance)."""
    return int((s > s[0] * len(s) * np.finfo(np.float64).eps).sum()) if s[0] > 0 else 0


def covariance_rank(x: np.ndarray) -> int:
    """`spectrum_rank` of the covariance of x (N, D): the most dimensions `Whiten` can keep."""
    return spectrum_rank(np.linalg.svd(np.cov(np.asarray(x, np.float64).T), compute_uv=False))


def whitening(x: np.ndarray, k: int, asked: str = "") -> tuple[np.ndarray, np.ndarray]:
    """(mu (D,), W (D, K)) of `Whiten` fitted on x (N, D) float64; see its docstring. `asked`
    names the request in the error (default: --whiten-dim K)."""
    mu = x.mean(axis=0)  # (D,)
    u, s, _ = np.linalg.svd(np.cov(x.T))  # (D, D), (D,) descending
    rank = spectrum_rank(s)
    if k > rank:
        raise WhiteningError(
            f"{asked or f'--whiten-dim {k}'}: the covariance of the {len(x)} fit vectors has "
            f"rank {rank} "
            f"(of {len(s)} dimensions), so {len(s) - rank} directions have no variance to scale; "
            f"pass --whiten-dim {rank} or less, or fit on more (or more varied) sentences"
        )
    return mu, u[:, :k] / np.sqrt(s[:k])  # W = U diag(1/sqrt(s)), first K columns


class _Function:
    """A plain function used as a post-processor without fitting."""

    fit_on = None

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray]):
        self.fn = fn

    def transform(self, x: np.ndarray) -> np.ndarray:
        return self.fn(x)


def make(name: str):
    """(canonical name, a fresh instance) of post-processor `name`."""
    unit = POSTPROCESSORS.get(name)
    if isinstance(unit, type):
        unit = unit()
    elif not callable(getattr(unit, "transform", None)):
        unit = _Function(unit)
    fit_on = getattr(unit, "fit_on", None)
    if fit_on is not None and not callable(getattr(unit, "fit", None)):
        raise UnknownUnit(f"post-processor {name}: declares fit_on={fit_on!r} but has no fit(x)")
    if fit_on not in (None, TARGET) and not Path(str(fit_on)).expanduser().is_file():
        raise ValueError(
            f"post-processor {name}: fit_on={fit_on!r} is neither {TARGET!r} nor an existing "
            "file of sentences"
        )
    return POSTPROCESSORS.canonical(name), unit


def read_fit_file(path: str) -> list[str]:
    """Sentences of a fit file, one a line (blank lines skipped)."""
    try:
        lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"post-processing fit file {path}: not readable ({exc})") from exc
    sentences = [s for s in (ln.strip() for ln in lines) if s]
    if not sentences:
        raise ValueError(f"post-processing fit file {path} holds no sentences")
    return sentences


def _transformed(unit, x: np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(unit.transform(x), np.float32)
    if y.ndim != 2 or len(y) != len(x):
        raise ValueError(f"post-processor {name} returned shape {y.shape} for input {x.shape}")
    return check_finite(y, f"post-processor {name}")


class PostProcessed:
    """`inner`'s vectors through post-processor `name`; see the module docstring."""

    def __init__(self, inner: Encoder, name: str, unit=None):
        """`unit`: an instance with its own settings (e.g. Whiten(file, dim)) instead of the
        registered default of `name`."""
        self.inner = inner
        self.name, self.unit = make(name)
        self.unit = self.unit if unit is None else unit
        self.fit_on: str | None = getattr(self.unit, "fit_on", None)
        if self.fit_on not in (None, TARGET) and not Path(str(self.fit_on)).is_file():
            raise ValueError(f"post-processor {name}: fit file {self.fit_on} does not exist")
        if hasattr(self.unit, "cache_dir"):  # where the unit may keep its fits
            self.unit.cache_dir = cache_folder(inner)
        fit = f"(fit_on={self.fit_on})" if self.fit_on else ""
        params = "".join(f",{k}={v}" for k, v in self.params().items())
        self.fingerprint = f"{inner.fingerprint};{self.name}{fit}{params}"

    def __getattr__(self, attr: str):  # rank, world_size, info, model: the wrapped encoder's
        if attr == "inner":  # not set yet (copying): no recursion
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def params(self) -> dict:
        params = getattr(self.unit, "params", None)
        return params() if callable(params) else {}

    def step(self) -> dict:
        """This step as results record it (fit sizes are added where it is fitted)."""
        return {"name": self.name, "fit_on": self.fit_on, **self.params()}

    def describe(self) -> dict:
        inner = getattr(self.inner, "describe", dict)()
        out = {**inner, "postprocess": [*inner.get("postprocess", []), self.step()]}
        if isinstance(self.unit, Normalize):
            out["normalize"] = True
        return out

    def fit_sentences(self) -> list[str]:
        """The sentences of this step's fit file ([] unless fit_on names a file)."""
        return [] if self.fit_on in (None, TARGET) else read_fit_file(self.fit_on)

    def encode(self, sentences: Sequence[str]) -> np.ndarray:  # (N, D) float32
        x = np.asarray(self.inner.encode(sentences), np.float32)
        unit = self.unit
        if self.fit_on is not None:  # target: the sentences given here
            fit_x = x if self.fit_on == TARGET else self.inner.encode(self.fit_sentences())
            unit = self.unit.fit(np.asarray(fit_x, np.float32))
        return _transformed(unit, x, self.name)


def cache_folder(encoder) -> Path | None:
    """The embedding cache folder of a chain (its CachedEncoder's), None without a cache."""
    while encoder is not None:
        if isinstance(encoder, CachedEncoder):
            return encoder.dir
        encoder = vars(encoder).get("inner")
    return None


def split_fitted(encoder: Encoder) -> tuple[Encoder, list[PostProcessed]]:
    """(the chain below its innermost fitted step, the steps from there outwards in order).

    `score` encodes all tasks' sentences with the first and applies the others per task; a
    chain without fitted steps comes back whole, with no steps."""
    steps: list[PostProcessed] = []
    while isinstance(encoder, PostProcessed):
        steps.append(encoder)
        encoder = encoder.inner
    steps.reverse()  # application order
    fitted = [i for i, s in enumerate(steps) if s.fit_on is not None]
    if not fitted:
        return (steps[-1] if steps else encoder), []
    first = fitted[0]
    return (steps[first - 1] if first else encoder), steps[first:]


def fit_sentences(steps: Sequence[PostProcessed]) -> list[str]:
    """Sentences the steps' fit files add to a run's one encode call."""
    return [s for step in steps for s in step.fit_sentences()]


class TaskVectors:
    """Per task, the vectors after the fitted post-processing steps: each fitted step is fitted
    for that task on what it declares (the task's own sentences, or its file) after the steps
    before it, then transforms the task's vectors. Fit sizes are kept for the results."""

    def __init__(self, steps: Sequence[PostProcessed], vectors: Callable[[list[str]], np.ndarray]):
        self.steps, self.vectors = list(steps), vectors
        self.sizes: list[dict[str, int]] = [{} for _ in self.steps]  # per step: task -> n
        self.files = [s.fit_sentences() for s in self.steps]
        self.done: dict[str, Callable[[list[str]], np.ndarray]] = {}  # fitted once per task

    def __call__(self, task: str, texts: Sequence[str]) -> Callable[[list[str]], np.ndarray]:
        """vectors(texts) for `task`, whose sentences (all it scores) are `texts`."""
        if not self.steps:
            return self.vectors
        if task not in self.done:
            self.done[task] = self._fit(task, texts)
        return self.done[task]

    def _fit(self, task: str, texts: Sequence[str]) -> Callable[[list[str]], np.ndarray]:
        unique = list(dict.fromkeys(texts))
        row = {s: j for j, s in enumerate(unique)}
        x = self.vectors(unique)  # (U, D)
        units = []  # this task's units so far, fitted: a fit file goes through them too
        for i, step in enumerate(self.steps):
            unit = step.unit
            if step.fit_on is not None:
                fit_x = x
                if step.fit_on == TARGET and getattr(step.unit, "fit_repeats", False):
                    fit_x = x[[row[s] for s in texts]]  # every occurrence, as scored
                elif step.fit_on != TARGET:
                    fit_x = self.vectors(self.files[i])
                    for name, prev in units:
                        fit_x = _transformed(prev, fit_x, name)
                unit = step.unit.fit(fit_x)
                self.sizes[i][task] = len(fit_x)
            x = _transformed(unit, x, step.name)
            units.append((step.name, unit))
        return lambda some: x[[row[s] for s in some]]

    def record(self, chain: list[dict]) -> list[dict]:
        """The run's post-processing chain with, for each fitted step, its fit set's size: per
        task for fit_on target, one number for a file."""
        out = [dict(s) for s in chain]
        tail = out[len(out) - len(self.steps) :] if self.steps else []
        for entry, step, sizes, file in zip(tail, self.steps, self.sizes, self.files, strict=True):
            if step.fit_on == TARGET:
                entry["fit_size"] = dict(sizes)
            elif step.fit_on is not None:
                entry["fit_size"] = len(file)
        return out
