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
        whiten=whiten,
        whiten_dim=whiten_dim,
    )
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
