"""embeval command line: one small handler per subcommand. The only module that prints.

`embeval --help` ends with QUICK_START.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
from pathlib import Path

import click

from embeval.core.checkpoint import POOLERS, CheckpointError
from embeval.eval.datasets import PROTOCOLS, SPLITS, DataError
from embeval.eval.encode import EmbeddingError
from embeval.eval.results import ResultsError

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
USER_ERRORS = (CheckpointError, DataError, EmbeddingError, ResultsError, ValueError, OSError)
RUNS_DIR = Path("reports") / "runs"


def fail(exc: Exception, code: int = 2) -> None:
    click.echo(f"embeval: error: {exc}", err=True)
    sys.exit(code)


QUICK_START = """\b
Quick start:
  embeval score                         # packaged all-MiniLM-L6-v2, STS suite
  embeval score CHECKPOINT --split dev  # STS-B dev + SICK trial
  embeval report reports/runs/*.json    # compare runs: reports/index.html

Run `embeval COMMAND --help` for options."""


class Command(click.Command):
    def get_short_help_str(self, limit: int = 45) -> str:
        """The docstring's whole first sentence, wrapped by the help formatter: click's default
        cuts it at `limit` characters with "...", which hid what most commands do."""
        return super().get_short_help_str(limit=10**6)


class Group(Command, click.Group):
    command_class = Command
    group_class = type  # subgroups (`embeval data`) are Groups too


@click.group(cls=Group, epilog=QUICK_START)
@click.version_option(package_name="embeval")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Train and evaluate sentence embeddings, faithful to SentEval/SimCSE."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # Encoding progress when no bar is drawn (output piped): shown without -v.
    logging.getLogger("embeval.progress").setLevel(min(level, logging.INFO))


def split_tasks(values: tuple[str, ...]) -> list[str]:
    """Task names from repeated, comma-separated --tasks values; [] when none was given (the
    defaults). An empty name is refused: `--tasks ""` used to run the whole default suite."""
    names = [t.strip() for v in values for t in v.split(",")]
    if "" in names:
        given = " ".join(repr(v) for v in values)
        raise click.BadParameter(
            f"empty task name in {given}; expected comma-separated names such as STS12,stsb",
            param_hint="--tasks",
        )
    return names


def check_run_name(ctx, param, name: str | None) -> str | None:
    """--name is a label, not a path: refused at parse time, before minutes of encoding."""
    if name is not None and (re.search(r"[/\\]", name) or name.strip(".") == ""):
        raise click.BadParameter(
            f"{name!r} is a path; a run name cannot hold / or \\ or be only dots. "
            "Choose where results go with --out FILE.",
            param_hint="--name",
        )
    return name


def run_slug(name: str) -> str:
    """The run name as a visible file name: characters other than letters, digits, . _ - become
    _, and leading/trailing . _ - are dropped (so no hidden file and no path); "run" if empty."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-") or "run"


def build_encoder(
    checkpoint,
    pooler,
    batch_size,
    device,
    dtype,
    max_length,
    cache_dir,
    no_cache,
    progress=True,
    quantize=None,
):
    from embeval.eval.cache import CachedEncoder, default_cache_dir
    from embeval.eval.encode import TransformerEncoder

    # int8 models are exported once per checkpoint into the cache folder (--no-cache: a temp one)
    onnx_dir = None if no_cache or not quantize else default_cache_dir(cache_dir)
    enc = TransformerEncoder.from_checkpoint(
        checkpoint,
        pooler=pooler,
        max_length=max_length,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        progress=progress,
        quantize=quantize,
        onnx_dir=onnx_dir,
    )
    return enc if no_cache else CachedEncoder(enc, cache_dir)


def encoder_options(f):
    """Options shared by every command that encodes a checkpoint."""
    opts = [
        click.option("--pooler", type=click.Choice(POOLERS), help="Default: the checkpoint's own."),
        click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1)),
        click.option("--device", help="cpu, cuda, cuda:1 … Default: cuda when present."),
        click.option(
            "--dtype",
            type=click.Choice(["float32", "float16", "bfloat16"]),
            default="float32",
            show_default=True,
            help="float16/bfloat16: CUDA only.",
        ),
        click.option(
            "--quantize",
            type=click.Choice(["int8"]),
            help="int8: dynamic int8 linear layers via ONNX Runtime, CPU only (pip install "
            "'embeval[int8]'). Recorded in the results; `check` refuses to mix it with float32.",
        ),
        click.option("--max-length", type=click.IntRange(1), help="Token limit per sentence."),
        click.option(
            "--cache-dir",
            type=click.Path(file_okay=False),
            help="Embedding cache. Default: $EMBEVAL_CACHE, else the user cache folder.",
        ),
        click.option("--no-cache", is_flag=True, help="Do not read or write the embedding cache."),
        click.option(
            "--data",
            "data",
            type=click.Path(file_okay=False),
            help="Data root. Default: $EMBEVAL_DATA, else data/ in the project when it holds the "
            "data, else ../shared/data beside the project.",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def run_score(
    checkpoint,
    tasks,
    split,
    protocol,
    limit,
    name,
    out,
    *,
    pooler,
    batch_size,
    device,
    dtype,
    max_length,
    cache_dir,
    no_cache,
    data,
    quantize=None,
    overwrite=False,
    jobs=-1,
):
    """Score and save; returns (RunResult, path). Shared by `score` and `check`.

    A results file is replaced only by the same run (same model and scoring settings, see
    `results.run_differences`) or with `overwrite`; another run is refused before encoding, and
    a clash only found after scoring writes to a free sibling name, so finished work is never
    lost."""
    from embeval.eval.results import differing_run, free_sibling, run_settings, save_run
    from embeval.eval.score import default_run_name, score, select_tasks

    if out and not str(out).endswith(".json"):  # fail before minutes of encoding, not after
        raise ResultsError(f"output path {out} must end in .json")
    # torchrun / accelerate launch: each process encodes a share (the env test keeps a warm,
    # single-process run free of importing torch)
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = sharded_device(device) if launched else device
    encoder = build_encoder(
        checkpoint,
        pooler,
        batch_size,
        device,
        dtype,
        max_length,
        cache_dir,
        no_cache,
        progress=os.environ.get("RANK", "0") == "0",
        quantize=quantize,
    )
    if launched:
        from embeval.eval.shard import ShardedEncoder

        encoder = ShardedEncoder(encoder)
    names = split_tasks(tasks)
    describe = encoder.describe()
    slug = run_slug(name or default_run_name(describe.get("checkpoint")))
    path = Path(out) if out else RUNS_DIR / f"{slug}-{split}.json"
    planned = {**describe, "protocol": protocol, "split": split, "limit": limit}
    differences = (
        None
        if overwrite
        else differing_run(path, run_settings(planned, select_tasks(names, split, protocol)))
    )
    if differences:
        raise ResultsError(
            f"{path} holds a different run ({'; '.join(differences)}); not replacing it: pass "
            "--out FILE to write elsewhere, or --overwrite to replace it"
        )
    from embeval.eval.transfer import TransferConfig

    clf = TransferConfig(n_jobs=jobs)
    run = score(
        encoder,
        names,
        split=split,
        root=data,
        protocol=protocol,
        limit=limit,
        name=name,
        transfer_config=clf,
    )
    if run is None:  # another rank of a sharded run: rank 0 saves and prints
        return None, None
    differences = None if overwrite else differing_run(path, run_settings(run.meta, run.tasks))
    if differences:  # appeared while scoring: keep both
        sibling = free_sibling(path)
        click.echo(
            f"note: {path} now holds a different run ({'; '.join(differences)}); "
            f"writing this one to {sibling}",
            err=True,
        )
        path = sibling
    return run, save_run(run, path)


def sharded_device(device: str | None) -> str | None:
    """Join the process group torchrun / accelerate launch describe; this process's device.
    On CUDA each process takes its own GPU (LOCAL_RANK) unless --device names an index."""
    from embeval.core.distributed import init_from_env

    own = init_from_env()
    if own is None or (device and device != own.type):
        return device
    return str(own) if own.type == "cuda" else device


def overwrite_option(f):
    return click.option(
        "--overwrite",
        is_flag=True,
        help="Replace the results file even if it holds a different run (other model, tasks, "
        "split or settings). Without it only a re-run of the same run replaces it.",
    )(f)


def check_jobs(ctx, param, value: int) -> int:
    """joblib's n_jobs: a positive count, or -1 (every core), -2 (all but one), ..."""
    if value == 0:
        raise click.BadParameter("expected a positive number of processes, or -1 for every core")
    return value


@main.command()
@click.argument("checkpoint", required=False)
@click.option(
    "--tasks",
    multiple=True,
    help="Comma-separated task names or groups: sts, transfer, STSBenchmark, MR, … "
    "Repeatable. Default: all STS tasks of the split.",
)
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True)
@click.option(
    "--protocol",
    type=click.Choice(PROTOCOLS),
    default="simcse",
    show_default=True,
    help="simcse: SentEval text, SICK-R test; mteb: raw text, SICK-R all pairs.",
)
@click.option("--limit", type=click.IntRange(2), help="First N pairs per task (partial run).")
@click.option(
    "--name",
    callback=check_run_name,
    help="Run name in reports. Default: the checkpoint folder name. The default results file "
    "is named after it (other characters than letters, digits, . _ - become _).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Results JSON. Default: reports/runs/NAME-SPLIT.json",
)
@overwrite_option
@click.option(
    "--jobs",
    type=int,
    default=-1,
    show_default=True,
    callback=check_jobs,
    help="Processes for the transfer-task classifiers (-1: every core). Results do not depend "
    "on it.",
)
@encoder_options
def score(checkpoint, tasks, split, protocol, limit, name, out, **enc):
    """Score CHECKPOINT (default: packaged all-MiniLM-L6-v2) on STS and transfer tasks."""
    try:
        run, path = run_score(checkpoint, tasks, split, protocol, limit, name, out, **enc)
    except USER_ERRORS as exc:
        fail(exc)
    if run is None:  # not rank 0 of a sharded run
        return
    click.echo(format_table(run))
    click.echo(f"\nresults: {path}")


def align_rows(rows) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]


def format_table(run) -> str:
    rows = [("task", "split", "pairs", "spearman", "pearson")]
    for task, m in run.tasks.items():
        if "spearman" in m:
            rows.append(
                (task, m["split"], str(m["n"]), f"{m['spearman']:.2f}", f"{m['pearson']:.2f}")
            )
    if run.avg is not None:
        rows.append(("Avg. (SimCSE)", "", "", f"{run.avg:.2f}", ""))
    lines = align_rows(rows) if len(rows) > 1 else []
    clf = [("transfer task", "split", "n", "accuracy", "f1")]
    for task, m in run.tasks.items():
        if "accuracy" in m:
            f1 = f"{m['f1']:.2f}" if "f1" in m else ""
            clf.append((task, m["split"], str(m["n"]), f"{m['accuracy']:.2f}", f1))
    if getattr(run, "transfer_avg", None) is not None:
        clf.append(("Avg. (transfer)", "", "", f"{run.transfer_avg:.2f}", ""))
    if len(clf) > 1:
        lines += ["", *align_rows(clf)] if lines else align_rows(clf)
    d = run.diagnostics
    if "uniformity" in d:
        lines.append(
            f"\n{d['source']}: alignment {d.get('alignment', float('nan')):.3f}  "
            f"uniformity {d['uniformity']:.3f}  anisotropy {d['anisotropy']:.3f}  "
            f"effective rank {d['effective_rank']:.1f}"
        )
    t = run.meta["timings"]
    lines.append(
        f"{run.meta['n_sentences']} distinct sentences, encode {t['encode_s']:.1f}s, "
        f"total {t['total_s']:.1f}s"
    )
    return "\n".join(lines)


@main.command()
@click.argument("results", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Output file, '-' for stdout. Default: reports/index.html (.md, .csv).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["html", "md", "csv"]), default="html", show_default=True
)
@click.option("--baseline", help="Run NAME for deltas and p-values. Default: the first run.")
@click.option(
    "--train-log",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Training log (JSON lines) for alignment-uniformity trajectories; repeatable.",
)
@click.option(
    "--bootstrap",
    "n_boot",
    default=1000,
    show_default=True,
    type=click.IntRange(0),
    help="Bootstrap resamples of pairs (0: no intervals or p-values).",
)
@click.option("--seed", default=0, show_default=True, help="Bootstrap seed.")
def report(results, out, fmt, baseline, train_log, n_boot, seed):
    """Compare RESULTS files of `embeval score`: one HTML page, or Markdown/CSV tables."""
    from embeval.eval import export
    from embeval.eval import report as rep

    try:
        r = rep.build(results, baseline, train_log, n_boot, seed, figures=fmt == "html")
        render = {"html": rep.render_html, "md": export.to_markdown, "csv": export.to_csv}
        text = render[fmt](r)
        if out == "-":
            click.echo(text, nl=False)
            return
        path = rep.write(text, out or Path("reports") / f"index.{fmt}")
    except USER_ERRORS as exc:
        fail(exc)
    click.echo(f"report: {path}")


@main.command()
@click.argument("target", required=False, metavar="[RESULT.json | CHECKPOINT]")
@click.option(
    "--baseline",
    required=True,
    type=click.Path(dir_okay=False),
    help="Baseline results JSON, e.g. reports/baselines/all-MiniLM-L6-v2-stsb-dev.json.",
)
@click.option("--task", default="STSBenchmark", show_default=True)
@click.option("--split", type=click.Choice(SPLITS), default="dev", show_default=True)
@click.option(
    "--tolerance",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Allowed drop below the baseline, in Spearman points (x100).",
)
@click.option("--bootstrap", "n_boot", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, help="Bootstrap seed.")
@click.option("--name", callback=check_run_name, help="Run name when scoring a checkpoint.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Results JSON when scoring a checkpoint. Default: reports/runs/NAME-SPLIT.json",
)
@click.option(
    "--allow-quantized",
    is_flag=True,
    help="Compare an int8 (--quantize) run with a float32 one (refused by default).",
)
@overwrite_option
@encoder_options
def check(
    target, baseline, task, split, tolerance, n_boot, seed, name, out, allow_quantized, **enc
):
    """Regression gate: exit 1 if TARGET's Spearman falls below the baseline's by > tolerance.

    TARGET is a results JSON, or a checkpoint (default: the packaged model) scored first on the
    task, with the baseline's protocol and --limit. Exit 2 on unusable input.
    """
    from embeval.eval.check import check as run_check
    from embeval.eval.datasets import resolve_task
    from embeval.eval.results import load_run

    try:
        task = resolve_task(task)
        base = load_run(baseline)
        if target and target.endswith(".json"):
            result = load_run(target)
        else:
            meta = base.meta or {}
            limit = meta.get("limit") if meta.get("partial") else None
            protocol = meta.get("protocol", "simcse")
            result, path = run_score(target, (task,), split, protocol, limit, name, out, **enc)
            if result is None:  # not rank 0 of a sharded run
                return
            click.echo(f"results: {path}")
        verdict = run_check(result, base, task, split, tolerance, n_boot, seed, allow_quantized)
    except USER_ERRORS as exc:
        fail(exc)
    click.echo(verdict.line())
    sys.exit(0 if verdict.ok else 1)


@main.group("data")
def data_group() -> None:
    """Get the benchmark data (SentEval downloads) and check it against data/MANIFEST.sha256."""


def data_options(f):
    f = click.option(
        "--only",
        multiple=True,
        type=click.Choice(("sts", "sts-raw", "transfer")),
        help="sts: SentEval-preprocessed STS; sts-raw: SemEval releases; transfer: SentEval "
        "classification tasks. Repeatable. Default: all.",
    )(f)
    return click.option(
        "--data",
        type=click.Path(file_okay=False),
        help="Data root. Default: $EMBEVAL_DATA, else data/ in the project (verify: "
        "../shared/data beside the project when data/ holds none; download never writes there).",
    )(f)


@data_group.command("download")
@data_options
@click.option("--mirror", metavar="URL", help="Fetch each file as URL/<file name> instead.")
def data_download(data, only, mirror):
    """Fetch the SentEval downloads from their original sources and rebuild SentEval's layout.

    Skips files already present and verified; the sts/ preprocessing needs
    `pip install 'embeval[download]'` (sacremoses), MRPC needs cabextract.
    """
    from embeval.eval.datasets import data_root
    from embeval.eval.download import MANIFEST, download, verify

    try:
        status = download(data, only, mirror)
        mismatched = verify(data, only)[1] if MANIFEST.is_file() else []
    except USER_ERRORS as exc:
        fail(exc)
    for name, state in status.items():
        click.echo(f"{name:<18} {state}")
    for rel in mismatched:
        click.echo(f"warning: {rel} differs from the reference copy ({MANIFEST.name})", err=True)
    click.echo(f"data: {data_root(data)}")
    sys.exit(1 if any(s.startswith("failed") for s in status.values()) else 0)


@data_group.command("verify")
@data_options
def data_verify(data, only):
    """Check the data files against data/MANIFEST.sha256; exit 1 naming each bad file."""
    from embeval.eval.datasets import data_root
    from embeval.eval.download import verify

    try:
        missing, mismatched, checked = verify(data, only)
    except USER_ERRORS as exc:
        fail(exc)
    root = data_root(data)
    for rel in missing:
        click.echo(f"missing   {root / rel}")
    for rel in mismatched:
        click.echo(f"mismatch  {root / rel}")
    bad = len(missing) + len(mismatched)
    hint = f"; run `embeval data download --data {root}`" if bad else ""
    click.echo(f"{checked - bad} of {checked} files OK under {root}{hint}")
    sys.exit(1 if bad else 0)


@main.command()
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["mteb"]), default="mteb", show_default=True)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for one JSON per task (e.g. results/<model>/<revision>/ of an MTEB tree).",
)
def export(results, fmt, out):
    """Write RESULTS (a full `embeval score --protocol mteb` run) as MTEB per-task result JSON."""
    import json

    from embeval.eval.mteb_export import export_mteb, not_exported
    from embeval.eval.results import load_run

    try:
        run = load_run(results)
        paths = export_mteb(run, out)
    except USER_ERRORS as exc:
        fail(exc)
    for task in not_exported(run):
        click.echo(f"skipped {task}: no MTEB counterpart", err=True)
    meta = json.loads(paths[-1].read_text())  # model_meta.json: named after the folders
    click.echo(
        f"wrote {len(paths) - 1} MTEB result files and model_meta.json (model {meta['name']}, "
        f"revision {meta['revision']}, from the folder names) to {out}"
    )


def stsb_dev_evaluator(tokenizer, root, device, batch_size):
    """The Trainer's evaluate callback: STS-B dev Spearman plus alignment and uniformity."""
    from embeval.eval.datasets import data_root, load_sts
    from embeval.eval.encode import TransformerEncoder
    from embeval.eval.score import score

    root = data_root(root)
    try:  # fail before training, not at the first evaluation
        load_sts("STSBenchmark", "dev", root)
    except DataError as exc:  # its advice names score's --data; here the folder is --eval-data
        text = str(exc).replace("point --data", "point --eval-data")
        raise DataError(f"STS-B dev for evaluation during training (--eval-data): {text}") from exc

    def evaluate(model) -> dict:
        enc = TransformerEncoder(
            model, tokenizer, batch_size=batch_size, device=device, progress=False
        )
        run = score(enc, ["STSBenchmark"], split="dev", root=root, name="train-eval")
        d = run.diagnostics
        return {
            "stsb_dev": run.tasks["STSBenchmark"]["spearman"],
            "alignment": d.get("alignment"),
            "uniformity": d.get("uniformity"),
        }

    return evaluate


def interrupted_text(trainer, out, resume: bool) -> str:
    """What a Ctrl-C left in OUT; --resume is offered only when OUT/last holds a state."""
    saved = None if trainer is None else trainer.saved_step
    if saved is None and resume:
        return f"interrupted before training resumed; {out}/last is as it was"
    if saved is None:
        return "interrupted before training started; nothing was saved"
    best = "" if trainer.best_step is None else f"best/ (step {trainer.best_step}) and "
    return (
        f"interrupted at step {trainer.step}; {out} holds {best}last/ (step {saved}): "
        "resume with the same command plus --resume"
    )


@main.command()
@click.option(
    "--model",
    "model_name",
    required=True,
    help="Checkpoint folder, hub name, or "
    "random-tiny (a small random BERT with the packaged tokenizer, for smoke runs: NLI pairs "
    "lift its STS, unsupervised SimCSE on a random encoder does not; see the README).",
)
@click.option(
    "--data",
    "train_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="One sentence per line, or a CSV with sent0,sent1[,hard_neg].",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder: best/, last/, train_log.jsonl, train_config.json.",
)
@click.option(
    "--loss",
    default="infonce",
    show_default=True,
    help="infonce, focal-infonce, sup-simcse or align-uniform.",
)
@click.option(
    "--steps",
    type=click.IntRange(0),
    help="Optimizer steps (overrides --epochs); 0 saves the initial model.",
)
@click.option("--epochs", default=1, show_default=True, type=click.IntRange(1))
@click.option("--eval-steps", default=125, show_default=True, type=click.IntRange(1))
@click.option(
    "--save-steps",
    type=click.IntRange(1),
    help="last/ checkpoint every N steps (default: at every evaluation).",
)
@click.option("--log-steps", default=25, show_default=True, type=click.IntRange(1))
@click.option(
    "--batch-size", default=64, show_default=True, type=click.IntRange(1), help="Per process."
)
@click.option("--lr", default=3e-5, show_default=True, type=float)
@click.option("--temp", "temperature", default=0.05, show_default=True, type=float)
@click.option(
    "--focal-m", default=0.3, show_default=True, type=float, help="Focal-InfoNCE hardness m."
)
@click.option(
    "--hard-negative-weight",
    default=0.0,
    show_default=True,
    type=float,
    help="sup-simcse: log(alpha).",
)
@click.option(
    "--uniformity-weight", default=1.0, show_default=True, type=float, help="align-uniform: lambda."
)
@click.option("--max-length", default=32, show_default=True, type=click.IntRange(1))
@click.option(
    "--dropout",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    help="Dropout rate of the encoder, the noise behind SimCSE's positives. Default: the "
    "model's own (0.1 for BERT).",
)
@click.option("--warmup-steps", default=0, show_default=True, type=click.IntRange(0))
@click.option(
    "--weight-decay",
    default=0.0,
    show_default=True,
    type=float,
    help="AdamW weight decay (not on biases and LayerNorm weights).",
)
@click.option(
    "--max-grad-norm",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Clip the gradient norm, as Hugging Face's Trainer (SimCSE's loop) does; 0: off.",
)
@click.option("--seed", default=42, show_default=True, type=int)
@click.option(
    "--pooler",
    type=click.Choice(POOLERS),
    help="Training pooler. Default: the pooling the checkpoint declares (e.g. avg for a "
    "sentence-transformers mean-pooling model), else cls ([CLS] + MLP, as SimCSE trains).",
)
@click.option(
    "--eval-pooler",
    type=click.Choice(POOLERS),
    help="Pooler for evaluation and the saved checkpoints. Default: the checkpoint's declared "
    "pooling when no --pooler is given; else the training pooler, but cls_before_pooler after "
    "cls (SimCSE: the MLP is used only in training).",
)
@click.option("--keep-pooler", is_flag=True, help="Do not re-initialise the MLP pooler.")
@click.option(
    "--normalize/--no-normalize",
    default=None,
    help="End the saved checkpoints' sentence-transformers modules with Normalize (unit-length "
    "embeddings). Default: as the --model checkpoint does (all-MiniLM-L6-v2 does).",
)
@click.option("--no-amp", is_flag=True, help="No float16 autocast on CUDA.")
@click.option("--resume", is_flag=True, help="Continue from OUT/last with the same settings.")
@click.option(
    "--overwrite", is_flag=True, help="Delete the run OUT already holds and start afresh."
)
@click.option(
    "--eval-data",
    type=click.Path(file_okay=False),
    help="Data root holding STS-B dev. Default: as --data of `embeval score`.",
)
@click.option("--no-eval", is_flag=True, help="No STS-B dev scoring; best/ = the latest model.")
@click.option("--eval-batch-size", default=128, show_default=True, type=click.IntRange(1))
@click.option("--device", help="cpu, cuda, cuda:1 … Default: cuda when present.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def train(
    model_name,
    train_file,
    out,
    resume,
    overwrite,
    eval_data,
    no_eval,
    eval_batch_size,
    device,
    progress,
    keep_pooler,
    no_amp,
    **fields,
):
    """Train a contrastive sentence encoder (SimCSE / Focal-InfoNCE) and save checkpoints.

    \b
    # unsupervised SimCSE from a pretrained encoder (see examples/ for the paper's setting)
    embeval train --model bert-base-uncased --out runs/focal \\
        --data wiki1m_for_simcse.txt --loss focal-infonce --eval-data ../shared/data
    # smoke run: a random tiny BERT on NLI triplets (STS-B dev about 55 -> 70 in 150 steps)
    embeval train --model random-tiny --out runs/tiny \\
        --data ../shared/data/train/snli_devtest_triplets_for_simcse.csv \\
        --loss focal-infonce --steps 150 --lr 1e-3 --pooler avg --eval-pooler avg \\
        --eval-data ../shared/data
    """
    from embeval.core import distributed as dist
    from embeval.core.model import load_model, random_tiny, read_pooling_config, resolve_checkpoint
    from embeval.core.trainer import TrainConfig, Trainer, TrainingError, simcse_poolers

    trainer = None
    if resume and overwrite:
        fail(ValueError("--resume continues the run in --out, --overwrite deletes it: not both"))
    try:
        declared = None
        if model_name != "random-tiny" and fields["pooler"] is None:
            declared = read_pooling_config(resolve_checkpoint(model_name))[0]
        normalize = fields.pop("normalize")  # None: as the checkpoint, known once it is loaded
        if declared not in (None, "cls_before_pooler") and fields["eval_pooler"] is None:
            click.echo(f"{model_name} pools with {declared}: training with it", err=True)
        fields["pooler"], fields["eval_pooler"] = simcse_poolers(
            declared, fields["pooler"], fields["eval_pooler"]
        )
        cfg = TrainConfig(
            **fields, normalize=bool(normalize), reinit_pooler=not keep_pooler, amp=not no_amp
        )
        cfg.validate()
        if model_name == "random-tiny":
            backbone, tokenizer = random_tiny(cfg.seed)
        else:
            model, tokenizer, info = load_model(model_name, pooler=cfg.pooler)
            backbone = model.backbone
            if normalize is None:
                cfg = dataclasses.replace(cfg, normalize=info.normalize)
        evaluate = None
        if not no_eval:
            evaluate = stsb_dev_evaluator(tokenizer, eval_data, device, eval_batch_size)
        trainer = Trainer(backbone, tokenizer, train_file, cfg, out, evaluate, device, progress)
        result = trainer.train(resume=resume, overwrite=overwrite)
    except KeyboardInterrupt:
        click.echo(f"\n{interrupted_text(trainer, out, resume)}", err=True)
        sys.exit(130)
    except (TrainingError, *USER_ERRORS) as exc:
        fail(exc, 1 if isinstance(exc, TrainingError) else 2)
    if not dist.is_main():
        return
    best = (
        f"best STS-B dev {result.best_score:.2f} at step {result.best_step}"
        if result.best_score is not None
        else "no evaluation"
    )
    click.echo(f"trained {result.step} steps; {best}")
    if result.truncated:
        click.echo(f"{result.truncated} training sentence(s) truncated to {cfg.max_length} tokens")
    click.echo(f"checkpoint: {Path(out) / 'best'}\nlog: {Path(out) / 'train_log.jsonl'}")


if __name__ == "__main__":
    main()
