"""On-disk embedding cache that wraps any Encoder.

Layout: ``<cache_dir>/<fingerprint[:32]>/shard-*.npz``. Each `encode` call that misses writes
one shard (sha256 keys of the texts, their vectors, and a checksum over both) to a temporary
file that is then renamed into place, so a crash never leaves a half-written shard under a valid
name. A shard whose checksum, shape or format is off is deleted and its sentences re-encoded.
A shard that cannot be written (disk full) is logged and skipped: the cache only saves time, so
it never costs a finished run.

Several processes may use one folder at once (a sharded `torchrun` run, or two runs side by
side): there is no index or counter to race on. A writer only adds shards, each under a name
derived from its content and renamed into place whole (a temporary file starts with "." and
never matches ``shard-*.npz``); a reader sees a shard entirely or not at all. Two writers of the
same sentences leave two shards whose vectors agree to float noise; readers take them in name
order, so every reader picks the same one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embeval.core.fileio import atomic_write
from embeval.eval.encoders.transformer import Encoder, check_finite, check_sentences

log = logging.getLogger(__name__)


def default_cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """--cache-dir, else $EMBEVAL_CACHE, else the user cache folder (XDG on Linux)."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("EMBEVAL_CACHE"):
        return Path(os.environ["EMBEVAL_CACHE"]).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("embeval")) / "embeddings"


class CacheError(ValueError):
    """A cache folder that cannot be used; the message names the option and the path."""


def cache_source(explicit: str | os.PathLike | None = None) -> str:
    """Where default_cache_dir took the folder from, for error messages."""
    if explicit:
        return "--cache-dir"
    return "$EMBEVAL_CACHE" if os.environ.get("EMBEVAL_CACHE") else "the default cache folder"


def check_cache_dir(path: Path, source: str) -> Path:
    """Refuse, before any encoding, a cache folder that is a file, lies under a file, or cannot
    be created or written; a later write failure (disk full) is only a warning."""
    probe = path
    while not probe.exists() and probe != probe.parent:  # the deepest part that exists
        probe = probe.parent
    if not probe.is_dir():
        where = "is a file" if probe == path else f"lies under the file {probe}"
        raise CacheError(f"embedding cache {path} ({source}) {where}; expected a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CacheError(
            f"embedding cache {path} ({source}): {probe} is not writable; pick another "
            "--cache-dir or pass --no-cache"
        )
    return path


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).hexdigest().encode()


def _digest(keys: np.ndarray, vecs: np.ndarray) -> str:
    return hashlib.sha256(keys.tobytes() + vecs.tobytes()).hexdigest()


class CachedEncoder:
    """Serve known sentences from disk, encode only the rest with the wrapped encoder."""

    def __init__(self, inner: Encoder, cache_dir: str | os.PathLike | None = None):
        self.inner = inner
        self.fingerprint = inner.fingerprint
        key = hashlib.sha256(inner.fingerprint.encode()).hexdigest()[:32]
        root = check_cache_dir(default_cache_dir(cache_dir), cache_source(cache_dir))
        self.dir = root / key
        self.hits = self.misses = 0

    def describe(self) -> dict:
        inner = getattr(self.inner, "describe", dict)()
        return {
            **inner,
            "cache_dir": str(self.dir),
            "cache_hits": self.hits,
            "cache_misses": self.misses,
        }

    def encode(self, sentences: Sequence[str]) -> np.ndarray:  # (N, D) float32
        check_sentences(sentences)
        keys = [text_key(s) for s in sentences]
        known = self._load()
        missing = list(
            dict.fromkeys(s for s, k in zip(sentences, keys, strict=True) if k not in known)
        )
        self.hits, self.misses = len(set(keys)) - len(missing), len(missing)
        if missing:
            vecs = check_finite(np.asarray(self.inner.encode(missing), np.float32), "encoder")
            new_keys = np.array([text_key(s) for s in missing], dtype="S64")
            try:
                self._write(new_keys, vecs)
            except OSError as exc:  # disk full, file too large: the cache only saves time
                log.warning(
                    "could not write the embedding cache in %s (%s); the %d new embeddings are "
                    "used but not cached",
                    self.dir,
                    exc.strerror or exc,
                    len(missing),
                )
            known.update(zip(new_keys.tolist(), vecs, strict=True))
        log.info("cache %s: %d hits, %d encoded", self.dir, self.hits, self.misses)
        return np.stack([known[k] for k in keys]).astype(np.float32, copy=False)

    def _load(self) -> dict[bytes, np.ndarray]:
        known: dict[bytes, np.ndarray] = {}
        for shard in sorted(self.dir.glob("shard-*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as z:
                    keys, vecs, digest = z["keys"], z["vecs"], str(z["digest"])
                if len(keys) != len(vecs) or vecs.ndim != 2 or _digest(keys, vecs) != digest:
                    raise ValueError("checksum or shape mismatch")
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                log.warning(
                    "dropping corrupt cache shard %s (%s); its sentences are re-encoded", shard, exc
                )
                shard.unlink(missing_ok=True)
                continue
            known.update(zip(keys.tolist(), vecs, strict=True))
        return known

    def _write(self, keys: np.ndarray, vecs: np.ndarray) -> None:
        digest = _digest(keys, vecs)
        atomic_write(
            self.dir / f"shard-{digest[:16]}.npz",
            lambda f: np.savez(f, keys=keys, vecs=vecs, digest=np.array(digest)),
        )

    def clear(self) -> None:
        for shard in self.dir.glob("*.npz"):
            shard.unlink(missing_ok=True)
