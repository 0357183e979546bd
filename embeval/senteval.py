"""Use any embeval encoder from an existing SentEval installation (facebookresearch/SentEval).

SentEval calls ``prepare(params, samples)`` once per task with every sentence of the task (token
lists), then ``batcher(params, batch)`` for each batch, expecting an (B, D) numpy array. Here
`prepare` encodes every distinct sentence of the task in one call (so the embeval cache and
length-sorted batching apply), and `batcher` looks the vectors up. Text is what SimCSE's batcher
feeds: tokens joined by single spaces (an empty sentence becomes ".", as SentEval's examples do),
which is also what `embeval score --tasks transfer` encodes.

Example::

    import senteval
    from embeval.eval.encoders.chain import build_encoder
    from embeval.senteval import batcher, prepare, senteval_params

    encoder = build_encoder("runs/my-simcse", cache_dir="~/.cache/emb")  # as `embeval score`
    params = senteval_params(encoder, task_path="SentEval/data")  # kfold 10, sklearn classifier
    se = senteval.engine.SE(params, batcher, prepare)
    print(se.eval(["MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC", "STSBenchmark"]))

Instead of an encoder object, ``params["embeval_checkpoint"]`` (a checkpoint path or name) may
be given; the encoder is then built on first use (``embeval_pooler``, ``embeval_cache_dir``
optional).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from embeval.eval.encoders.transformer import Encoder

log = logging.getLogger(__name__)
ENCODER_KEY, CHECKPOINT_KEY, VECTORS_KEY = (
    "embeval_encoder",
    "embeval_checkpoint",
    "embeval_vectors",
)


def senteval_params(encoder: Encoder, task_path: str, kfold: int = 10, **extra: Any) -> dict:
    """SentEval params as SimCSE's full evaluation sets them, with the scikit-learn classifier
    (SentEval's `usepytorch=False` path, which `embeval score --tasks transfer` reproduces)."""
    return {
        "task_path": str(task_path),
        "usepytorch": False,
        "kfold": kfold,
        "batch_size": 128,
        ENCODER_KEY: encoder,
        **extra,
    }


def senteval_text(tokens: Sequence[str | bytes]) -> str:
    """SentEval hands token lists (bytes for a few tasks); the model gets them joined by spaces."""
    words = [w.decode("utf-8") if isinstance(w, bytes) else w for w in tokens]
    return " ".join(words).strip() or "."


def _encoder(params) -> Encoder:
    enc = params.get(ENCODER_KEY)
    if enc is None and params.get(CHECKPOINT_KEY):
        from embeval.eval.encoders.chain import build_encoder

        enc = build_encoder(
            params[CHECKPOINT_KEY],
            pooler=params.get("embeval_pooler"),
            progress=False,
            cache_dir=params.get("embeval_cache_dir"),
            no_cache=not params.get("embeval_cache_dir"),
        )
        params[ENCODER_KEY] = enc
    if enc is None or not hasattr(enc, "encode"):
        raise ValueError(
            f"SentEval params hold no embeval encoder: set params[{ENCODER_KEY!r}] to an encoder "
            f"(see embeval.senteval.senteval_params) or params[{CHECKPOINT_KEY!r}] to a checkpoint"
        )
    return enc


def prepare(params, samples: Sequence[Sequence[str | bytes]]) -> None:
    """Encode every distinct sentence of the task once; `batcher` then only looks them up."""
    texts = list(dict.fromkeys(senteval_text(s) for s in samples))
    emb = _encoder(params).encode(texts) if texts else np.zeros((0, 0), np.float32)  # (U, D)
    params[VECTORS_KEY] = (dict(zip(texts, range(len(texts)), strict=True)), emb)
    log.info("embeval.senteval: encoded %d distinct sentences", len(texts))


def batcher(params, batch: Sequence[Sequence[str | bytes]]) -> np.ndarray:  # -> (B, D) float32
    """Vectors of a batch: from what `prepare` encoded, else encoded now."""
    texts = [senteval_text(s) for s in batch]
    row, emb = params.get(VECTORS_KEY) or ({}, None)
    if emb is not None and all(t in row for t in texts):
        return np.asarray(emb[[row[t] for t in texts]], dtype=np.float32)
    return np.asarray(_encoder(params).encode(texts), dtype=np.float32)
