"""Commands that draw nothing start without the plotting stack (and the CLI without torch)."""

import json
import subprocess
import sys
from pathlib import Path

from report_fixtures import synthetic_run

ROOT = Path(__file__).resolve().parents[1]


def loaded_after(code: str) -> dict:
    """Run `code` in a fresh interpreter; which heavy modules it left in sys.modules."""
    probe = (
        "import sys, json\n" + code + "\nprint(json.dumps({m: m in sys.modules for m in "
        "('matplotlib', 'torch', 'transformers', 'pandas')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cli_import_is_light():
    assert loaded_after("import embeval.cli") == {
        "matplotlib": False,
        "torch": False,
        "transformers": False,
        "pandas": False,
    }


def test_check_of_results_files_does_not_import_matplotlib(tmp_path):
    """`embeval check RESULT.json --baseline BASE.json` computes a paired bootstrap and prints
    a verdict with a p-value: matplotlib (0.3 s, a cache folder) is not needed for that."""
    base = synthetic_run(tmp_path / "base.json", "base", noise=0.3)
    new = synthetic_run(tmp_path / "new.json", "new", noise=0.3, seed=1)
    code = (
        "from embeval.cli import main\n"
        f"args = [{str(new)!r}, '--baseline', {str(base)!r}, '--bootstrap', '50']\n"
        "try:\n"
        "    main(['check', *args], standalone_mode=False)\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
    )
    assert loaded_after(code)["matplotlib"] is False
    # the probe itself can see matplotlib: the report does import it
    report = f"from embeval.eval.report import build\nbuild.build([{str(base)!r}], n_boot=0)"
    assert loaded_after(report)["matplotlib"] is True


def test_results_package_leaves_pandas_until_a_frame_is_asked_for():
    assert loaded_after("import embeval.results")["pandas"] is False
    assert loaded_after("from embeval.results import to_frame")["pandas"] is True


def test_markdown_and_csv_reports_do_not_import_matplotlib(tmp_path):
    """`embeval report --format md|csv` draws no figure; the HTML report of the same runs does."""
    base = synthetic_run(tmp_path / "base.json", "base", noise=0.3)
    new = synthetic_run(tmp_path / "new.json", "new", noise=0.3, seed=1)
    for fmt in ("md", "csv", "html"):
        out = tmp_path / f"r.{fmt}"
        code = (
            "from embeval.cli import main\n"
            f"args = [{str(base)!r}, {str(new)!r}, '--format', {fmt!r}, '--out', {str(out)!r}]\n"
            "main(['report', *args, '--bootstrap', '50'], standalone_mode=False)\n"
        )
        assert loaded_after(code)["matplotlib"] is (fmt == "html"), fmt
        assert "new" in out.read_text()
