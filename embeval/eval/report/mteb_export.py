"""Export embeval STS results in MTEB's per-task result JSON layout.

One file per task, named after MTEB's task (``STS12.json`` … ``STSBenchmark.json``,
``SICK-R.json``), shaped as mteb's ``TaskResult`` (checked against mteb 2.26):
``{dataset_revision, task_name, mteb_version, scores: {split: [{main_score, cosine_spearman,
cosine_pearson, pearson, spearman, hf_subset, languages}]}, evaluation_time, kg_co2_emissions}``.
Scores are fractions (0.8203), as MTEB writes them, not x100. Put the files under
``results/<model>/<revision>/`` of an MTEB results tree to compare with the leaderboard: beside
them goes ``model_meta.json``, without which mteb's loader (``ResultCache(tree).load_results()``)
skips the folder. Its `name` and `revision` are the folder names, read as mteb reads them
(``org__model`` is ``org/model``), so the metadata and the path never disagree.

What is and is not claimed:
- ``dataset_revision`` is the revision of the Hugging Face dataset MTEB's task reads; embeval read
  the same pairs from the SentEval/SemEval files (the `embeval` block records their checksum).
- ``mteb_version`` names the mteb release whose result format and task metadata this export
  follows (a slow test loads the files with it); the numbers were computed by embeval, as each
  file's `embeval` block says.
- ``model_meta.json`` claims only what the run knows (similarity: cosine, max_tokens); the rest
  of mteb's ModelMeta fields (parameters, licence, training data) are null.
- Only cosine scores exist (embeval stores cosine similarities per pair); MTEB's manhattan and
  euclidean fields are left out rather than invented.
- ``evaluation_time`` is the wall time of the whole embeval run (it scores all tasks in one pass).
Refused: partial (`--limit`) runs, runs on another split than test, and runs not scored with
``--protocol mteb`` (SentEval text and SICK-R's test half are not what MTEB scores).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from embeval.core.fileio import atomic_write
from embeval.eval.data.tasks import TASKS, mteb_task
from embeval.results.files import ResultsError, RunResult

log = logging.getLogger(__name__)
FORMATS = ("mteb",)
# The mteb release the layout and the tasks' MTEB facts were checked against; each task's MTEB
# name and dataset revision are facts of its record (embeval.eval.data.tasks).
MTEB_VERSION = "2.26.24"


def check_exportable(run: RunResult) -> None:
    """Refuse runs whose numbers MTEB results cannot be compared with."""
    where = run.path or run.name
    meta = run.meta
    if meta.get("partial", bool(meta.get("limit"))):  # a --limit that cut nothing is complete
        raise ResultsError(
            f"{where} is a partial run (--limit {meta.get('limit')}): its scores cover only the "
            "first pairs of each task and must not be compared with MTEB results; re-run "
            "`embeval score --protocol mteb` without --limit"
        )
    if meta.get("protocol") != "mteb":
        raise ResultsError(
            f"{where} was scored with --protocol {meta.get('protocol')}; MTEB scores raw text and "
            "all 9,927 SICK-R pairs: re-run `embeval score --protocol mteb` to export"
        )
    if meta.get("split") != "test":
        raise ResultsError(f"{where} is a {meta.get('split')!r} run; MTEB reports test splits")


def task_result(run: RunResult, task: str) -> dict:
    """MTEB's TaskResult dict for one embeval STS task."""
    record = mteb_task(task)
    if record is None:
        raise ResultsError(f"{task!r} has no MTEB counterpart (no mteb_name in its task record)")
    name, revision = record.mteb_name, record.mteb_revision
    m = run.tasks[task]
    spearman, pearson = m["spearman"] / 100, m["pearson"] / 100
    return {
        "dataset_revision": revision,
        "task_name": name,
        "mteb_version": MTEB_VERSION,
        "scores": {
            "test": [
                {
                    "pearson": pearson,  # with the model's similarity function: cosine
                    "spearman": spearman,
                    "cosine_pearson": pearson,
                    "cosine_spearman": spearman,
                    "main_score": spearman,
                    "hf_subset": "default",
                    "languages": ["eng-Latn"],
                }
            ]
        },
        "evaluation_time": run.meta.get("timings", {}).get("total_s"),
        "kg_co2_emissions": None,
        "embeval": {
            "run": run.name,
            "embeval_version": run.meta.get("embeval_version"),
            "checkpoint": run.meta.get("checkpoint"),
            "pooler": run.meta.get("pooler"),
            "protocol": run.meta.get("protocol"),
            "n_pairs": m["n"],
            "data_checksum": run.meta.get("data_checksums", {}).get(task),
        },
    }


def model_meta(run: RunResult, out_dir: str | os.PathLike) -> dict:
    """mteb's ModelMeta as `ModelMeta.to_dict()` writes it, named after `out_dir`
    (``.../<org>__<model>/<revision>``): what its results loader needs beside the task files."""
    folder = Path(out_dir).resolve()
    max_length = run.meta.get("max_length")
    return {
        "loader_kwargs": {},
        "name": folder.parent.name.replace("__", "/"),
        "revision": folder.name,
        "release_date": None,
        "languages": None,
        "n_parameters": None,
        "n_active_parameters_override": None,
        "n_embedding_parameters": None,
        "memory_usage_mb": None,
        "max_tokens": float(max_length) if isinstance(max_length, int) else None,
        "embed_dim": None,
        "license": None,
        "open_weights": None,
        "public_training_code": None,
        "public_training_data": None,
        "framework": ["PyTorch", "Transformers"],
        "reference": None,
        "similarity_fn_name": "cosine",
        "use_instructions": False,
        "training_datasets": None,
        "adapted_from": None,
        "superseded_by": None,
        "modalities": ["text"],
        "model_type": ["dense"],
        "citation": None,
        "contacts": None,
        "experiment_kwargs": None,  # not null would make it an mteb "experiment", loaded apart
        "output_dtypes": None,
        "extra_requirements_groups": None,
        "loader": None,
        "is_cross_encoder": False,
    }


def not_exported(run: RunResult) -> list[str]:
    """Tasks of `run` that MTEB has no counterpart for (SentEval transfer tasks)."""
    return [t for t in run.tasks if mteb_task(t) is None]


def export_mteb(run: RunResult, out_dir: str | os.PathLike) -> list[Path]:
    """Write one MTEB result JSON per STS task of `run` and `model_meta.json` into `out_dir`;
    returns the paths (model_meta.json last).

    Tasks without an MTEB counterpart (SentEval transfer tasks) are skipped with a log line."""
    check_exportable(run)
    tasks = [t for t in run.tasks if mteb_task(t) is not None]
    if skipped := not_exported(run):
        log.warning("no MTEB counterpart, not exported: %s", ", ".join(skipped))
    if not tasks:
        known = ", ".join(n for n, t in TASKS.items() if t.mteb_name)
        raise ResultsError(f"{run.path or run.name} has no STS task to export (MTEB: {known})")
    out, paths = Path(out_dir), []
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {out} is a file; expected a folder")
    files = {mteb_task(t).mteb_name + ".json": task_result(run, t) for t in tasks}
    files["model_meta.json"] = model_meta(run, out)  # last: the folder is loadable once it is in
    try:
        for name, content in files.items():
            body = json.dumps(content, indent=2, allow_nan=False).encode() + b"\n"
            path = out / name
            atomic_write(path, lambda f, b=body: f.write(b))
            paths.append(path)
    except OSError as exc:
        raise ResultsError(f"cannot write MTEB results to {out}: {exc.strerror or exc}") from exc
    return paths
