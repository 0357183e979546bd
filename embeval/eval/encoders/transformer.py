"""Encoders: list of sentences in, float32 matrix out.

`Encoder` is a small protocol so that the cache, test fakes and the training-time evaluator all
wrap or replace the real thing. `TransformerEncoder` encodes each distinct sentence once, in
batches sorted by token length with padding to the longest in the batch (as SimCSE evaluates),
under inference mode, and restores the caller's order. It returns the pooled vectors as the model
makes them: a checkpoint's Normalize module, like any post-processing, is an encoder wrapper
(`embeval.eval.encoders.postprocess`), put on by `embeval.eval.encoders.chain.build_encoder`.
`quantize="int8"` runs the same batches through ONNX Runtime's int8 model
(`embeval.eval.encoders.int8`).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from embeval.core.checkpoint import CheckpointInfo, checkpoint_info

if TYPE_CHECKING:  # torch loads only when a sentence must be encoded (fast warm-cache runs)
    import torch

    from embeval.core.model import SentenceModel

log = logging.getLogger(__name__)
# Progress lines for when no bar is drawn; the CLI shows this logger at INFO without -v.
progress_log = logging.getLogger("embeval.progress")
PROGRESS_EVERY = 5000  # sentences between two progress lines
PROGRESS_SECONDS = 60.0  # ... or seconds, whichever comes first (long sentences go first)
DTYPES = ("float32", "float16", "bfloat16")


class EmbeddingError(RuntimeError):
    """The model produced embeddings that cannot be scored (NaN or inf)."""


@runtime_checkable
class Encoder(Protocol):
    fingerprint: str  # identifies what makes the vectors; the cache key

    def encode(self, sentences: Sequence[str]) -> np.ndarray:  # (N, D) float32
        ...


def check_device(device: str | torch.device | None) -> str | None:
    """Refuse a device this machine cannot use, before any work: a bad name used to surface as
    a traceback on a cold cache, and on a warm one (no encoding) to be recorded in the results.
    A torch.device (what library callers such as the Trainer hold) is read as its name."""
    if device is None:
        return None
    device = str(device)
    m = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", device.strip())
    if not m:
        raise ValueError(f"--device {device!r}: expected cpu, cuda, cuda:N or mps")
    kind, index = m.group(1), m.group(2)
    if kind == "cpu":
        return device
    import torch

    if kind == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(
                f"--device {device!r}: CUDA is not available on this machine (torch "
                f"{torch.__version__}, built for CUDA {torch.version.cuda}); use --device cpu"
            )
        if index is not None and int(index) >= n:
            raise ValueError(
                f"--device {device!r}: this machine has {n} CUDA device(s), cuda:0 to cuda:{n - 1}"
            )
    elif not torch.backends.mps.is_available():
        raise ValueError(f"--device {device!r}: MPS is not available on this machine; use cpu")
    return device


def check_quantize(quantize: str, dtype: str, device: str | None) -> None:
    """int8 is ONNX Runtime on the CPU, from float32 weights: refuse other combinations early."""
    from embeval.eval.encoders.int8 import QUANTIZE, require_onnxruntime

    if quantize not in QUANTIZE:
        raise ValueError(f"--quantize {quantize!r}: expected one of {', '.join(QUANTIZE)}")
    if dtype != "float32":
        raise ValueError(f"--quantize {quantize} quantizes float32 weights; drop --dtype {dtype}")
    if device is not None and not device.startswith("cpu"):
        raise ValueError(f"--quantize {quantize} runs on the CPU (ONNX Runtime); use --device cpu")
    require_onnxruntime()


def pick_device(device: str | None = None) -> torch.device:
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_sentences(sentences: Sequence[str]) -> None:
    for i, s in enumerate(sentences):
        if not isinstance(s, str) or not s.strip():
            raise ValueError(f"sentence #{i} is empty or not a string ({s!r}); expected text")


def check_finite(emb: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(emb).all():
        bad = int((~np.isfinite(emb)).any(axis=1).sum())
        raise EmbeddingError(f"{what} produced NaN/inf embeddings for {bad} sentence(s)")
    return emb


class ProgressLog:
    """Progress as log lines, for when the bar is off because stderr is not a terminal (CI,
    `make` logs, `| tee`): a line every `every` sentences or `seconds`, and one at the end, each
    with the rate, so minutes of encoding are never silent."""

    def __init__(
        self,
        total: int,
        desc: str = "encoding",
        every: int | None = None,
        seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.desc, self.clock = total, desc, clock
        self.every = every or PROGRESS_EVERY
        self.seconds = PROGRESS_SECONDS if seconds is None else seconds
        self.done = self.last_done = 0
        self.start = self.last_time = clock()

    def update(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if not (
            self.done >= self.total
            or self.done - self.last_done >= self.every
            or now - self.last_time >= self.seconds
        ):
            return
        rate = self.done / max(now - self.start, 1e-9)
        progress_log.info(
            "%s: %d/%d sentences (%.0f%%), %.0f sent/s",
            self.desc,
            self.done,
            self.total,
            100 * self.done / max(self.total, 1),
            rate,
        )
        self.last_done, self.last_time = self.done, now


class TransformerEncoder:
    """Encode with a SentenceModel; see the module docstring for the batching strategy."""

    def __init__(
        self,
        model: SentenceModel | None,
        tokenizer,
        info: CheckpointInfo | None = None,
        *,
        batch_size: int = 128,
        device: str | None = None,
        dtype: str = "float32",
        max_length: int | None = None,
        progress: bool = True,
        quantize: str | None = None,
        onnx_dir: str | os.PathLike | None = None,
    ):
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if quantize is not None:
            check_quantize(quantize, dtype, device)
            device = "cpu"  # ONNX Runtime's CPU provider
        self._device_arg, self._device = check_device(device), None
        if dtype != "float32" and self.device.type != "cuda":
            raise ValueError(f"dtype {dtype} is for CUDA; on {self.device} use float32")
        self.quantize, self.onnx_dir, self._int8 = quantize, onnx_dir, None
        self.model, self.tokenizer, self.info = model, tokenizer, info
        self.batch_size, self.dtype, self.progress = batch_size, dtype, progress
        self.max_length = max_length or (info.max_length if info else 512)
        # The vectors before post-processing: the checkpoint's Normalize is not in the key.
        self.fingerprint = (info.pooled_fingerprint if info else "in-memory") + f";dtype={dtype}"
        if quantize:  # float32 keys stay as they were, so existing caches still hit
            self.fingerprint += f";quantize={quantize}"

    @classmethod
    def from_checkpoint(cls, source=None, pooler=None, max_length=None, **kw) -> TransformerEncoder:
        """Describe the checkpoint now; load the weights only when something must be encoded,
        so a fully cached run never pays for importing and loading the model."""
        info = checkpoint_info(source, pooler=pooler, max_length=max_length)
        return cls(None, None, info, **kw)

    @property
    def device(self) -> torch.device:
        if self._device is None:  # resolved on first use: picking a device imports torch
            self._device = pick_device(self._device_arg)
        return self._device

    def _ensure_loaded(self) -> SentenceModel:
        if self.model is None:
            from embeval.core.model import load_model

            self.model, self.tokenizer, _ = load_model(info=self.info)
        if self.quantize and self._int8 is None:
            from embeval.core.poolers import Pooler

            if isinstance(self.model._pool, Pooler):  # the ONNX graph is the plain forward
                raise ValueError(f"--quantize: pooler {self.model.pooler} runs in float32 only")
            from embeval.eval.encoders.int8 import load_int8

            fp = self.info.fingerprint if self.info else None
            self._int8 = load_int8(self.model, self.tokenizer, fp, self.onnx_dir)
        return self.model

    def _forward(self, model: SentenceModel, batch: dict) -> torch.Tensor:  # (b, D) float32
        if self._int8 is not None:
            import torch

            return torch.from_numpy(self._int8({k: v.numpy() for k, v in batch.items()}))
        return model(**batch).float()

    def describe(self) -> dict:
        """Metadata recorded in results files."""
        info = self.info
        return {
            "checkpoint": info.source if info else "in-memory",
            "checkpoint_path": info.path if info else None,
            "fingerprint": info.fingerprint if info else None,
            "pooler": info.pooler if info else self.model.pooler,
            "normalize": False,  # raw pooled vectors; a Normalize wrapper says True
            "postprocess": [],  # the wrappers append their steps
            "max_length": self.max_length,
            # A run served wholly from the cache never picked a device.
            "device": str(self._device or self._device_arg or "none (all cached)"),
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            # Only int8 runs carry it, so float32 results (and their files) stay as they were.
            **({"quantize": self.quantize} if self.quantize else {}),
        }

    def encode(self, sentences: Sequence[str]) -> np.ndarray:  # (N, D) float32
        check_sentences(sentences)
        unique = list(dict.fromkeys(sentences))
        where = {s: i for i, s in enumerate(unique)}
        emb = self._encode_unique(unique)
        return emb[[where[s] for s in sentences]]

    def _tokenize(self, model: SentenceModel, sentences: list[str]):
        """Token ids of each sentence, or of its prompt when the pooler wraps it in a template
        (PromptBERT, PromptEOL). A prompt is never truncated: that would cut its [MASK] or its
        final word; one longer than max_length is an error naming the sentence."""
        from embeval.core.poolers import Pooler

        pool = getattr(model, "_pool", None)
        if not isinstance(pool, Pooler):
            return self.tokenizer(sentences, truncation=True, max_length=self.max_length)
        texts = pool.prepare(sentences, self.tokenizer)
        ids = self.tokenizer(texts, truncation=not pool.no_truncation, max_length=self.max_length)
        for i, row in enumerate(ids["input_ids"]):
            if len(row) > self.max_length:
                raise ValueError(
                    f"pooler {model.pooler}: the prompt of sentence {sentences[i][:60]!r} has "
                    f"{len(row)} tokens, over max_length {self.max_length}; raise --max-length"
                )
        return ids

    def _encode_unique(self, sentences: list[str]) -> np.ndarray:
        if not sentences:
            return np.zeros((0, 0), np.float32)
        import torch
        from tqdm.auto import tqdm

        model = self._ensure_loaded()
        ids = self._tokenize(model, sentences)
        # Texts that tokenize alike (case or spacing under an uncased model) share one vector,
        # so they are identical, whichever batch they would have fallen in.
        first: dict[tuple, int] = {}
        src = np.array([first.setdefault(tuple(x), i) for i, x in enumerate(ids["input_ids"])])
        distinct = np.array(list(first.values()))
        lengths = [-len(ids["input_ids"][i]) for i in distinct]
        order = distinct[np.argsort(lengths, kind="stable")]  # longest first
        was_training = model.training
        model.to(self.device).eval()
        emb: np.ndarray | None = None
        bar = tqdm(
            total=len(order),
            desc="encoding",
            unit="sent",
            disable=None if self.progress else True,  # None: off when not a terminal
            leave=False,
        )
        # progress=False (the trainer's evaluator) is quiet; a bar that is off is not.
        lines = ProgressLog(len(order)) if self.progress and bar.disable else None
        try:
            with (
                torch.inference_mode(),
                torch.autocast(
                    self.device.type,
                    dtype=getattr(torch, self.dtype),
                    enabled=self.dtype != "float32",
                ),
            ):
                for start in range(0, len(order), self.batch_size):
                    rows = order[start : start + self.batch_size]
                    batch = self.tokenizer.pad(
                        {k: [ids[k][r] for r in rows] for k in ids.keys()}, return_tensors="pt"
                    )
                    batch = {k: v.to(self.device) for k, v in batch.items()}
                    vecs = self._forward(model, batch).cpu().numpy()  # (b, D)
                    if emb is None:
                        emb = np.empty((len(sentences), vecs.shape[1]), np.float32)
                    emb[rows] = vecs
                    bar.update(len(rows))
                    if lines:
                        lines.update(len(rows))
        finally:
            bar.close()
            model.train(was_training)
        return check_finite(emb[src], self.info.source if self.info else "model")
