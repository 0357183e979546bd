"""Evaluation sharded over processes: each rank encodes a share, rank 0 gets every vector.

`torchrun --nproc_per_node N -m embeval.cli score ...` (or `accelerate launch`, which sets the
same environment) starts N copies of the command. Each builds the same sentence list, so
`ShardedEncoder` needs no communication to agree on who encodes what: sentences are ordered by
length (characters; the wrapper does not tokenize) and dealt out round-robin, so every rank gets
a like mix of long and short ones. Each rank encodes its share through the wrapped encoder (the
cache included: it reads and writes only that share's keys), then the shares are all-gathered
and put back in the caller's order. Only rank 0 scores and writes (`score` returns None on the
others); the figures equal a single-process run's up to the float noise of batch composition
(vectors ~1e-7, STS figures 1e-4 at most, see CHANGELOG).

A rank that fails still takes part in the gather, carrying its error, so every rank raises
instead of the others waiting for it until the process group times out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from embeval.core import distributed
from embeval.eval.encoders.transformer import EmbeddingError, Encoder

log = logging.getLogger(__name__)


class ShardError(EmbeddingError):
    """Another process of a sharded run failed; the message says which and why."""


def share(lengths: Sequence[int], rank: int, world: int) -> np.ndarray:
    """Indices of the items `rank` encodes: longest first, dealt round-robin over `world`.

    Shares differ in size by at most one and in total length by at most one item's length per
    round; together they cover every index exactly once."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside a world of {world} process(es)")
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return np.sort(order[rank::world])


def assemble(parts: Sequence[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """(indices, vectors) of every rank -> the (n, D) matrix in the original order."""
    dims = {v.shape[1] for idx, v in parts if len(idx)}
    if len(dims) != 1:
        raise ShardError(f"processes returned embeddings of different widths {sorted(dims)}")
    out = np.empty((n, dims.pop()), np.float32)
    seen = np.zeros(n, bool)
    for idx, vecs in parts:
        out[idx] = vecs
        seen[idx] = True
    if not seen.all():
        raise ShardError(f"{int((~seen).sum())} of {n} sentences were encoded by no process")
    return out


class ShardedEncoder:
    """Encode this rank's share with `inner` and all-gather the rest (see the module docstring).

    `rank`/`world_size` default to torch.distributed's; a single process encodes everything."""

    def __init__(self, inner: Encoder, rank: int | None = None, world_size: int | None = None):
        self.inner = inner
        self.fingerprint = inner.fingerprint
        self.rank = distributed.rank() if rank is None else rank
        self.world_size = distributed.world_size() if world_size is None else world_size
        self.counts: dict[str, int] = {}  # cache hits/misses summed over the ranks

    def describe(self) -> dict:
        inner = getattr(self.inner, "describe", dict)()
        return {**inner, **{k: v for k, v in self.counts.items() if k in inner}}

    def encode(self, sentences: Sequence[str]) -> np.ndarray:  # (N, D) float32
        if self.world_size == 1 or not sentences:  # every rank takes the same branch
            return self.inner.encode(sentences)
        mine = share([len(s) for s in sentences], self.rank, self.world_size)
        error, vecs = None, None
        try:
            vecs = np.asarray(self.inner.encode([sentences[i] for i in mine]), np.float32)
        except Exception as exc:  # carried to the other ranks, re-raised here below
            error = exc
        described = getattr(self.inner, "describe", dict)()
        counts = {k: described[k] for k in ("cache_hits", "cache_misses") if k in described}
        why = None if error is None else f"{type(error).__name__}: {error}"
        parts = distributed.all_gather_objects((mine, vecs, counts, why))
        if error is not None:
            raise error
        failed = [(r, p[3]) for r, p in enumerate(parts) if p[3] is not None]
        if failed:
            r, why = failed[0]
            raise ShardError(f"process {r} of {self.world_size} failed to encode its share: {why}")
        self.counts = {k: sum(p[2].get(k, 0) for p in parts) for k in counts}
        log.info(
            "rank %d encoded %d of %d sentences; gathered from %d processes",
            self.rank,
            len(mine),
            len(sentences),
            self.world_size,
        )
        return assemble([(p[0], p[1]) for p in parts], len(sentences))
