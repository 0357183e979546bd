"""The one place an encoder chain is built: model -> cache -> sharding -> post-processing.

`embeval score` and `check` build it from a checkpoint; the training-time STS-B dev evaluation
builds it from the model in memory, so the dev score is post-processed exactly as `score` will
post-process the saved checkpoint. The order, and why:
1. `TransformerEncoder`: the raw pooled vectors (int8 via ONNX Runtime on request);
2. `CachedEncoder`: holds those raw vectors, keyed by what makes them (weights, tokenizer,
   pooler, max length, dtype, int8): one cache serves every post-processing of a model;
3. `ShardedEncoder` (torchrun / accelerate launch): each process encodes a share of the misses;
4. post-processors (`embeval.eval.encoders.postprocess`): Normalize first when the checkpoint
   declares it (sentence-transformers' last module), then the ones asked for, in order, then
   whitening (`--whiten`) last: it is fitted on the vectors the model (as scored) outputs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from embeval.eval.encoders.postprocess import POSTPROCESSORS, PostProcessed
from embeval.eval.encoders.transformer import Encoder, TransformerEncoder

log = logging.getLogger(__name__)


def build_encoder(
    checkpoint: str | os.PathLike | None = None,
    *,
    model=None,
    tokenizer=None,
    info=None,
    normalize: bool | None = None,
    pooler: str | None = None,
    max_length: int | None = None,
    batch_size: int = 128,
    device: str | None = None,
    dtype: str = "float32",
    quantize: str | None = None,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    no_cache: bool = False,
    sharded: bool = False,
    postprocess: Sequence[str] = (),
    base: TransformerEncoder | None = None,
    whiten: str | None = None,
    whiten_dim: int | None = None,
) -> Encoder:
    """The encoder chain of the module docstring.

    From `checkpoint` (None: the packaged model; weights load on the first sentence to encode),
    or from a loaded `model` (a SentenceModel) and its `tokenizer`: with the `info` it was loaded
    with (one model shared by several encoders), or without (the trainer's, never cached: its
    weights change as it trains). Normalize is applied when the checkpoint declares it, unless
    `normalize` says otherwise (without `info`: only when it says so). `base` replaces step 1
    with an encoder already made (a layer of `embeval.eval.scoring.layer_sweep`). `whiten`:
    "target" or a file of sentences to fit whitening on, keeping `whiten_dim` dimensions (None:
    all)."""
    from embeval.eval.encoders.cache import CachedEncoder, default_cache_dir

    kw = dict(batch_size=batch_size, device=device, dtype=dtype, progress=progress)
    no_cache = no_cache or (model is not None and info is None)
    # int8 models are exported once per checkpoint into the cache folder (--no-cache: a temp one)
    onnx_dir = None if no_cache or not quantize else default_cache_dir(cache_dir)
    kw.update(max_length=max_length, quantize=quantize, onnx_dir=onnx_dir)
    if base is not None:
        enc: Encoder = base
    elif model is None:
        enc = TransformerEncoder.from_checkpoint(checkpoint, pooler=pooler, **kw)
    else:
        enc = TransformerEncoder(model, tokenizer, info, **kw)
    if normalize is None:
        normalize = bool(enc.info and enc.info.normalize)
    if not no_cache:
        enc = CachedEncoder(enc, cache_dir)
    if sharded:
        from embeval.eval.encoders.shard import ShardedEncoder

        enc = ShardedEncoder(enc)
    declared = ["normalize"] if normalize else []
    # Asking for the Normalize a checkpoint declares applies it once.
    asked = [n for n in postprocess if not (declared and POSTPROCESSORS.canonical(n) in declared)]
    for name in [*declared, *asked]:
        enc = PostProcessed(enc, name)
    if whiten is not None:
        from embeval.eval.encoders.postprocess import Whiten

        enc = PostProcessed(enc, "whiten", Whiten(whiten, whiten_dim))
    elif whiten_dim is not None:
        raise ValueError("--whiten-dim needs --whiten target or --whiten FILE")
    return enc


def split_names(values: Sequence[str] | None) -> list[str]:
    """Post-processor names from repeated, comma-separated --postprocess values."""
    names = [n.strip() for v in values or () for n in v.split(",")]
    if "" in names:
        raise ValueError(
            f"--postprocess {' '.join(map(repr, values or ()))}: empty name; expected names "
            "such as normalize, or package.module:name"
        )
    return names
