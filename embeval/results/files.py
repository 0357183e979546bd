"""Results files: the only contract between scoring and reporting.

A run is two files written side by side, each atomically (temporary file, then rename):
- ``NAME.json``: schema-versioned metrics and metadata (`tasks[TASK]["spearman"]` is the primary
  score x100 of an STS task; a SentEval transfer task has `accuracy` x100 instead, plus `f1` for
  MRPC; a ranking task (EvalRank) `mr`, `mrr` x100, `hits@K` x100 and its `pool` size;
  `transfer_avg` is the mean accuracy of the seven transfer tasks, null unless all ran;
  `meta.sweep` marks one point of a dimension or layer sweep, see
  `embeval.eval.scoring.sweeps`);
- ``NAME.pairs.npz``: per-pair predicted similarity, gold score, subset and both sentences of
  each task, for bootstrap statistics, plots and error analysis.

Both carry the same `run_id` (a fresh one per save), so a per-pair file copied from another run
is recognised and ignored instead of giving intervals and p-values of other pairs. Files written
before the id existed have none and load unchecked.

Schema history (see CHANGELOG.md): 1 = first release; 2 = transfer tasks and `transfer_avg`;
3 = ranking tasks (EvalRank) and `meta.sweep` (one point of a --dims / --layers sweep).

Two versions say what a file can be compared with. `schema_version` (SCHEMA_VERSION) changes
when the file's layout changes: a field added, renamed or retyped; `upgrade` reads every older
one. `meta.embeval_version` (`embeval.__version__`, the version in pyproject.toml) must change
whenever a figure can change: a change that can move any number a results file holds (a metric,
a protocol, data reading, an encoder's numerics) bumps the version in pyproject.toml in the same
commit and gets a CHANGELOG line, so two files with the same version and settings
(`run_settings`) hold the same figures.

`RunResult` keeps the JSON objects as dicts; `embeval.results.records` gives typed views of them
(`run.scores()`, `run.meta_record()`, `run.diagnostics_record()`).
"""

from __future__ import annotations

import json
import math
import os
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embeval.core.fileio import atomic_write
from embeval.results import records

SCHEMA_VERSION = 3
PAIR_FIELDS = ("sim", "gold", "subset", "s1", "s2")
RUN_ID_KEY = "_meta/run_id"  # in the .npz; "task/field" shaped so older readers do not choke


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
    run_id: str | None = None  # shared with the .pairs.npz written beside it; None: older file

    def to_json(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "run_id": self.run_id,
            "meta": self.meta,
            "tasks": self.tasks,
            "avg": self.avg,
            "transfer_avg": self.transfer_avg,
            "diagnostics": self.diagnostics,
        }

    def scores(self) -> dict[str, records.STSScore | records.TransferScore | records.RankingScore]:
        """Typed views of `tasks`, in file order: STSScore (has spearman), TransferScore (has
        accuracy) or RankingScore (has mrr)."""
        out = {}
        for task, entry in self.tasks.items():
            rec = records.score_record(task, entry)
            if rec is None:
                raise ResultsError(
                    f"{self.path or self.name}: task {task} has none of spearman (STS), "
                    "accuracy (transfer), mrr (ranking)"
                )
            out[task] = rec
        return out

    def meta_record(self) -> records.RunMeta:
        return records.RunMeta.from_dict(self.meta or {})

    def diagnostics_record(self) -> records.Diagnostics | None:
        """None for a run without diagnostics (no STS-B scored, or `diagnostics=False`)."""
        return records.Diagnostics.from_dict(self.diagnostics) if self.diagnostics else None

    def load_pairs(self) -> dict[str, dict[str, np.ndarray]]:
        """Per-pair arrays, read from the .pairs.npz next to the JSON on first use."""
        if not self.pairs and self.path is not None:
            self.pairs = load_pairs(pairs_path(self.path), self.run_id, self.path)
        return self.pairs


def pairs_path(json_path: str | os.PathLike) -> Path:
    """NAME.pairs.npz beside NAME.json."""
    json_path = Path(json_path)
    return json_path.with_name(json_path.name.removesuffix(".json") + ".pairs.npz")


def save_run(run: RunResult, path: str | os.PathLike) -> Path:
    """Write JSON + pairs; the JSON goes last, so a readable JSON always has its pairs."""
    path = Path(path)
    if path.suffix != ".json":
        raise ResultsError(f"output path {path} must end in .json")
    run.run_id = uuid.uuid4().hex  # these two files, written together, belong together
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
        arrays[RUN_ID_KEY] = np.array(run.run_id)
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
    validate(data, path)
    return RunResult(
        name=data["name"],
        meta=data["meta"],
        tasks=data["tasks"],
        avg=data.get("avg"),
        transfer_avg=data.get("transfer_avg"),
        diagnostics=data.get("diagnostics", {}),
        schema_version=SCHEMA_VERSION,
        path=path,
        run_id=data.get("run_id"),
    )


# Fields that reports, `check` and `export` compute with, and the types they need there.
METRIC_KEYS = ("spearman", "pearson", "accuracy", "f1", "dev_accuracy", "mr", "mrr")  # not C
SWEEP_AXES = ("dims", "layers")  # meta.sweep.axis
COUNT_KEYS = ("n", *records.DIAGNOSTIC_COUNTS)


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _expect(path: Path, field: str, value, ok: bool, expected: str) -> None:
    if not ok:
        raise ResultsError(
            f"{path}: field {field} is {value!r} ({type(value).__name__}); expected {expected}"
        )


def _check_metrics(path: Path, where: str, d) -> None:
    """Numbers (and counts, split names) of one task, subset or aggregate entry."""
    _expect(path, where, d, isinstance(d, dict), "an object")
    for k in (*METRIC_KEYS, *(k for k in d if str(k).startswith("hits@"))):
        if k in d:
            _expect(path, f"{where}.{k}", d[k], _is_number(d[k]), "a finite number")
    if "n" in d:
        _expect(path, f"{where}.n", d["n"], isinstance(d["n"], int) and d["n"] >= 0, "a count")
    if "split" in d:
        _expect(path, f"{where}.split", d["split"], isinstance(d["split"], str), "a split name")


def validate(data: dict, path: str | os.PathLike) -> None:
    """Refuse a results file whose fields have the wrong type, naming the file and the field.

    A hand-edited or foreign file would otherwise fail later, far from its cause (a report's
    "Unknown format code 'f'" names neither). Only the fields embeval reads are checked (every
    `diagnostics` field is: the report prints them all); unknown extra fields are kept as they are.
    """
    _expect(path, "name", data.get("name"), isinstance(data.get("name"), str), "a string")
    rid = data.get("run_id")
    _expect(path, "run_id", rid, rid is None or isinstance(rid, str), "a string or null")
    meta = data.get("meta")
    _expect(path, "meta", meta, isinstance(meta, dict), "an object")
    for k in ("protocol", "split", "embeval_version", "created"):
        if meta.get(k) is not None:
            _expect(path, f"meta.{k}", meta[k], isinstance(meta[k], str), "a string")
    limit = meta.get("limit")
    ok = limit is None or (isinstance(limit, int) and not isinstance(limit, bool) and limit > 0)
    _expect(path, "meta.limit", limit, ok, "a positive number of pairs or null")
    q = meta.get("quantize")
    _expect(path, "meta.quantize", q, q is None or q == "int8", '"int8" or null (float32)')
    if "transductive" in meta:
        t = meta["transductive"]
        _expect(path, "meta.transductive", t, isinstance(t, bool), "true/false")
    if "partial" in meta:
        _expect(
            path, "meta.partial", meta["partial"], isinstance(meta["partial"], bool), "true/false"
        )
    sweep = meta.get("sweep")
    if sweep is not None:
        ok = (
            isinstance(sweep, dict)
            and sweep.get("axis") in SWEEP_AXES
            and isinstance(sweep.get("value"), int)
            and not isinstance(sweep.get("value"), bool)
        )
        expected = f'{{"axis": one of {", ".join(SWEEP_AXES)}, "value": an integer}}'
        _expect(path, "meta.sweep", sweep, ok, expected)
    _expect(path, "tasks", data["tasks"], isinstance(data["tasks"], dict), "an object")
    for task, entry in data["tasks"].items():
        _check_metrics(path, f"tasks.{task}", entry)
        for group in ("subsets", "aggregates"):
            sub = entry.get(group)
            if sub is None:
                continue
            _expect(path, f"tasks.{task}.{group}", sub, isinstance(sub, dict), "an object")
            for name, m in sub.items():
                _check_metrics(path, f"tasks.{task}.{group}.{name}", m)
    for k in ("avg", "transfer_avg"):
        v = data.get(k)
        _expect(path, k, v, v is None or _is_number(v), "a finite number or null")
    diag = data.get("diagnostics", {})
    _expect(path, "diagnostics", diag, isinstance(diag, dict), "an object")
    for k, v in diag.items():  # every diagnostic is a number, whichever unit measured it
        if k == "source":
            _expect(path, "diagnostics.source", v, isinstance(v, str), "a string")
        elif k in COUNT_KEYS:
            _expect(path, f"diagnostics.{k}", v, isinstance(v, int), "a count")
        else:
            _expect(path, f"diagnostics.{k}", v, _is_number(v), "a finite number")


def upgrade(data: dict) -> dict:
    """Bring an older schema to the current one, one version step at a time."""
    if data["schema_version"] == 1:  # 1 -> 2: transfer tasks arrived; v1 runs had none
        data = {**data, "schema_version": 2, "transfer_avg": None}
    if data["schema_version"] == 2:  # 2 -> 3: ranking tasks and sweeps arrived; v2 had none
        data = {**data, "schema_version": 3}
    return data


def load_pairs(
    path: str | os.PathLike, run_id: str | None = None, json_path: str | os.PathLike | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """Per-pair arrays by task. With `run_id` (from the results JSON `json_path`), a file that
    another save wrote (another id, or none) is refused: its pairs are not this run's."""
    try:
        with np.load(path, allow_pickle=False) as z:
            found = str(z[RUN_ID_KEY]) if RUN_ID_KEY in z.files else None
            out: dict[str, dict[str, np.ndarray]] = {}
            if run_id is None or found == run_id:
                for key in z.files:
                    if key != RUN_ID_KEY:
                        task, name = key.split("/", 1)
                        out.setdefault(task, {})[name] = z[key]
    except FileNotFoundError:
        raise ResultsError(f"per-pair file {path} is missing; re-run `embeval score`") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # e.g. a truncated copy
        raise ResultsError(f"per-pair file {path} is unreadable: {exc}") from exc
    if run_id is not None and found != run_id:
        raise ResultsError(
            f"per-pair file {path} belongs to another run than {json_path} (run id "
            f"{found or 'none'} there, {run_id} in the results file): ignoring it; re-run "
            "`embeval score` or put the matching .pairs.npz beside it"
        )
    return out


def path_list(paths: Sequence[str | os.PathLike] | str | os.PathLike) -> list:
    """One path (str or Path) or several, as a list: a lone str is one file, not its letters."""
    return [paths] if isinstance(paths, str | os.PathLike) else list(paths)


def load_runs(
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
) -> tuple[list[tuple[str, RunResult]], list[str]]:
    """Load results files; return (unique label, run) pairs and notes about renamed runs.

    A run's label is its name, marked ' (int8)' when quantized (`quantize_mark`); two runs with
    the same name are kept and told apart by their file path in brackets (a note says so); the
    same file given twice is refused. The report and `to_frame` name runs this way."""
    paths = path_list(paths)
    seen: dict[Path, str] = {}
    for p in paths:
        real = Path(p).resolve()
        if real in seen:
            raise ResultsError(f"results file {p} is given twice (also as {seen[real]})")
        seen[real] = str(p)
    runs = [load_run(p) for p in paths]
    names = [r.name for r in runs]
    labels, notes = [], []
    for p, r in zip(paths, runs, strict=True):
        label = r.name + quantize_mark(r) + transductive_mark(r)
        labels.append(f"{label} [{p}]" if names.count(r.name) > 1 else label)
    for name in dict.fromkeys(n for n in names if names.count(n) > 1):
        notes.append(
            f"{names.count(name)} runs are named {name!r}; they are told apart by their "
            "results file in brackets (use `embeval score --name` to name runs)"
        )
    return list(zip(labels, runs, strict=True)), notes


def quantize_mark(run: RunResult) -> str:
    """' (int8)' for a quantized run: its label says so wherever it appears (tables, cards,
    plots, frames), so it is never read as the float32 model's figures."""
    q = (run.meta or {}).get("quantize")
    return f" ({q})" if q else ""


def transductive_mark(run: RunResult) -> str:
    """' (transductive)' for a run fitted on the sentences it scores (--whiten target): its
    figures saw the test sentences, so its label says so wherever it appears."""
    return " (transductive)" if (run.meta or {}).get("transductive") else ""


# What makes two runs the same run: the model as scored and the scoring settings. Not the batch
# size, device or cache (figures do not depend on them), nor the time or embeval version.
RUN_SETTINGS = (
    "fingerprint",
    "pooler",
    "normalize",
    "max_length",
    "dtype",
    "quantize",
    "truncate_dim",  # Matryoshka truncation (--truncate, --dims)
    "protocol",
    "split",
    "limit",
    "tasks",
)


def run_settings(meta: dict, tasks) -> dict:
    """The settings `run_differences` compares, from a run's metadata and its task names."""
    return {
        **{k: meta.get(k) for k in RUN_SETTINGS},
        "postprocess": postprocess_steps(meta),
        "tasks": sorted(tasks),
    }


def postprocess_steps(meta: dict) -> list[str]:
    """The post-processing chain as 'name' or 'name (fit on X)' (fit sizes follow from the
    tasks); a file from before the chain was recorded had Normalize alone, when `normalize`."""
    chain = meta.get("postprocess")
    if chain is None:
        return ["normalize"] if meta.get("normalize") else []
    fixed = ("name", "fit_on", "fit_size")  # any other key is a setting of the step (dim)
    return [
        s["name"]
        + (f" (fit on {s['fit_on']})" if s.get("fit_on") else "")
        + "".join(f" ({k} {v})" for k, v in s.items() if k not in fixed and v is not None)
        for s in chain
    ]


def run_differences(a: dict, b: dict) -> list[str]:
    """How two `run_settings` dicts differ, as 'key: a vs b' lines; [] means the same run, so
    one may replace the other's file (re-running a command), anything else may not silently."""
    return [
        f"{k}: {a.get(k)!r} vs {b.get(k)!r}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k)
    ]


def free_sibling(path: str | os.PathLike) -> Path:
    """`NAME-2.json`, `NAME-3.json`, … : the first name whose JSON and pairs files are both free."""
    path = Path(path)
    stem = path.name.removesuffix(".json")
    for i in range(2, 10_000):
        candidate = path.with_name(f"{stem}-{i}.json")
        if not candidate.exists() and not pairs_path(candidate).exists():
            return candidate
    raise ResultsError(f"no free file name beside {path}")


def differing_run(path: str | os.PathLike, settings: dict) -> list[str] | None:
    """How the run saved in `path` differs from `settings` (None: no file there; []: same run)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        existing = load_run(path)
    except ResultsError as exc:
        return [f"unreadable ({exc})"]
    return run_differences(run_settings(existing.meta, existing.tasks), settings)
