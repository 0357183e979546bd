"""Layer sweep: the STS table of every layer's pooled output from one encode.

`embeval score --layers all|LIST` scores, for each hidden state K asked for (0 = the embedding
output, L = the last layer), the masked mean of that layer, the pooler ``layers:K``
(`embeval.core.poolers.Layers`), or with ``--pooler last_token`` (decoders) that layer's last
real token, ``last_token:K``. Other poolers are not applied per layer: a [CLS] state or a
prompt's [MASK] state of an intermediate layer is not what those methods define.

One forward pass per sentence serves every layer: `LayerStack` pools each asked layer of the
same hidden states and concatenates them (B, K*H); `LayerSweep` keeps those vectors for the
sentences it has encoded, and hands each layer's columns to its `LayerView`. A view is a
`TransformerEncoder` described exactly as ``--pooler layers:K`` would be (same fingerprint,
so the same cache entries and the same results metadata); it never loads a model. A view
asked for sentences the sweep lacks (a warm cache for some layers only) has the sweep encode
just those, for every layer. A layer's vectors equal a single ``--pooler layers:K`` run's bit
for bit when both encode the same sentence list (the same batches): the same pooler code runs
on the same states.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embeval.core.checkpoint import CheckpointError, checkpoint_info
from embeval.core.poolers import POOLERS, Pooler, n_layers
from embeval.eval.encoders.transformer import TransformerEncoder

log = logging.getLogger(__name__)


def parse_layers(spec: str, count: int) -> list[int]:
    """`all` or comma-separated hidden-state indices (0..count-1) -> sorted distinct indices."""
    text = spec.strip().lower()
    if text == "all":
        return list(range(count))
    try:
        layers = [int(x) for x in text.split(",")]
    except ValueError:
        layers = []
    if not layers:
        raise ValueError(f"--layers {spec!r}: expected all or comma-separated layer indices")
    bad = [k for k in layers if not 0 <= k < count]
    if bad:
        raise ValueError(
            f"--layers {spec!r}: layer(s) {', '.join(map(str, bad))} out of range; this model "
            f"has hidden states 0 (embeddings) to {count - 1}"
        )
    return sorted(set(layers))


# --pooler -> the pooler each layer K is scored with, as NAME:K.
SWEPT = {None: "layers", "avg": "layers", "last_token": "last_token"}


class LayerStack(Pooler):
    """Each asked layer's `NAME:K` vector, side by side: (B, len(layers) * H)."""

    def __init__(self, layers: Sequence[int], name: str = "layers"):
        self.poolers = [POOLERS.get(f"{name}:{k}") for k in layers]

    def __call__(self, mask, hidden_states, pooler_output, inputs=None):
        import torch

        return torch.cat([p(mask, hidden_states, pooler_output) for p in self.poolers], dim=1)


class LayerSweep:
    """One encoder for all layers of a checkpoint; `views()` gives one encoder per layer."""

    def __init__(self, checkpoint, layers: str, max_length: int | None = None, pooler=None, **kw):
        if pooler not in SWEPT:
            raise ValueError(
                f"--layers sweeps the masked mean (no --pooler, or avg) or last_token; "
                f"not --pooler {pooler}"
            )
        self.name = SWEPT[pooler]
        base = checkpoint_info(checkpoint, pooler="avg", max_length=max_length)
        config = json.loads((Path(base.path) / "config.json").read_text(encoding="utf-8"))
        if n_layers(config) is None:
            raise CheckpointError(f"checkpoint {base.path}: config.json names no layer count")
        self.layers = parse_layers(layers, n_layers(config) + 1)
        self.checkpoint, self.max_length, self.kw = checkpoint, max_length, kw
        self.encoder = TransformerEncoder(None, None, base, max_length=max_length, **kw)
        self.row: dict[str, int] = {}
        self.blocks: list[np.ndarray] = []  # (n, len(layers) * H) each, rows in `row` order
        self.forward_sentences = 0  # sentences encoded (each once for all layers)

    def views(self) -> dict[int, LayerView]:
        return {k: LayerView(self, i, k) for i, k in enumerate(self.layers)}

    def vectors(self, sentences: list[str], index: int) -> np.ndarray:  # (N, H) of one layer
        missing = [s for s in dict.fromkeys(sentences) if s not in self.row]
        if missing:
            enc = self.encoder
            model = enc._ensure_loaded()
            if not isinstance(model._pool, LayerStack):
                model._pool = LayerStack(self.layers, self.name)
            start = sum(len(b) for b in self.blocks)
            self.blocks.append(enc.encode(missing))
            self.row.update({s: start + j for j, s in enumerate(missing)})
            self.forward_sentences += len(missing)
        stacked = np.concatenate(self.blocks) if len(self.blocks) > 1 else self.blocks[0]
        if len(self.blocks) > 1:
            self.blocks = [stacked]
        width = stacked.shape[1] // len(self.layers)
        rows = [self.row[s] for s in sentences]
        return stacked[rows, index * width : (index + 1) * width]


class LayerView(TransformerEncoder):
    """Layer K of a `LayerSweep`, described as ``--pooler layers:K`` (or last_token:K)."""

    def __init__(self, sweep: LayerSweep, index: int, layer: int):
        pooler = f"{sweep.name}:{layer}"
        info = checkpoint_info(sweep.checkpoint, pooler=pooler, max_length=sweep.max_length)
        super().__init__(None, None, info, max_length=sweep.max_length, **sweep.kw)
        self.sweep, self.index, self.layer = sweep, index, layer

    def _encode_unique(self, sentences: list[str]) -> np.ndarray:
        self._device = self.sweep.encoder._device  # describe() names the device it ran on
        return np.ascontiguousarray(self.sweep.vectors(sentences, self.index))
