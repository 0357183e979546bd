"""Experiment cards: one TOML file naming models, training data, methods, seeds and tasks.

    name = "focal-vs-simcse"          # recorded in every cell's results
    models = ["packaged"]             # checkpoint folders, hub names, random-tiny; packaged =
                                      # the all-MiniLM-L6-v2 shipped with embeval
    data = "train/wiki1m.txt"         # training file (relative: from the card's folder), or an
                                      # http(s) URL, fetched once into OUT/data
    seeds = [1, 2, 3]
    steps = 40                        # optional: by [train] epochs (default 1) without it
    baseline = "simcse"               # a method below

    [train]                           # `embeval train` options shared by every method
    batch_size = 64
    [methods.simcse]                  # one table per method: `embeval train` options
    loss = "infonce"
    [methods.focal]
    loss = "focal-infonce"
    loss_args = { m = 0.3 }
    [methods.sup]                     # `data` here: this method's own training file
    loss = "sup-simcse"
    data = "train/nli.csv"
    [eval]
    tasks = ["sts"]                   # as `embeval score --tasks`
    split = "test"
    data = "/path/to/data"            # optional: as `embeval score --data`
    limit = 100                       # optional: first N pairs per task

Option names are the parameter names of `embeval train` (`batch_size`, `temperature`,
`loss_args`, `negatives`, ...); everything is checked here, with "did you mean", before any cell
runs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = None

from embeval.registry import closest

# `embeval train` parameters the runner sets for each cell: not card options.
RUNNER_SET = {
    "model_name": "models",
    "model": "models",  # the option's flag, --model
    "train_file": "data",
    "out": "(the cell's folder)",
    "seed": "seeds",
    "steps": "steps",
    "resume": "(resumption is automatic)",
    "overwrite": "(resumption is automatic)",
    "eval_data": "eval.data",
    "progress": "(off in cells)",
    "device": "(chosen per cell)",
}
TOP_KEYS = {"name", "description", "models", "data", "seeds", "steps", "baseline", "train",
            "methods", "eval", "processes"}  # fmt: skip
EVAL_KEYS = {"tasks", "split", "data", "limit", "protocol", "batch_size"}
PACKAGED = "packaged"


class CardError(ValueError):
    """A card that cannot run; the message names the file and the key."""


@dataclass(frozen=True)
class Cell:
    model: str
    method: str
    seed: int

    @property
    def key(self) -> str:
        """Folder name under OUT/cells: model__method__seedN (file-safe)."""
        return f"{slug(model_label(self.model))}__{slug(self.method)}__seed{self.seed}"


@dataclass
class Card:
    name: str
    path: Path
    models: list[str]
    data: str  # a file, or an http(s) URL fetched into OUT/data when the card runs
    seeds: list[int]
    steps: int | None
    baseline: str
    methods: dict[str, dict]  # method -> `embeval train` settings (card [train] merged in)
    method_data: dict[str, str] = field(default_factory=dict)  # method -> its own data
    eval: dict = field(default_factory=dict)
    description: str = ""
    processes: int = 1  # training processes per cell (torchrun; one GPU each when there are GPUs)

    def cells(self) -> list[Cell]:
        # Seed-major: a run stopped early has every method at its first seeds.
        return [Cell(m, meth, s) for m in self.models for s in self.seeds for meth in self.methods]

    def data_of(self, method: str) -> str:
        return self.method_data.get(method, self.data)

    def cell_meta(self, cell: Cell) -> dict:
        """What a cell's results carry under meta["reproduce"]: enough to tell whether a
        results file on disk was made by this card's cell as it now reads."""
        return {
            "card": self.name,
            "model": cell.model,
            "method": cell.method,
            "seed": cell.seed,
            "steps": self.steps,
            "data": self.data_of(cell.method),
            "settings": self.methods[cell.method],
            "eval": self.eval,
            # only when > 1: cells of cards from before the key stay done
            **({"processes": self.processes} if self.processes > 1 else {}),
        }


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def model_label(model: str) -> str:
    """A short name for a model: the last path or hub component."""
    return Path(model.rstrip("/")).name or model


def suggest(key: str, known) -> str:
    close = closest(key, sorted(known))
    return f"; did you mean {close!r}?" if close else ""


def train_params() -> dict:
    """`embeval train`'s click parameters by name, without the ones the runner sets."""
    from embeval.cli.train import train

    return {p.name: p for p in train.params if p.name not in RUNNER_SET}


def load_card(path: str | os.PathLike) -> Card:
    """Read and check a card; raises CardError naming the file and key."""
    path = Path(path)
    if tomllib is None:
        raise CardError("reading cards needs Python 3.11+ (tomllib)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CardError(f"card {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise CardError(f"{path}: not valid TOML: {exc}") from exc
    return parse_card(raw, path)


def parse_card(raw: dict, path: Path) -> Card:
    where = str(path)

    def err(msg: str) -> CardError:
        return CardError(f"{where}: {msg}")

    for key in raw:
        if key not in TOP_KEYS:
            known = ", ".join(sorted(TOP_KEYS))
            raise err(f"unknown key {key!r}{suggest(key, TOP_KEYS)} (keys: {known})")
    for key in ("models", "data", "seeds", "baseline", "methods"):
        if key not in raw:
            raise err(f"missing key {key!r}")
    name = raw.get("name", path.stem)
    models = raw["models"]
    if isinstance(models, str):
        models = [models]
    if not models or not all(isinstance(m, str) and m for m in models):
        raise err(f"models must be a list of checkpoint names, got {models!r}")
    if len(set(models)) != len(models):
        raise err(f"models lists a model twice: {models!r}")
    labels = [slug(model_label(m)) for m in models]
    if len(set(labels)) != len(labels):
        raise err(f"two models share the folder name {labels}: give distinct last components")
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds):
        raise err(f"seeds must be a non-empty list of integers, got {seeds!r}")
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise err(f"seeds lists {', '.join(map(str, dup))} more than once: {seeds}")
    steps = raw.get("steps")  # None: by epochs ([train] epochs, default 1)
    if steps is not None and (type(steps) is not int or steps < 1):
        raise err(f"steps must be an integer >= 1, got {steps!r}")
    processes = raw.get("processes", 1)
    if type(processes) is not int or processes < 1:
        raise err(
            f"processes must be an integer >= 1 (training processes per cell), got {processes!r}"
        )
    data = training_data(raw["data"], path, "data", err)
    for m in models:
        check_model(m, err)
    shared = raw.get("train", {})
    if not isinstance(shared, dict):
        raise err("[train] must be a table of `embeval train` options")
    methods_raw = raw["methods"]
    if not isinstance(methods_raw, dict) or not methods_raw:
        raise err("[methods] must hold at least one [methods.NAME] table")
    params = train_params()
    check_settings(shared, "[train]", params, err)
    methods = {}
    method_data = {}
    for meth, settings in methods_raw.items():
        if not isinstance(settings, dict):
            raise err(f"methods.{meth} must be a table of `embeval train` options")
        settings = dict(settings)
        if "data" in settings:  # this method's own training file (e.g. NLI triplets)
            method_data[meth] = training_data(
                settings.pop("data"), path, f"methods.{meth}.data", err
            )
        if not re.fullmatch(r"[A-Za-z0-9._-]+", meth):
            raise err(f"method name {meth!r}: use letters, digits, . _ -")
        check_settings(settings, f"[methods.{meth}]", params, err)
        merged = {**shared, **settings}
        check_units(merged, f"[methods.{meth}]", err)
        methods[meth] = merged
    baseline = raw["baseline"]
    if baseline not in methods:
        raise err(
            f"baseline {baseline!r} is not a method of this card{suggest(baseline, methods)} "
            f"(methods: {', '.join(methods)})"
        )
    ev = raw.get("eval", {})
    if not isinstance(ev, dict):
        raise err("[eval] must be a table")
    for key in ev:
        if key not in EVAL_KEYS:
            raise err(f"[eval]: unknown key {key!r}{suggest(key, EVAL_KEYS)}")
    ev = {"tasks": ["sts"], "split": "test", **ev}
    if isinstance(ev["tasks"], str):
        ev["tasks"] = [ev["tasks"]]
    if "data" in ev:
        ev["data"] = resolve_path(ev["data"], path, "eval.data", err)
        if not Path(ev["data"]).is_dir():
            raise err(f"eval.data: folder {ev['data']} does not exist")
    check_tasks(ev, err)
    return Card(
        name=name,
        path=path,
        models=models,
        data=data,
        seeds=seeds,
        steps=steps,
        baseline=baseline,
        methods=methods,
        method_data=method_data,
        eval=ev,
        description=raw.get("description", ""),
        processes=processes,
    )


def resolve_path(value, card_path: Path, key: str, err) -> str:
    if not isinstance(value, str) or not value:
        raise err(f"{key} must be a path, got {value!r}")
    p = Path(os.path.expandvars(value)).expanduser()
    if not p.is_absolute():
        p = card_path.parent / p
    return str(p.resolve())


def training_data(value, card_path: Path, key: str, err) -> str:
    """A training file that exists, or an http(s) URL (fetched by `fetch_data`)."""
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return value
    data = resolve_path(value, card_path, key, err)
    if not Path(data).is_file():
        raise err(f"{key}: training file {data} does not exist")
    return data


def local_data(url: str, out: str | os.PathLike) -> Path:
    """Where a training file given as a URL is kept: OUT/data/<its file name>."""
    return Path(out) / "data" / (url.rstrip("/").rsplit("/", 1)[-1] or "train.txt")


def fetch_data(card: Card, out: str | os.PathLike, download: bool = True) -> None:
    """Replace URL data by OUT/data/NAME, downloaded once (atomically: .part, then rename)."""
    import shutil
    import urllib.request

    def local(value: str) -> str:
        if not value.startswith(("http://", "https://")):
            return value
        dest = local_data(value, out)
        if download and not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            part = dest.with_name(dest.name + ".part")
            try:
                with urllib.request.urlopen(value) as r, open(part, "wb") as f:
                    shutil.copyfileobj(r, f)
            except OSError as exc:
                raise CardError(
                    f"{card.path}: cannot fetch the training data {value}: {exc}"
                ) from exc
            part.replace(dest)
        return str(dest)

    card.data = local(card.data)
    card.method_data = {m: local(d) for m, d in card.method_data.items()}


def check_model(model: str, err) -> None:
    if model in (PACKAGED, "random-tiny") or "/" in model and not Path(model).exists():
        return  # packaged, random, or a hub name (fetched when the cell runs)
    if not Path(model).exists():
        raise err(f"models: {model!r} is neither a folder nor a hub name (org/name)")


def check_settings(settings: dict, where: str, params: dict, err) -> None:
    for key, value in settings.items():
        if key in RUNNER_SET:
            raise err(f"{where}: {key} is set by the card's {RUNNER_SET[key]}, not per method")
        if key not in params:
            raise err(
                f"{where}: unknown option {key!r}{suggest(key, params)} (the options of "
                f"`embeval train`: {', '.join(sorted(params))})"
            )
        p = params[key]
        if key == "loss_args":
            if not isinstance(value, dict):
                raise err(f"{where}: loss_args must be a table, e.g. {{ m = 0.3 }}")
        elif p.multiple:
            if not isinstance(value, list):
                raise err(f"{where}: {key} must be a list")
        elif p.is_flag and not p.secondary_opts and not isinstance(value, bool):
            raise err(f"{where}: {key} is a switch: true or false")
        elif isinstance(value, dict | list):
            raise err(f"{where}: {key} must be a single value, got {value!r}")


def check_units(settings: dict, where: str, err) -> None:
    """Loss, its arguments, view, negatives and the rest as TrainConfig checks them."""
    from embeval.cli.train import loss_args_with_flags
    from embeval.core.train_config import LOSS_FIELDS, TrainConfig

    fields = {k: v for k, v in settings.items() if k in TrainConfig.__dataclass_fields__}
    params = train_params()
    fields["loss_args"] = {k: str(v) for k, v in settings.get("loss_args", {}).items()}
    try:
        for key, value in fields.items():  # text the CLI parses (e.g. "384,256"), parsed alike
            p = params.get(key)
            if isinstance(value, str) and p is not None and p.callback is not None:
                try:
                    fields[key] = p.callback(None, p, value)
                except Exception as exc:  # click.BadParameter: name the key, as the card has it
                    raise ValueError(f"{key}: {getattr(exc, 'message', exc)}") from exc
        flags = {k: settings[k] for k in LOSS_FIELDS if k in settings}
        loss = fields.get("loss", "infonce")
        fields["loss_args"] = loss_args_with_flags(loss, fields["loss_args"], flags)
        TrainConfig(**fields).validate()
    except Exception as exc:  # UnknownUnit, ValueError, click.BadParameter
        text = getattr(exc, "message", None) or str(exc)
        raise err(f"{where}: {text}") from exc


def check_tasks(ev: dict, err) -> None:
    from embeval.cli.common import split_tasks
    from embeval.eval.data.sts import SPLITS
    from embeval.eval.scoring.score import select_tasks

    if ev["split"] not in SPLITS:
        raise err(f"eval.split must be one of {', '.join(SPLITS)}, got {ev['split']!r}")
    try:
        select_tasks(split_tasks(tuple(ev["tasks"])), ev["split"], ev.get("protocol", "simcse"))
    except Exception as exc:
        raise err(f"eval.tasks: {exc}") from exc
