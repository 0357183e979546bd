"""embeval check: a regression gate for CI on one task (default STS-B dev).

`check(result, baseline, ...)` returns a `Verdict`; the CLI maps it to exit codes:
0 = not below the baseline by more than the tolerance, 1 = regression, 2 = unusable input
(raised as `CheckError`: missing task, other split/protocol, partial vs full, different pairs,
int8 vs float32 unless `allow_quantized`, another post-processing chain (whitening, ...) unless
`allow_postprocess`: a gate against a plain float32 baseline would otherwise pass or fail on the
quantization's or the whitening's effect rather than on the change under test).
The paired bootstrap (`embeval.eval.metrics.stats`) tells whether the difference is beyond
noise; the gate itself is the tolerance, so a CI does not flap on a significant but tiny change.
"""

from __future__ import annotations

from dataclasses import dataclass

from embeval.eval.metrics import stats
from embeval.eval.report.formatting import format_p
from embeval.eval.report.tables import same_pairs
from embeval.results.files import ResultsError, RunResult, postprocess_steps

ALPHA = 0.05
DEFAULT_TOLERANCE = 1.0  # Spearman points (x100)


class CheckError(ResultsError):
    """The two runs cannot be compared on the task; the message says why (exit code 2)."""


@dataclass
class Verdict:
    ok: bool
    task: str
    split: str
    value: float
    baseline_value: float
    tolerance: float
    p: float | None  # paired bootstrap p-value; None when no per-pair files
    name: str
    baseline_name: str
    no_pairs: str = "no per-pair files"  # why p is None, for the verdict line

    @property
    def diff(self) -> float:
        return self.value - self.baseline_value

    def line(self) -> str:
        """The one-line verdict CI logs show."""
        head = "OK" if self.ok else "REGRESSION"
        rel = "within" if self.ok else "beyond"
        if self.p is None:
            sig = f"paired bootstrap: unavailable ({self.no_pairs})"
        else:
            called = "significant" if self.p < ALPHA else "not significant"
            sig = f"paired bootstrap p={format_p(self.p)} ({called} at {ALPHA})"
        return (
            f"{head}: {self.task} {self.split} Spearman {self.value:.2f} ({self.name}) vs "
            f"baseline {self.baseline_value:.2f} ({self.baseline_name}): {self.diff:+.2f} points, "
            f"{rel} tolerance {self.tolerance:.2f}; {sig}"
        )


def _entry(run: RunResult, task: str, split: str, role: str) -> dict:
    where = f"{role} {run.path or run.name}"
    entry = run.tasks.get(task)
    if not isinstance(entry, dict) or "spearman" not in entry:
        have = ", ".join(run.tasks) or "none"
        raise CheckError(f"{where} has no {task} Spearman (tasks: {have})")
    got = entry.get("split", (run.meta or {}).get("split"))
    if got != split:
        raise CheckError(f"{where} scored {task} on the {got} split, not {split}")
    return entry


def check(
    result: RunResult,
    baseline: RunResult,
    task: str = "STSBenchmark",
    split: str = "dev",
    tolerance: float = DEFAULT_TOLERANCE,
    n_boot: int = stats.N_BOOT,
    seed: int = stats.SEED,
    allow_quantized: bool = False,
    allow_postprocess: bool = False,
) -> Verdict:
    """Compare `result` with `baseline` on `task`; raises CheckError when they are incomparable."""
    if tolerance < 0:
        raise CheckError(f"--tolerance must be >= 0 points, got {tolerance}")
    a = _entry(result, task, split, "result")
    b = _entry(baseline, task, split, "baseline")
    ma, mb = result.meta or {}, baseline.meta or {}
    if ma.get("protocol", "simcse") != mb.get("protocol", "simcse"):
        raise CheckError(
            f"result uses protocol {ma.get('protocol')!r}, baseline {mb.get('protocol')!r}: "
            "not comparable"
        )
    qa, qb = ma.get("quantize") or "float32", mb.get("quantize") or "float32"
    if qa != qb and not allow_quantized:
        raise CheckError(
            f"result is {qa} ({result.path or result.name}) but baseline is {qb} "
            f"({baseline.path or baseline.name}): quantization changes the figures; compare "
            "runs of the same kind, or pass --allow-quantized to measure its cost"
        )
    # Normalize leaves cosines, hence Spearman, as they are: only the other steps count.
    ca, cb = ([s for s in postprocess_steps(m) if s != "normalize"] for m in (ma, mb))
    if ca != cb and not allow_postprocess:
        raise CheckError(
            f"result is post-processed by {ca or 'nothing'} ({result.path or result.name}) but "
            f"baseline by {cb or 'nothing'} ({baseline.path or baseline.name}): post-processing "
            "changes the figures; score both alike, or pass --allow-postprocess to measure it"
        )
    pa, pb = bool(ma.get("partial")), bool(mb.get("partial"))
    if pa != pb or (pa and ma.get("limit") != mb.get("limit")):
        desc = {True: "partial (--limit {})", False: "full"}
        raise CheckError(
            f"result is {desc[pa].format(ma.get('limit'))} but baseline is "
            f"{desc[pb].format(mb.get('limit'))}: a partial run is not comparable with a full one"
        )
    p, no_pairs = None, "no per-pair files"
    try:
        pairs_a, pairs_b = result.load_pairs().get(task), baseline.load_pairs().get(task)
    except ResultsError as exc:  # missing, unreadable or another run's: say which, gate anyway
        pairs_a = pairs_b = None
        no_pairs = str(exc)
    if pairs_a is not None and pairs_b is not None:
        if not same_pairs(pairs_a, pairs_b):
            raise CheckError(
                f"{task} {split}: the result and the baseline were scored on different pairs "
                "(other data version?); re-create the baseline on this data"
            )
        sims = [pairs_a["sim"], pairs_b["sim"]]  # the task's own stream, as `embeval report`
        rho = stats.bootstrap_spearman(sims, pairs_a["gold"], n_boot, stats.task_seed(seed, task))
        p = stats.paired_p_value(rho[0], rho[1], a["spearman"] - b["spearman"])
    ok = a["spearman"] >= b["spearman"] - tolerance
    return Verdict(
        ok,
        task,
        split,
        a["spearman"],
        b["spearman"],
        tolerance,
        p,
        result.name,
        baseline.name,
        no_pairs,
    )
