"""`make mutants`: apply each curated mutant of `tools/mutant_list.py` and run its tests.

A mutant is a small, named, *wrong* change to the code (a dropped term, a swapped split, a key
left out); the fast tests named beside it must fail on it. A mutant whose tests still pass
"survived": the suite would not notice that bug. This is the check behind issue 14.

Why a curated list rather than mutmut or cosmic-ray: those generate thousands of syntactic
mutants (`+` -> `-`, `<` -> `<=`) and run the whole suite on each, hours on a laptop CPU, and
most survivors are equivalent or uninteresting. Here each mutant is a bug someone could write,
its test selection is small, and the whole list runs in minutes.

How it runs: the project's `embeval/`, `tests/`, `data/` and `pyproject.toml` are copied once to
a temporary folder; the real working tree is never modified. Every mutant's `old` snippet must
occur exactly once in its file (checked for all mutants before anything runs), so a list that
no longer matches the code is an error naming the stale mutants, not a silent pass. First the
union of all selected tests runs on the unmutated copy (a kill only means something if the tests
pass without the mutant; a mutant whose tests fail or are missing unmutated is an error, not a
kill). Then, for each mutant, the file is patched, `pytest -x` runs the
mutant's tests with the copy first on PYTHONPATH, and the file is restored. pytest exit status
1 (a test failed) or 2 (collection failed) is a kill; 0 is a survivor; 5 (no test ran) and the
rest are errors in the list. Exit status: 0 if every mutant was killed, 1 otherwise.

    python tools/mutants.py                  # all
    python tools/mutants.py --only NAME ...  # some (comma-separated or repeated)
    python tools/mutants.py --list           # names, files and tests
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutant_list import MUTANTS, Mutant  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("embeval", "tests", "data", "pyproject.toml")
TIMEOUT_S = 600  # per mutant; a mutant that hangs the tests counts as killed (reported so)


class ListError(Exception):
    """The mutant list does not match the code or the tests."""


def copy_project(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, dest / name)


def check_list(mutants: list[Mutant], root: Path) -> None:
    """Every name unique, every `old` snippet present exactly once, every test file present."""
    problems, seen = [], set()
    for m in mutants:
        if m.name in seen:
            problems.append(f"{m.name}: duplicate name")
        seen.add(m.name)
        path = root / m.file
        if not path.is_file():
            problems.append(f"{m.name}: {m.file} does not exist")
            continue
        count = path.read_text(encoding="utf-8").count(m.old)
        if count != 1:
            problems.append(
                f"{m.name}: its `old` snippet occurs {count} times in {m.file} (expected once); "
                "update the mutant to the current code"
            )
        if m.old == m.new:
            problems.append(f"{m.name}: `new` is the same as `old`")
        if not m.tests:
            problems.append(f"{m.name}: names no tests")
        for t in m.tests:
            if not (root / t.split("::")[0]).is_file():
                problems.append(f"{m.name}: test file {t.split('::')[0]} does not exist")
    if problems:
        raise ListError("stale or broken mutant list:\n  " + "\n  ".join(problems))


def pytest_cmd(tests, marks: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header"]
    return cmd + (["-m", marks] if marks else []) + list(tests)


def run_tests(root: Path, tests, marks: str | None, env: dict) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            pytest_cmd(tests, marks),
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired:
        rc, out = -1, f"timed out after {TIMEOUT_S} s"
    return rc, time.perf_counter() - t0, out


def verdict(rc: int) -> str:
    return {0: "SURVIVED", 1: "killed", 2: "killed", -1: "killed"}.get(rc, "ERROR")


def test_env(root: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a restored file is never served from a stale .pyc
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # conftest looks for ../shared/data beside the project; the copy has no such neighbour.
    data = env.get("EMBEVAL_TEST_DATA") or ROOT.parent / "shared" / "data"
    env["EMBEVAL_TEST_DATA"] = str(Path(data).resolve())  # the tests run in another folder
    return env


def baseline(root: Path, mutants: list[Mutant], env: dict) -> dict[str, str]:
    """Run the selected tests on unmutated code: {mutant name: why it cannot be judged}.

    One pytest run per marker expression over the union of the selections; only when that
    fails is each selection run alone, to name the mutants whose tests are broken (or missing).
    """
    groups: dict[str | None, list[str]] = {}
    for m in mutants:
        groups.setdefault(m.marks, [])
        groups[m.marks] += [t for t in m.tests if t not in groups[m.marks]]
    broken: dict[str, str] = {}
    for marks, tests in groups.items():
        rc, dt, out = run_tests(root, tests, marks, env)
        where = f"-m {marks!r} " if marks else ""
        print(f"baseline: {where}{len(tests)} test selections, rc={rc}, {dt:.1f}s", flush=True)
        if rc == 0:
            continue
        for m in (m for m in mutants if m.marks == marks):
            rc, _, out = run_tests(root, m.tests, marks, env)
            if rc != 0:
                what = "no test ran" if rc == 5 else f"pytest exit status {rc}"
                broken[m.name] = f"its tests fail without the mutant ({what}):\n{out[-1500:]}"
    return broken


def select(names: list[str]) -> list[Mutant]:
    if not names:
        return list(MUTANTS)
    wanted = [n for arg in names for n in arg.split(",") if n]
    known = {m.name: m for m in MUTANTS}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ListError(f"unknown mutant(s) {', '.join(unknown)}; --list shows the names")
    return [known[n] for n in wanted]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", action="append", default=[], metavar="NAME", help="run only these")
    ap.add_argument("--list", action="store_true", help="print the mutants and exit")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated test run")
    args = ap.parse_args(argv)
    try:
        mutants = select(args.only)
        check_list(mutants, ROOT)
    except ListError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for m in mutants:
            print(f"{m.name:42} {m.file:30} {' '.join(m.tests)}")
        return 0
    t_start = time.perf_counter()
    results: list[tuple[Mutant, str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="embeval-mutants-") as tmp:
        root = Path(tmp)
        copy_project(root)
        env = test_env(root)
        broken = {} if args.no_baseline else baseline(root, mutants, env)
        for i, m in enumerate(mutants, 1):
            if m.name in broken:
                results.append((m, "ERROR", 0.0, broken[m.name]))
                print(f"[{i:2}/{len(mutants)}] {'ERROR':8} {0:6.1f}s  {m.name}", flush=True)
                continue
            path = root / m.file
            original = path.read_text(encoding="utf-8")
            try:
                path.write_text(original.replace(m.old, m.new, 1), encoding="utf-8")
                rc, dt, out = run_tests(root, m.tests, m.marks, env)
            finally:
                path.write_text(original, encoding="utf-8")
            v = verdict(rc)
            results.append((m, v, dt, out))
            print(f"[{i:2}/{len(mutants)}] {v:8} {dt:6.1f}s  {m.name}", flush=True)
    total = time.perf_counter() - t_start
    survived = [m.name for m, v, _, _ in results if v == "SURVIVED"]
    errors = [(m.name, out) for m, v, _, out in results if v == "ERROR"]
    killed = sum(v == "killed" for _, v, _, _ in results)
    print(
        f"\n{len(results)} mutants: {killed} killed, {len(survived)} survived, "
        f"{len(errors)} errors, in {total:.0f}s"
    )
    for name in survived:
        m = next(m for m in MUTANTS if m.name == name)
        print(f"SURVIVED {name}: {m.why} (tests: {' '.join(m.tests)})")
    for name, out in errors:
        print(f"ERROR {name}: not judged: {out[-1500:]}")
    return 0 if not survived and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
