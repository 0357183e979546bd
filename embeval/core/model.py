"""Checkpoint → SentenceModel (backbone + pooler), and back to a checkpoint folder.

A checkpoint is a plain Hugging Face folder (config, weights, tokenizer), optionally with
sentence-transformers module files (modules.json, 1_Pooling/…) that say how to pool. We read
those files rather than importing sentence-transformers, and we write them when saving, so that
`transformers`, `sentence-transformers` and embeval all load what `embeval train` produces.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from embeval.core.checkpoint import (  # noqa: F401  (re-exported: the public model API)
    DEFAULT_CHECKPOINT,
    EMBEVAL_CONFIG,
    POOLER_TO_ST,
    CheckpointError,
    CheckpointInfo,
    checkpoint_info,
    default_checkpoint_path,
    fingerprint,
    read_pooling_config,
    resolve_checkpoint,
    write_json,
)
from embeval.core.fileio import open_mode_tree, replace_dir, temp_dir_beside
from embeval.core.poolers import POOLERS, Pooler, PoolInputs
from embeval.registry import UnknownUnit

log = logging.getLogger(__name__)


def _pooler(name: str):
    """The pooler function `name` resolves to (`embeval.core.poolers`: SimCSE's five, or user
    code as package.module:function)."""
    try:
        return POOLERS.get(name)
    except UnknownUnit as exc:
        raise CheckpointError(str(exc)) from exc


class SentenceModel(nn.Module):
    """A transformer backbone plus a pooler: token ids in, one vector per sentence out."""

    def __init__(self, backbone: nn.Module, pooler: str, tokenizer=None):
        super().__init__()
        self._pool = _pooler(pooler)  # unknown names fail here, before any forward pass
        self.backbone = backbone
        self.pooler = POOLERS.canonical(pooler)
        self.tokenizer = tokenizer  # for poolers that read special tokens (PromptBERT's [MASK])
        if isinstance(self._pool, Pooler):
            self._pool.check_config(backbone.config.to_dict())
            if self._pool.needs_attentions:
                use_eager_attention(backbone)

    def run_backbone(self, input_ids, attention_mask, token_type_ids=None, position_ids=None, **kw):
        """The backbone with all hidden states. Left-padded rows (decoder tokenizers) get
        position ids counted from their first real token, so padding never moves a vector;
        right-padded ones keep the model's own (RoBERTa's offset ones included)."""
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        if position_ids is None and bool((attention_mask[:, 0] == 0).any()):
            position_ids = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
        if position_ids is not None:
            extra["position_ids"] = position_ids
        return self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=True,
            return_dict=True,
            **extra,
            **kw,
        )

    def forward(self, input_ids, attention_mask, token_type_ids=None, pooler=None):  # -> (B, H)
        fn = self._pool if pooler is None else _pooler(pooler)
        attend = isinstance(fn, Pooler) and fn.needs_attentions
        if attend:
            use_eager_attention(self.backbone)
        kw = {"output_attentions": True} if attend else {}
        out = self.run_backbone(input_ids, attention_mask, token_type_ids, **kw)
        hidden, pooled = out.hidden_states, getattr(out, "pooler_output", None)
        if isinstance(fn, Pooler):
            attentions = out.attentions if attend else None
            config = self.backbone.config
            inputs = PoolInputs(input_ids, attentions, self.tokenizer, self.run_backbone, config)
            return fn(attention_mask, hidden, pooled, inputs)
        return fn(attention_mask, hidden, pooled)


def use_eager_attention(backbone: nn.Module) -> None:
    """Attention maps come out of the eager kernel only (SDPA and flash never form them)."""
    if getattr(backbone.config, "_attn_implementation", "eager") != "eager":
        backbone.set_attn_implementation("eager")


@contextlib.contextmanager
def hf_progress_bars_off():
    """Silence transformers' own progress bars (weight loading, saving) for a block: embeval
    shows its bars on long work only, and only on a terminal."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_model(
    source: str | os.PathLike | None = None,
    pooler: str | None = None,
    max_length: int | None = None,
    info: CheckpointInfo | None = None,
):
    """Load a checkpoint: returns (SentenceModel in eval mode, tokenizer, CheckpointInfo)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    info = info or checkpoint_info(source, pooler, max_length)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # unused-pooler-weights reports are expected, not news
    try:
        tokenizer = AutoTokenizer.from_pretrained(info.path)
        with hf_progress_bars_off():  # a bar per tensor group, printed even when piped
            try:
                backbone = AutoModel.from_pretrained(
                    info.path, add_pooling_layer=info.pooler == "cls"
                )
            except TypeError:  # architectures without a pooling layer argument
                backbone = AutoModel.from_pretrained(info.path)
    except Exception as exc:
        raise CheckpointError(
            f"could not load checkpoint {info.path}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    # transformers >= 5 keeps the dtype the weights were saved in (dtype="auto"); hub checkpoints
    # stored in float16/bfloat16 would then run in half precision on the CPU. Compute in float32
    # (exact for those dtypes); half precision on CUDA is the encoder's autocast, by request.
    set_pad_token(tokenizer, info.path)
    model = SentenceModel(backbone.float(), info.pooler, tokenizer).eval()
    log.info("loaded %s (pooler=%s, max_length=%d)", info.path, info.pooler, info.max_length)
    return model, tokenizer, info


def set_pad_token(tokenizer, where: str) -> None:
    """Decoder tokenizers (GPT-2, OPT's have one; Llama's, Qwen's may not) without a pad token
    pad with their end-of-sequence token: padding is masked out of attention and pooling, so
    which id fills it does not matter. Logged; without an EOS token either, an error."""
    if tokenizer.pad_token is not None:
        return
    if tokenizer.eos_token is None:
        raise CheckpointError(
            f"checkpoint {where}: its tokenizer has neither a pad nor an end-of-sequence token; "
            "set pad_token in its tokenizer_config.json"
        )
    log.info("%s: no pad token; padding with the EOS token %r", where, tokenizer.eos_token)
    tokenizer.pad_token = tokenizer.eos_token


def random_tiny(seed: int = 0, hidden: int = 128, layers: int = 2, heads: int = 2):
    """A small randomly initialised BERT with the packaged tokenizer, for smoke runs and tests."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(default_checkpoint_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=512,
    )
    torch.manual_seed(seed)
    return BertModel(config), tokenizer


# Config fields that hold a dropout rate in BERT/RoBERTa, DistilBERT and ModernBERT.
DROPOUT_CONFIG_KEYS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "dropout",
    "attention_dropout",
    "embedding_dropout",
    "mlp_dropout",
)


def set_dropout(backbone: nn.Module, p: float) -> None:
    """Set every dropout rate to p (SimCSE's noise, 0.1 in BERT), and the config to match,
    so that a saved checkpoint says what it was trained with.

    Rates live in nn.Dropout layers, and in some attention modules as a float handed to the
    attention kernel (`attention_dropout`, ModernBERT)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    for module in backbone.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
        elif isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = p
    config = getattr(backbone, "config", None)
    for key in DROPOUT_CONFIG_KEYS:
        if isinstance(getattr(config, key, None), float):
            setattr(config, key, p)


def save_checkpoint(
    backbone: nn.Module,
    tokenizer,
    out_dir: str | os.PathLike,
    pooler: str,
    max_length: int,
    normalize: bool = False,
) -> Path:
    """Write a HF folder plus sentence-transformers module files, atomically (tmp + rename).

    normalize=True ends the sentence-transformers modules with Normalize (unit-length output),
    as in the checkpoint trained from when it had one (all-MiniLM-L6-v2 does)."""
    out = Path(out_dir)
    tmp = temp_dir_beside(out)
    try:
        backbone.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        write_json(tmp / EMBEVAL_CONFIG, {"pooler": pooler, "max_length": max_length})
        _write_sentence_transformers_files(
            tmp, backbone.config.hidden_size, pooler, max_length, normalize
        )
        open_mode_tree(tmp)  # safetensors writes the weights 0600
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write_sentence_transformers_files(
    path: Path, dim: int, pooler: str, max_length: int, normalize: bool
) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
    ]
    mode = POOLER_TO_ST.get(pooler)
    if mode is None:  # cls, avg_first_last, avg_top2 and user code have no such Pooling mode:
        # embeval_config.json records the pooler; sentence-transformers falls back to mean
        log.warning(
            "pooler %s cannot be expressed for sentence-transformers; %s records it for embeval, "
            "and sentence-transformers will pool with mean",
            pooler,
            EMBEVAL_CONFIG,
        )
        mode = "pooling_mode_mean_tokens"
    flags = {
        k: k == mode
        for k in (
            "pooling_mode_cls_token",
            "pooling_mode_mean_tokens",
            "pooling_mode_max_tokens",
            "pooling_mode_mean_sqrt_len_tokens",
        )
    }
    modules.append(
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
    )
    (path / "1_Pooling").mkdir()
    write_json(path / "1_Pooling" / "config.json", {"word_embedding_dimension": dim, **flags})
    if normalize:
        normalize_module = {"path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        modules.append({"idx": 2, "name": "2", **normalize_module})
        (path / "2_Normalize").mkdir()  # sentence-transformers expects the (empty) folder
    write_json(path / "modules.json", modules)
    write_json(
        path / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False}
    )
