"""Sweeps: one model, one encode, scored at several points along an axis.

The dimension sweep (`embeval score --dims 32,64,128`, Matryoshka evaluation: Kusupati et al.,
NeurIPS 2022, "Matryoshka Representation Learning"; sentence-transformers' `truncate_dim`):
each point keeps the first d coordinates of every vector, then scores as usual (cosine, so a
unit-length model's vectors need no renormalising). The truncation sits right above the model
and its cache, below every post-processor of the chain (`with_truncation`): Normalize, whitening
and the like see the truncated vectors, as they would see a d-dimensional model's. A single run
truncated to d (`embeval score --truncate d`) is the same chain, so each sweep point equals the
single run exactly (tests/test_sweeps.py).

Results representation, shared by every sweep axis (this one, "dims", and the layer sweep,
"layers", in `embeval.eval.scoring.layer_sweep`): a sweep of N points is N ordinary runs, one
results file each (JSON + .pairs.npz, so tables, bootstrap intervals and `check` work on each
point unchanged), with
- `name`: ``f"{base}-{axis}{value}"`` (e.g. ``all-MiniLM-L6-v2-dims128``), the file named after it;
- `meta.sweep`: ``{"axis": "dims" | "layers", "value": N, "of": base}`` (schema 3; `value` an int;
  `of` the base run's name, which groups the points of one sweep in the report);
- the point's own encoder settings in `meta` (here `truncate_dim`), so `run_settings` tells the
  points apart and never lets one file replace another's.
`sweep_points(runs)` groups loaded runs by (axis, of) in value order: what the report's sweep
plot (`embeval.eval.report.plots.sweep_figure`) draws.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # importing this module stays light (the report reads `sweep_points`)
    from embeval.eval.encoders.transformer import Encoder

log = logging.getLogger(__name__)
AXES = ("dims", "layers")


class SweepError(ValueError):
    """A sweep that cannot run as asked (a dimension above the model's, a bad list)."""


class Truncated:
    """The first `dim` coordinates of `inner`'s vectors: (N, D) -> (N, dim)."""

    def __init__(self, inner: Encoder, dim: int):
        if dim < 1:
            raise SweepError(f"truncation dimension must be at least 1, got {dim}")
        self.inner, self.dim = inner, dim
        self.fingerprint = f"{inner.fingerprint};truncate={dim}"

    def __getattr__(self, attr: str):  # rank, world_size, info, model: the wrapped encoder's
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def describe(self) -> dict:
        return {**getattr(self.inner, "describe", dict)(), "truncate_dim": self.dim}

    def encode(self, sentences: Sequence[str]) -> np.ndarray:  # (N, dim) float32
        x = np.asarray(self.inner.encode(sentences), np.float32)  # (N, D)
        if x.shape[1] < self.dim:
            raise SweepError(
                f"cannot truncate to {self.dim} dimensions: the model's vectors have {x.shape[1]}"
            )
        return np.ascontiguousarray(x[:, : self.dim])


class Memo:
    """`inner`'s vectors kept in memory: every distinct sentence is encoded once, however many
    sweep points ask for it (the model runs once per sweep, cache or --no-cache)."""

    def __init__(self, inner: Encoder):
        self.inner, self.rows = inner, {}
        self.fingerprint = inner.fingerprint

    def __getattr__(self, attr: str):
        if attr in ("inner", "rows"):
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def describe(self) -> dict:
        return getattr(self.inner, "describe", dict)()

    def encode(self, sentences: Sequence[str]) -> np.ndarray:  # (N, D) float32
        missing = [s for s in dict.fromkeys(sentences) if s not in self.rows]
        if missing:
            x = np.asarray(self.inner.encode(missing), np.float32)
            self.rows.update(zip(missing, x, strict=True))
        return np.stack([self.rows[s] for s in sentences]) if sentences else np.zeros((0, 0))


def _peel(encoder: Encoder) -> tuple[Encoder, list]:
    """(the chain below its post-processors, their (name, unit) in application order)."""
    from embeval.eval.encoders.postprocess import PostProcessed

    steps = []
    while isinstance(encoder, PostProcessed):
        steps.append((encoder.name, encoder.unit))
        encoder = encoder.inner
    return encoder, steps[::-1]


def with_truncation(encoder: Encoder, dim: int, base: Encoder | None = None) -> Encoder:
    """`encoder`'s chain with `Truncated(dim)` inserted below its post-processors (fresh
    instances of the same ones). `base` replaces the chain's bottom (a sweep's shared Memo)."""
    from embeval.eval.encoders.postprocess import PostProcessed

    bottom, steps = _peel(encoder)
    out: Encoder = Truncated(base if base is not None else bottom, dim)
    for name, unit in steps:  # a copy keeps the unit's settings (whitening's fit set and K)
        out = PostProcessed(out, name, copy.deepcopy(unit))
    return out


def model_dim(encoder: Encoder) -> int | None:
    """The model's output size from its checkpoint's config.json (hidden_size, or dim / d_model
    for models that call it so), found without loading weights; None when not knowable."""
    seen = encoder
    while seen is not None:
        info = getattr(seen, "__dict__", {}).get("info")
        if info is not None and getattr(info, "path", None):
            try:
                cfg = json.loads((Path(info.path) / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            for key in ("hidden_size", "dim", "d_model"):
                if isinstance(cfg.get(key), int):
                    return cfg[key]
            return None
        seen = getattr(seen, "__dict__", {}).get("inner")
    return None


def parse_dims(text: str | Iterable[int]) -> list[int]:
    """'32,64,128' -> [32, 64, 128] (each a positive integer, no repeats, order kept)."""
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    try:
        dims = [int(t) for t in items]
    except ValueError:
        raise SweepError(
            f"--dims {text!r}: expected comma-separated integers, e.g. 32,64,128"
        ) from None
    if not dims or any(d < 1 for d in dims) or len(set(dims)) != len(dims):
        raise SweepError(f"--dims {text!r}: expected distinct positive integers, e.g. 32,64,128")
    return dims


def check_dims(encoder: Encoder, dims: Sequence[int]) -> None:
    """Refuse, before any encoding, a dimension above the model's (when the checkpoint says its
    size; otherwise `Truncated` refuses at the first encode)."""
    size = model_dim(encoder)
    if size is not None and (above := [d for d in dims if d > size]):
        raise SweepError(
            f"cannot truncate to {', '.join(map(str, above))} dimensions: the model's vectors "
            f"have {size} (choose dimensions up to {size})"
        )


def point_name(base: str, axis: str, value: int) -> str:
    """The name of a sweep point's run: `BASE-dims128`, `BASE-layers6`."""
    return f"{base}-{axis}{value}"


def mark_point(run, axis: str, value: int, base: str):
    """Give a scored run its sweep point's name and `meta.sweep` entry (the shared layout)."""
    if axis not in AXES:
        raise SweepError(f"unknown sweep axis {axis!r}; expected one of {', '.join(AXES)}")
    run.name = point_name(base, axis, value)
    run.meta["sweep"] = {"axis": axis, "value": int(value), "of": base}
    return run


def score_dims(encoder: Encoder, dims: Sequence[int], *, name: str | None = None, **score_kw):
    """One `score` run per dimension of `dims`, all from one encode: a list of RunResults in
    `dims` order, each marked as a point of a "dims" sweep of the run `name` (default: the
    checkpoint's). `score_kw` are `embeval.eval.scoring.score.score`'s other arguments."""
    from embeval.eval.scoring.score import default_run_name, score

    dims = parse_dims(dims)
    check_dims(encoder, dims)
    bottom, _ = _peel(encoder)
    memo = Memo(bottom)
    base = name or default_run_name(encoder.describe().get("checkpoint"))
    runs = []
    for d in dims:
        run = score(with_truncation(encoder, d, base=memo), name=base, **score_kw)
        if run is None:  # a non-zero rank of a sharded run
            return None
        log.info("dims %d scored", d)
        runs.append(mark_point(run, "dims", d, base))
    return runs


def sweep_points(runs: Iterable[tuple[str, object]]) -> dict[tuple[str, str], list]:
    """Loaded (label, run) pairs that are sweep points, grouped by (axis, base run name), each
    group sorted by value: {(axis, of): [(value, label, run), ...]}."""
    out: dict[tuple[str, str], list] = {}
    for label, run in runs:
        sweep = (run.meta or {}).get("sweep")
        if isinstance(sweep, dict) and sweep.get("axis") in AXES:
            key = (sweep["axis"], str(sweep.get("of") or ""))
            out.setdefault(key, []).append((sweep["value"], label, run))
    return {k: sorted(v, key=lambda t: t[0]) for k, v in out.items()}
