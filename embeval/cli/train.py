"""`embeval train`: contrastive training, with STS-B dev scored as it goes."""

from __future__ import annotations

import dataclasses
import importlib
import sys
from pathlib import Path

import click

from embeval.cli.app import main
from embeval.cli.common import (
    USER_ERRORS,
    check_pooler,
    fail,
    pooler_help,
)
from embeval.eval.data.paths import DataError


def stsb_dev_evaluator(tokenizer, root, device, batch_size, normalize=False):
    """The Trainer's evaluate callback: STS-B dev Spearman plus alignment, uniformity, anisotropy
    and effective rank, with the encoder chain `embeval score` builds for the saved checkpoint
    (Normalize when it will declare it)."""
    from embeval.eval.data.paths import data_root
    from embeval.eval.data.sts import load_sts
    from embeval.eval.encoders.chain import build_encoder
    from embeval.eval.scoring.score import score

    root = data_root(root)
    try:  # fail before training, not at the first evaluation
        load_sts("STSBenchmark", "dev", root)
    except DataError as exc:  # its advice names score's --data; here the folder is --eval-data
        text = str(exc).replace("point --data", "point --eval-data")
        raise DataError(f"STS-B dev for evaluation during training (--eval-data): {text}") from exc

    def evaluate(model) -> dict:
        enc = build_encoder(
            model=model,
            tokenizer=tokenizer,
            normalize=normalize,
            batch_size=batch_size,
            device=device,
            progress=False,
        )
        run = score(enc, ["STSBenchmark"], split="dev", root=root, name="train-eval")
        d = run.diagnostics
        return {
            "stsb_dev": run.tasks["STSBenchmark"]["spearman"],
            "alignment": d.get("alignment"),
            "uniformity": d.get("uniformity"),
            # already measured by score(): free geometry for `embeval reproduce`'s collapse check
            "anisotropy": d.get("anisotropy"),
            "effective_rank": d.get("effective_rank"),
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


class UnitOption(click.Option):
    """An option naming a registered unit (a loss, a view builder, ...): its help lists the
    registry's units (name: first docstring line), read when the help is shown, so that
    `embeval` itself starts without importing torch (the losses need it)."""

    def __init__(self, *args, registry: str, settings: int | None = None, **kwargs):
        self.registry, self.intro = registry, kwargs.get("help", "")  # "module:ATTRIBUTE"
        self.settings = settings  # list each unit's settings: its parameters after this many
        super().__init__(*args, **kwargs)

    def get_help_record(self, ctx):
        module, _, attr = self.registry.partition(":")
        reg = getattr(importlib.import_module(module), attr)
        units = reg.help()
        if self.settings is not None:
            from embeval.core.losses import accepted_arguments
            from embeval.registry import first_line

            units = "; ".join(
                f"{name}: {first_line(unit)}" + _settings(accepted_arguments(unit, self.settings))
                for name, unit in reg.items()
            )
        self.help = (
            f"{self.intro} Built in: {units or 'none'}. Or your own: package.module:name, "
            f"or an installed package's entry point in the group {reg.group}."
        )
        return super().get_help_record(ctx)


def _settings(accepted: str) -> str:
    return "" if accepted == "none" else f" [settings: {accepted}]"


def key_values(ctx, param, values: tuple[str, ...]) -> dict[str, str]:
    """Repeated KEY=VALUE options as a dict; the values stay text until the unit's signature
    says their type."""
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE, e.g. m=0.2")
        if key in out:
            raise click.BadParameter(f"{key} is given twice ({key}={out[key]}, {item})")
        out[key] = value
    return out


def unit_args_option(flag: str, dest: str, help: str):
    """A repeatable KEY=VALUE option into a dict: the settings of a --loss, --view, ... unit."""
    return click.option(
        flag, dest, multiple=True, metavar="KEY=VALUE", callback=key_values, help=help
    )


def int_list(value: str | None, param, kind=int) -> list:
    """'768,512,64' as [768, 512, 64] (or floats); None as []."""
    if not value:
        return []
    try:
        return [kind(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected comma-separated {kind.__name__}s, e.g. 768,256,64",
            param=param,
        ) from None


def loss_args_with_flags(loss: str, loss_args: dict, flags: dict) -> dict:
    """--loss-arg's KEY=VALUE pairs plus the loss flags kept from before it that were given
    (`flags`: config field -> value or None; --focal-m F sets m=F, as LOSS_FIELDS maps them). A
    flag for an argument the loss does not take, or one --loss-arg also sets, is refused."""
    from embeval.core.losses import accepted_arguments, get_loss, loss_parameters
    from embeval.core.train_config import LOSS_FIELDS

    args = dict(loss_args)
    for name, arg in LOSS_FIELDS.items():
        value, flag = flags.get(name), "--" + name.replace("_", "-")
        if value is None:
            continue
        fn = get_loss(loss)
        if arg not in loss_parameters(fn):
            raise click.BadParameter(
                f"sets the loss argument {arg!r}, which loss {loss!r} does not take (its "
                f"arguments: {accepted_arguments(fn)})",
                param_hint=flag,
            )
        if arg in args:
            raise click.BadParameter(
                f"sets {arg}, as --loss-arg {arg}={args[arg]} does: give one", param_hint=flag
            )
        args[arg] = value
    return args


@main.command()
@click.option(
    "--model",
    "model_name",
    required=True,
    help="Checkpoint folder, hub name, or "
    "random-tiny (a small random BERT with the packaged tokenizer, for smoke runs: NLI pairs "
    "lift its STS, unsupervised SimCSE on a random encoder does not; see "
    "docs/random-tiny-sweep.md).",
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
    cls=UnitOption,
    registry="embeval.core.losses:LOSSES",
    default="infonce",
    show_default=True,
    help="Loss over the batch's cosine similarity matrix.",
)
@unit_args_option(
    "--loss-arg",
    "loss_args",
    "An argument of the loss (repeatable), e.g. m=0.2 for focal-infonce: a keyword "
    "parameter of the loss function, the value converted to its default's type. Unknown keys "
    "are refused. train_config.json records every argument the loss ran with.",
)
@click.option(
    "--view",
    cls=UnitOption,
    registry="embeval.core.views:VIEWS",
    settings=1,
    help="How examples become views (anchors, positives, hard negatives). Default: by --data, "
    "dropout for one sentence per line, pairs for a CSV.",
)
@unit_args_option(
    "--view-arg",
    "view_args",
    "A setting of the --view builder (repeatable), e.g. dup_rate=0.32 for esimcse; "
    "checked and typed against its signature as --loss-arg is.",
)
@click.option(
    "--negatives",
    cls=UnitOption,
    registry="embeval.core.negatives:NEGATIVES",
    settings=0,
    multiple=True,
    help="An extra-negative provider adding columns to the similarity matrix (repeatable).",
)
@unit_args_option(
    "--negatives-arg",
    "negatives_args",
    "A setting of the --negatives providers (repeatable; each takes the keys it names), "
    "e.g. queue_size=160 for momentum-queue. train_config.json records every provider's.",
)
@click.option(
    "--objective",
    cls=UnitOption,
    registry="embeval.core.objectives:OBJECTIVES",
    help="A head trained beside the encoder whose loss joins (or replaces) the contrastive "
    "one; its parameters are saved in OUT/last for --resume, not in the checkpoints.",
)
@unit_args_option(
    "--objective-arg", "objective_args", "An argument of the objective (repeatable), as --loss-arg."
)
@click.option(
    "--reference-model",
    help="Frozen model that scores each batch for losses taking ref_sim (gcse: the base "
    "model; dclr: an unsupervised SimCSE): a checkpoint, hub name, random-tiny, or 'initial' "
    "(a frozen copy of --model as training starts). Same tokenizer as --model.",
)
@click.option(
    "--matryoshka-dims",
    callback=lambda ctx, param, v: int_list(v, param),
    metavar="D1,D2,...",
    help="Matryoshka: the loss becomes the sum over these prefix widths d of w_d * loss(first d "
    "coordinates), e.g. 768,512,256,128,64 (any --loss).",
)
@click.option(
    "--matryoshka-weights",
    callback=lambda ctx, param, v: int_list(v, param, float),
    metavar="W1,W2,...",
    help="w_d, one per --matryoshka-dims entry. Default: all 1.",
)
@click.option(
    "--matryoshka-layers",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="2D Matryoshka (2DMSE): also train the pooled output of this many layers drawn each "
    "step (1 in the paper), plus a KL term towards the last layer; 0: off.",
)
@click.option(
    "--matryoshka-kl-temperature",
    default=0.3,
    show_default=True,
    type=click.FloatRange(0),
    help="2DMSE's KL temperature; 0 drops the KL term.",
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
    "--focal-m", default=None, type=float, help="focal-infonce's hardness m: --loss-arg m=F."
)
@click.option(
    "--hard-negative-weight",
    default=None,
    type=float,
    help="sup-simcse's log(alpha): --loss-arg hard_negative_weight=F.",
)
@click.option(
    "--uniformity-weight",
    default=None,
    type=float,
    help="align-uniform's lambda: --loss-arg lam=F.",
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
    callback=check_pooler,
    metavar="NAME",
    help=pooler_help(
        "Training pooler. Default: the pooling the checkpoint declares (e.g. avg for a "
        "sentence-transformers mean-pooling model), else cls ([CLS] + MLP, as SimCSE trains)."
    ),
)
@click.option(
    "--eval-pooler",
    callback=check_pooler,
    metavar="NAME",
    help="Pooler for evaluation and the saved checkpoints (names as --pooler; one that "
    "sentence-transformers lacks is recorded in embeval_config.json, and sentence-transformers "
    "pools those checkpoints with mean). Default: the checkpoint's declared pooling when no "
    "--pooler is given; else the training pooler, but cls_before_pooler after cls (SimCSE: the "
    "MLP is used only in training).",
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
    from embeval.core.train_config import LOSS_FIELDS, pooler_to_load
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
        flags = {name: fields.pop(name) for name in LOSS_FIELDS}  # --focal-m ...
        fields["loss_args"] = loss_args_with_flags(fields["loss"], fields["loss_args"], flags)
        fields["negatives"] = list(fields["negatives"])
        cfg = TrainConfig(
            **fields, normalize=bool(normalize), reinit_pooler=not keep_pooler, amp=not no_amp
        )
        cfg.validate()
        if model_name == "random-tiny":
            backbone, tokenizer = random_tiny(cfg.seed)
        else:
            load_as = pooler_to_load(cfg.view, cfg.pooler)  # keeps the MLP when training uses it
            model, tokenizer, info = load_model(model_name, pooler=load_as)
            backbone = model.backbone
            if normalize is None:
                cfg = dataclasses.replace(cfg, normalize=info.normalize)
        evaluate = None
        if not no_eval:
            evaluate = stsb_dev_evaluator(
                tokenizer, eval_data, device, eval_batch_size, normalize=cfg.normalize
            )
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
