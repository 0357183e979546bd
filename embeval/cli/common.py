"""What several subcommands share: error exit, option sets and their checks."""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path

import click

from embeval.core.checkpoint import CheckpointError
from embeval.core.poolers import POOLERS
from embeval.eval.data.paths import DataError
from embeval.eval.encoders.postprocess import POSTPROCESSORS, make
from embeval.eval.encoders.transformer import EmbeddingError
from embeval.registry import UnknownUnit
from embeval.results.files import ResultsError

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


USER_ERRORS = (CheckpointError, DataError, EmbeddingError, ResultsError, ValueError, OSError)

RUNS_DIR = Path("reports") / "runs"


def fail(exc: Exception, code: int = 2) -> None:
    click.echo(f"embeval: error: {exc}", err=True)
    sys.exit(code)


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


def check_pooler(ctx, param, name: str | None) -> str | None:
    """A registered pooler (its canonical name) or user code, resolved at parse time."""
    if name is None:
        return None
    try:
        POOLERS.get(name)
    except UnknownUnit as exc:
        raise click.BadParameter(str(exc)) from None
    return POOLERS.canonical(name)


def pooler_help(lead: str) -> str:
    return f"{lead} One of {POOLERS.help()}; or your own as package.module:function."


def check_postprocess(ctx, param, values: tuple[str, ...]) -> list[str]:
    """Post-processor names from repeated, comma-separated values, each resolved now."""
    from embeval.eval.encoders.chain import split_names

    try:
        names = split_names(values)
        return [make(n)[0] for n in names]
    except ValueError as exc:  # UnknownUnit included
        raise click.BadParameter(str(exc)) from None


def check_whiten(ctx, param, value: str | None) -> str | None:
    """--whiten target, or a readable file holding sentences (checked before any encoding)."""
    from embeval.eval.encoders.postprocess import TARGET, read_fit_file

    if value is None or value == TARGET:
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise click.BadParameter(
            f"{value}: no such file; expected {TARGET!r} or a text file of sentences, one a line"
        )
    try:
        read_fit_file(str(path))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return str(path)


def encoder_options(f):
    """Options shared by every command that encodes a checkpoint."""
    opts = [
        click.option(
            "--pooler",
            callback=check_pooler,
            metavar="NAME",
            help=pooler_help("Default: the checkpoint's own."),
        ),
        click.option(
            "--postprocess",
            multiple=True,
            callback=check_postprocess,
            metavar="NAME[,NAME]",
            help="Post-process the vectors, in order, after the checkpoint's own Normalize (if "
            f"it declares one). Repeatable. One of {POSTPROCESSORS.help()}; or your own as "
            "package.module:name. Recorded in the results.",
        ),
        click.option(
            "--whiten",
            callback=check_whiten,
            metavar="target|FILE",
            help="Whiten the vectors last (BERT-whitening): fitted per task on the scored pairs "
            "(target: a transductive run, marked so) or once on the sentences of FILE, one a "
            "line. Recorded in the results.",
        ),
        click.option(
            "--whiten-dim",
            type=click.IntRange(1),
            metavar="K",
            help="Keep the first K whitened dimensions. Default: all.",
        ),
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
    opts.insert(
        1,
        click.option(
            "--template",
            metavar="TEXT",
            help="Prompt for a template pooler (promptbert, promptbert_denoised, prompteol): "
            "[X] marks the sentence, [MASK] the mask token. Same as --pooler NAME:TEXT.",
        ),
    )

    @functools.wraps(f)
    def with_template(*args, template=None, **kw):
        if template is not None:
            kw["pooler"] = template_pooler(kw.get("pooler"), template)
        return f(*args, **kw)

    for opt in reversed(opts):
        with_template = opt(with_template)
    return with_template


def template_pooler(pooler: str | None, template: str) -> str:
    """--pooler NAME --template TEXT as the one pooler name NAME:TEXT, checked now."""
    unit = POOLERS.get(pooler) if pooler else None
    if not getattr(unit, "template", None):
        raise click.UsageError(
            f"--template is for a template pooler (--pooler promptbert, promptbert_denoised or "
            f"prompteol); got --pooler {pooler}"
        )
    name = f"{pooler.split(':')[0]}:{template}"
    try:
        POOLERS.get(name)
    except UnknownUnit as exc:
        raise click.BadParameter(str(exc), param_hint="--template") from None
    return POOLERS.canonical(name)


def overwrite_option(f):
    return click.option(
        "--overwrite",
        is_flag=True,
        help="Replace the results file even if it holds a different run (other model, tasks, "
        "split or settings). Without it only a re-run of the same run replaces it.",
    )(f)


def bootstrap_options(help: str, minimum: int = 1, seed_dest: str = "seed"):
    """--bootstrap N (resamples, into n_boot) and --seed S: every command that draws intervals
    or p-values takes the pair."""

    def wrap(f):
        f = click.option("--seed", seed_dest, default=0, show_default=True, help="Bootstrap seed.")(
            f
        )
        return click.option(
            "--bootstrap",
            "n_boot",
            default=1000,
            show_default=True,
            type=click.IntRange(minimum),
            help=help,
        )(f)

    return wrap


def check_jobs(ctx, param, value: int) -> int:
    """joblib's n_jobs: a positive count, or -1 (every core), -2 (all but one), ..."""
    if value == 0:
        raise click.BadParameter("expected a positive number of processes, or -1 for every core")
    return value
