"""Results files: the only contract between scoring and reporting.

A run is two files written side by side, each atomically (temporary file, then rename):
- ``NAME.json``: schema-versioned metrics and metadata (`tasks[TASK]["spearman"]` is the primary
  score x100 of an STS task; a SentEval transfer task has `accuracy` x100 instead, plus `f1` for
  MRPC; `transfer_avg` is the mean accuracy of the seven transfer tasks, null unless all ran);
- ``NAME.pairs.npz``: per-pair predicted similarity, gold score, subset and both sentences of
  each task, for bootstrap statistics, plots and error analysis.

Schema history (see CHANGELOG.md): 1 = first release; 2 = transfer tasks and `transfer_avg`.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embeval.core.fileio import atomic_write

SCHEMA_VERSION = 2
PAIR_FIELDS = ("sim", "gold", "subset", "s1", "s2")


class ResultsError(ValueError):
    """A results file that cannot be read or used; the message names the file."""


@dataclass
class RunResult:
    name: str
    meta: dict
    tasks: dict[str, dict]
    avg: float | None = None
    transfer_avg: float | None = None
    diagnostics: dict = field(default_factory=dict)
    pairs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    schema_version: int = SCHEMA_VERSION
    path: Path | None = None

    def to_json(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "meta": self.meta,
            "tasks": self.tasks,
            "avg": self.avg,
            "transfer_avg": self.transfer_avg,
            "diagnostics": self.diagnostics,
        }

    def load_pairs(self) -> dict[str, dict[str, np.ndarray]]:
        """Per-pair arrays, read from the .pairs.npz next to the JSON on first use."""
        if not self.pairs and self.path is not None:
            self.pairs = load_pairs(pairs_path(self.path))
        return self.pairs


def pairs_path(json_path: Path) -> Path:
    return json_path.with_name(json_path.name.removesuffix(".json") + ".pairs.npz")


def save_run(run: RunResult, path: str | os.PathLike) -> Path:
    """Write JSON + pairs; the JSON goes last, so a readable JSON always has its pairs."""
    path = Path(path)
    if path.suffix != ".json":
        raise ResultsError(f"output path {path} must end in .json")
    try:
        json.dumps(run.to_json(), allow_nan=False)
    except ValueError:
        raise ResultsError(
            f"not writing {path}: a metric is NaN or infinite (constant similarities give an "
            "undefined correlation); the model's embeddings are degenerate"
        ) from None
    try:
        arrays = {
            f"{task}/{k}": np.asarray(v) for task, d in run.pairs.items() for k, v in d.items()
        }
        atomic_write(pairs_path(path), lambda f: np.savez_compressed(f, **arrays))
        body = json.dumps(run.to_json(), indent=2, allow_nan=False).encode()
        atomic_write(path, lambda f: f.write(body + b"\n"))
    except OSError as exc:
        raise ResultsError(f"cannot write results to {path}: {exc.strerror or exc}") from exc
    run.path = path
    return path


def load_run(path: str | os.PathLike) -> RunResult:
    """Read a results JSON; older schemas are upgraded, newer ones refused."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"results file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(
            f"{path} is not valid JSON (truncated or not a results file): {exc}"
        ) from exc
    if not isinstance(data, dict) or "schema_version" not in data or "tasks" not in data:
        raise ResultsError(f"{path} is not an embeval results file (no schema_version/tasks)")
    version = data["schema_version"]
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ResultsError(
            f"{path} has results schema {version}, newer than this embeval reads "
            f"({SCHEMA_VERSION}); upgrade embeval to read it"
        )
    data = upgrade(data)
    return RunResult(
        name=data["name"],
        meta=data["meta"],
        tasks=data["tasks"],
        avg=data.get("avg"),
        transfer_avg=data.get("transfer_avg"),
        diagnostics=data.get("diagnostics", {}),
        schema_version=SCHEMA_VERSION,
        path=path,
    )


def upgrade(data: dict) -> dict:
    """Bring an older schema to the current one, one version step at a time."""
    if data["schema_version"] == 1:  # 1 -> 2: transfer tasks arrived; v1 runs had none
        data = {**data, "schema_version": 2, "transfer_avg": None}
    return data


def load_pairs(path: Path) -> dict[str, dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            out: dict[str, dict[str, np.ndarray]] = {}
            for key in z.files:
                task, name = key.split("/", 1)
                out.setdefault(task, {})[name] = z[key]
    except FileNotFoundError:
        raise ResultsError(f"per-pair file {path} is missing; re-run `embeval score`") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # e.g. a truncated copy
        raise ResultsError(f"per-pair file {path} is unreadable: {exc}") from exc
    return out


# What makes two runs the same run: the model as scored and the scoring settings. Not the batch
# size, device or cache (figures do not depend on them), nor the time or embeval version.
RUN_SETTINGS = (
    "fingerprint",
    "pooler",
    "normalize",
    "max_length",
    "dtype",
    "protocol",
    "split",
    "limit",
    "tasks",
)


def run_settings(meta: dict, tasks) -> dict:
    """The settings `same_run` compares, from a run's metadata and its task names."""
    return {**{k: meta.get(k) for k in RUN_SETTINGS}, "tasks": sorted(tasks)}


def same_run(a: dict, b: dict) -> list[str]:
    """How two `run_settings` dicts differ, as 'key: a vs b' lines; [] means the same run, so
    one may replace the other's file (re-running a command), anything else may not silently."""
    return [
        f"{k}: {a.get(k)!r} vs {b.get(k)!r}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k)
    ]


def free_sibling(path: Path) -> Path:
    """`NAME-2.json`, `NAME-3.json`, … : the first name whose JSON and pairs files are both free."""
    stem = path.name.removesuffix(".json")
    for i in range(2, 10_000):
        candidate = path.with_name(f"{stem}-{i}.json")
        if not candidate.exists() and not pairs_path(candidate).exists():
            return candidate
    raise ResultsError(f"no free file name beside {path}")


def differing_run(path: Path, settings: dict) -> list[str] | None:
    """How the run saved in `path` differs from `settings` (None: no file there; []: same run)."""
    if not path.exists():
        return None
    try:
        existing = load_run(path)
    except ResultsError as exc:
        return [f"unreadable ({exc})"]
    return same_run(run_settings(existing.meta, existing.tasks), settings)
