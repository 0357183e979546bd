"""Score a checkpoint and save its results file: shared by `score` and `check`. The encoder
chain comes from `embeval.eval.encoders.chain.build_encoder`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from embeval.cli.common import (
    RUNS_DIR,
    run_slug,
    split_tasks,
)
from embeval.results.files import ResultsError


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
    postprocess=(),
    whiten=None,
    whiten_dim=None,
    overwrite=False,
    jobs=-1,
    truncate=None,
    dims=None,
    base_encoder=None,
    sweep_point=None,
):
    """Score and save; returns (RunResult, path). Shared by `score` and `check`.

    A results file is replaced only by the same run (same model and scoring settings, see
    `results.run_differences`) or with `overwrite`; another run is refused before encoding, and
    a clash only found after scoring writes to a free sibling name, so finished work is never
    lost."""
    from embeval.eval.encoders.chain import build_encoder
    from embeval.eval.scoring.score import default_run_name, score, select_tasks
    from embeval.results.files import differing_run, free_sibling, run_settings, save_run

    if out and not str(out).endswith(".json"):  # fail before minutes of encoding, not after
        raise ResultsError(f"output path {out} must end in .json")
    # torchrun / accelerate launch: each process encodes a share (the env test keeps a warm,
    # single-process run free of importing torch)
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = sharded_device(device) if launched else device
    encoder = build_encoder(
        checkpoint,
        pooler=pooler,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        max_length=max_length,
        cache_dir=cache_dir,
        no_cache=no_cache,
        progress=os.environ.get("RANK", "0") == "0",
        quantize=quantize,
        sharded=launched,
        postprocess=postprocess,
        base=base_encoder,
        whiten=whiten,
        whiten_dim=whiten_dim,
    )
    if truncate or dims:  # Matryoshka: refuse a size above the model's before encoding
        from embeval.eval.scoring import sweeps

        sweeps.check_dims(encoder, [truncate] if truncate else dims)
    if truncate:
        encoder = sweeps.with_truncation(encoder, truncate)
    names = split_tasks(tasks)
    if dims:
        return run_dims_sweep(
            encoder, dims, names, split, protocol, limit, name, out, data, jobs, overwrite
        )
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
    from embeval.eval.scoring.transfer import TransferConfig

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
    if sweep_point:  # (axis, value, base): the shared sweep layout of embeval.eval.scoring.sweeps
        from embeval.eval.scoring.sweeps import mark_point

        mark_point(run, *sweep_point)
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


def run_dims_sweep(encoder, dims, names, split, protocol, limit, name, out, data, jobs, overwrite):
    """`--dims`: one results file per dimension (`embeval.eval.scoring.sweeps` for the layout);
    returns (runs, paths). Each point's file is checked like a single run's before encoding."""
    from embeval.eval.scoring.score import default_run_name, select_tasks
    from embeval.eval.scoring.sweeps import point_name, score_dims
    from embeval.eval.scoring.transfer import TransferConfig
    from embeval.results.files import differing_run, run_settings, save_run

    base = name or default_run_name(encoder.describe().get("checkpoint"))
    describe = encoder.describe()
    paths = {}
    for d in dims:
        slug = run_slug(point_name(base, "dims", d))
        path = Path(str(out).removesuffix(".json") + f"-dims{d}.json") if out else None
        paths[d] = path or RUNS_DIR / f"{slug}-{split}.json"
        planned = {**describe, "truncate_dim": d, "protocol": protocol, "split": split}
        planned["limit"] = limit
        settings = run_settings(planned, select_tasks(names, split, protocol))
        differences = None if overwrite else differing_run(paths[d], settings)
        if differences:
            raise ResultsError(
                f"{paths[d]} holds a different run ({'; '.join(differences)}); not replacing "
                "it: pass --out FILE to write elsewhere, or --overwrite to replace it"
            )
    runs = score_dims(
        encoder,
        dims,
        name=base,
        tasks=names,
        split=split,
        root=data,
        protocol=protocol,
        limit=limit,
        transfer_config=TransferConfig(n_jobs=jobs),
    )
    if runs is None:
        return None, None
    return runs, [save_run(run, paths[d]) for d, run in zip(dims, runs, strict=True)]


def run_layer_sweep(checkpoint, layers, tasks, split, protocol, limit, name, out, **enc):
    """`score --layers`: one results file per layer, each as `--pooler layers:K` (last_token:K)
    writes it (NAME-layersK, or OUT's stem + -layersK.json; marked `meta.sweep` as a point of
    a "layers" sweep, so the report draws it), from one encode
    (`embeval.eval.scoring.layer_sweep`). Returns [(layer, RunResult, path)]."""
    from embeval.eval.scoring.layer_sweep import LayerSweep
    from embeval.eval.scoring.score import default_run_name
    from embeval.eval.scoring.sweeps import point_name

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise click.UsageError("--layers runs in one process; launch it without torchrun")
    if enc.get("quantize"):
        raise click.UsageError("--layers runs in float32: drop --quantize")
    keep = ("batch_size", "device", "dtype", "pooler")
    sweep = LayerSweep(checkpoint, layers, enc["max_length"], **{k: enc[k] for k in keep})
    base = name or default_run_name(sweep.encoder.describe()["checkpoint"])
    done = []
    for k, view in sweep.views().items():
        path = Path(out).with_name(f"{Path(out).stem}-layers{k}.json") if out else None
        kw = {**enc, "pooler": f"{sweep.name}:{k}"}
        run, saved = run_score(
            checkpoint,
            tasks,
            split,
            protocol,
            limit,
            point_name(base, "layers", k),
            path,
            base_encoder=view,
            sweep_point=("layers", k, base),
            **kw,
        )
        done.append((k, run, saved))
    return done


def sharded_device(device: str | None) -> str | None:
    """Join the process group torchrun / accelerate launch describe; this process's device.
    On CUDA each process takes its own GPU (LOCAL_RANK) unless --device names an index."""
    from embeval.core.distributed import init_from_env

    own = init_from_env()
    if own is None or (device and device != own.type):
        return device
    return str(own) if own.type == "cuda" else device
