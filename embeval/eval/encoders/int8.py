"""`--quantize int8`: the encoder's model run by ONNX Runtime with dynamic int8 linear layers.

Why ONNX Runtime and not torch's `quantize_dynamic`: on the packaged model (STS-B test, batches
of 64, CPU) torch's int8 was 1.47x faster and lost 1.6 Spearman points; ONNX Runtime's dynamic
int8 with QInt8 weights was 1.7-1.9x faster and lost 0.4 (issue 19). Weights are quantized per
output channel: per-tensor scales gave cosines to float32 of 0.94-0.97 on STS-B sentences,
per-channel 0.99.

The SentenceModel (backbone + pooler, so pooling is the torch code itself) is exported once per
checkpoint with the legacy TorchScript exporter, quantized, and kept as
`<dir>/<fingerprint key>/model-int8.onnx` (written atomically: a half-written model is never
loaded). Tokenisation, batching and Normalize stay the encoder's, as for float32.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from embeval.core.fileio import open_mode, temp_dir_beside

log = logging.getLogger(__name__)

QUANTIZE = ("int8",)
INSTALL_HINT = "pip install 'embeval[int8]'"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # SentenceModel.forward's order
OPSET = 17
FILE = "model-int8.onnx"


class QuantizeError(ValueError):
    """int8 encoding cannot run here (missing package, unsupported device or dtype)."""


def require_onnxruntime():
    """Import onnxruntime (and onnx, which the exporter and quantizer need) or say how to get
    them: they are an optional extra, the float32 path never needs them."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as exc:
        raise QuantizeError(
            f"--quantize int8 needs ONNX Runtime and onnx ({exc.name or exc} is missing): "
            f"{INSTALL_HINT}"
        ) from None
    return onnxruntime


def model_dir(root: Path, fingerprint: str) -> Path:
    """Where a checkpoint's int8 model lives: keyed like the embedding cache's folders."""
    return Path(root) / "onnx" / hashlib.sha256(fingerprint.encode()).hexdigest()[:32]


def export_int8(model, tokenizer, dest: Path, quantize: bool = True) -> Path:
    """Export `model` (a SentenceModel) to ONNX, quantize it to int8, put it at `dest`.
    quantize=False keeps the float32 graph (the benchmark's ONNX Runtime float32 reference)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Two lengths, so padding is present while tracing; batch and length axes stay dynamic.
    sample = tokenizer(
        ["a b", "one sentence of a few more words"], padding=True, return_tensors="pt"
    )
    names = [k for k in INPUTS if k in sample]
    tmp = temp_dir_beside(dest)
    try:
        f32 = tmp / "model.onnx"
        was_training = model.training
        model.eval()
        try:
            # The tracer warns about Python conditions it freezes (padding length 0, a mask
            # given); both hold for every batch the encoder makes, so the graph is general.
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model,
                    tuple(sample[k] for k in names),
                    str(f32),
                    input_names=names,
                    output_names=["embedding"],
                    dynamic_axes={
                        **{k: {0: "batch", 1: "tokens"} for k in names},
                        "embedding": {0: "batch"},
                    },
                    opset_version=OPSET,
                    dynamo=False,
                )
        finally:
            model.train(was_training)
        if quantize:
            # It logs a "consider pre-processing" warning on the root logger at every call;
            # the int8 model is already within the cosines of the module docstring without it.
            was_disabled = logging.root.manager.disable
            logging.disable(logging.WARNING)
            try:
                quantize_dynamic(
                    str(f32), str(tmp / FILE), weight_type=QuantType.QInt8, per_channel=True
                )
            finally:
                logging.disable(was_disabled)
        else:
            os.replace(f32, tmp / FILE)
        open_mode(tmp / FILE)
        os.replace(tmp / FILE, dest)  # atomic: readers see no model or a whole one
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


class Int8Session:
    """A quantized model: padded numpy batches in, (B, H) float32 pooled vectors out."""

    def __init__(self, path: Path, threads: int | None = None):
        ort = require_onnxruntime()
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads  # as torch's, so the two paths compare fairly
        self.path = path
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, batch: dict) -> np.ndarray:
        feed = {k: np.asarray(batch[k], dtype=np.int64) for k in self.inputs}
        return self.session.run(None, feed)[0]


def load_int8(model, tokenizer, fingerprint: str | None, root: Path | None) -> Int8Session:
    """The int8 session for `model`: from `root` when exported before, else exported now.
    Without a fingerprint (an in-memory model) or a root, it goes to a temporary folder."""
    require_onnxruntime()
    import torch

    if fingerprint is None or root is None:
        tmp = Path(tempfile.mkdtemp(prefix="embeval-int8-"))
        try:
            path = export_int8(model, tokenizer, tmp / FILE)
            return Int8Session(path, torch.get_num_threads())  # loaded: the file may go
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    path = model_dir(root, fingerprint) / FILE
    if not path.exists():
        log.info("exporting %s to ONNX int8 (once per checkpoint)", path.parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        export_int8(model, tokenizer, path)
    return Int8Session(path, torch.get_num_threads())
