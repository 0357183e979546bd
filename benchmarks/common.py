"""What the benchmark scripts share: offline loading and where the data is."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the packaged model; nothing is downloaded
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def data_root() -> Path:
    """embeval's rule: $EMBEVAL_DATA, else data/ when it holds the data, else ../shared/data."""
    from embeval.eval.data.paths import data_root

    return data_root()
