"""Every training method with seeds: `embeval reproduce cards/methods-minilm-cpu.toml` (the
packaged all-MiniLM-L6-v2, 3 seeds, 30 steps, the seven STS test sets), timed. 42 cells (14
methods x 3 seeds): about 1 h 45 min on 2 CPU cores with --jobs 2, estimated from the
focal-vs-simcse card's cells (5 minutes each, two at a time), so it runs from here, not in CI.
The run is resumable: rerun the same command after a stop and only the missing cells train.

    nice python benchmarks/bench_methods_card.py [--out runs/methods-minilm-cpu] [--jobs 2]

Prints the wall time, the cells done before and after, and the summary table (summary.md).
The card's data paths point at ../shared/data beside the project; --data DIR points them
elsewhere (a copy of the card is written into OUT).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from common import data_root

CARD = Path(__file__).resolve().parents[1] / "cards" / "methods-minilm-cpu.toml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/methods-minilm-cpu")
    ap.add_argument("--jobs", type=int, default=1, help="cells side by side (cores shared)")
    ap.add_argument("--data", default=str(data_root()), help="the data root the card reads")
    ap.add_argument("--dry-run", action="store_true", help="list the cells and what is done")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    card = out / CARD.name  # the shipped card, its data paths pointed at --data
    card.write_text(CARD.read_text().replace("../../shared/data", str(Path(args.data).resolve())))
    cmd = [sys.executable, "-m", "embeval.cli", "reproduce", str(card), "--out", str(out)]
    cmd += ["--jobs", str(args.jobs)] + (["--dry-run"] if args.dry_run else [])
    done = len(list(out.glob("cells/*/results.json")))
    t0 = time.perf_counter()
    rc = subprocess.run(cmd).returncode
    wall = time.perf_counter() - t0
    now = len(list(out.glob("cells/*/results.json")))
    print(f"cells with results: {done} before, {now} after; wall {wall / 60:.1f} min (rc {rc})")
    summary = out / "summary.md"
    if summary.exists() and not args.dry_run:
        print(summary.read_text())
    sys.exit(rc)


if __name__ == "__main__":
    main()
