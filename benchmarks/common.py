"""What the benchmark scripts share: offline loading and where the data is."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the packaged model; nothing is downloaded
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def data_root() -> Path:
    """$EMBEVAL_DATA, else ../shared/data beside the project (where CI keeps the reference copy)."""
    env = os.environ.get("EMBEVAL_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared/data"
