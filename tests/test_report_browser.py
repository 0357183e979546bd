"""The report in a real browser: headless Chromium (Debian package `chromium`).

Two runs of the browser on a report built from tiny-data runs, the real schema-1 fixture run and a
training log:
1. a screenshot of the page itself, checked to be a non-blank PNG;
2. `--dump-dom` of a test-only copy of the page with a small script appended that, after the load
   event, records whether every table is laid out and every image decoded (complete, naturalWidth
   > 0, drawn with a non-zero size). The report itself has no scripts; the copy is the harness.

A missing Chromium is a test failure (with the install line), never a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from report_fixtures import BowEncoder, scored_run

from embeval.eval.report import build as report

HISTORIC = Path(__file__).parent / "historic_results" / "schema1-minilm-stsb-dev-limit200.json"
INSTALL = "apt-get update && apt-get install -y chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
HARNESS = """
<script>
window.addEventListener("load", () => {
  const imgs = [...document.images].map(i => ({
    alt: i.alt, complete: i.complete, naturalWidth: i.naturalWidth,
    width: i.getBoundingClientRect().width, height: i.getBoundingClientRect().height}));
  const tables = [...document.querySelectorAll("table")].map(t => ({
    id: t.id, rows: t.rows.length, width: t.getBoundingClientRect().width,
    height: t.getBoundingClientRect().height}));
  const pre = document.createElement("pre");
  pre.id = "harness-result";
  pre.textContent = JSON.stringify({imgs, tables});
  document.body.appendChild(pre);
});
</script>
"""


def chromium() -> str:
    for name in (os.environ.get("EMBEVAL_CHROMIUM"), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    pytest.fail(f"headless Chromium not found (needed for the report's browser test): {INSTALL}")


def run_browser(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [chromium(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def laid_out(page: Path, tmp_path: Path) -> tuple[dict, subprocess.CompletedProcess]:
    """What Chromium laid out of `page`: its images and tables (the harness's record), and the
    DOM dump (the browser run)."""
    harness = page.with_name("harness.html")
    harness.write_text(page.read_text().replace("</body>", HARNESS + "</body>"))
    res = run_browser(["--virtual-time-budget=10000", "--dump-dom", harness.as_uri()], tmp_path)
    m = re.search(r'<pre id="harness-result">(.*?)</pre>', res.stdout, re.S)
    assert m, f"harness result missing from the DOM dump: {res.stderr[-2000:]}"
    got = json.loads(m.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&amp;", "&"))
    return got, res


def assert_drawn(got: dict) -> None:
    """Every image decoded and drawn, every table laid out."""
    for img in got["imgs"]:
        assert img["complete"] and img["naturalWidth"] > 0, f"image did not decode: {img}"
        assert img["width"] > 100 and img["height"] > 100, f"image not drawn: {img}"
    for t in got["tables"]:
        assert t["width"] > 0 and t["height"] > 0, f"table not laid out: {t}"


@pytest.fixture
def page(tmp_path, tiny_data, fake_encoder) -> Path:
    runs = [
        scored_run(BowEncoder(), tiny_data, tmp_path / "bow.json", "bow <b>model</b>"),
        scored_run(fake_encoder, tiny_data, tmp_path / "fake.json", "fake"),
        HISTORIC,
    ]
    log = tmp_path / "train_log.jsonl"
    log.write_text(
        "\n".join(
            json.dumps({"step": s, "alignment": a, "uniformity": u, "stsb_dev": d})
            for s, a, u, d in [(0, 0.1, -1.2, 55.0), (125, 0.2, -2.4, 78.0), (250, 0.24, -2.9, 81)]
        )
    )
    html = report.render_html(report.build(runs, train_logs=[log], n_boot=200))
    out = tmp_path / "report.html"
    out.write_text(html, encoding="utf-8")
    return out


def test_page_renders_in_chromium(page, tmp_path):
    shot = tmp_path / "shot.png"
    res = run_browser([f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()], tmp_path)
    assert shot.is_file(), f"no screenshot: {res.stderr[-2000:]}"
    pixels = mpimg.imread(shot)  # (H, W, 3|4) floats in [0, 1]
    assert pixels.shape[:2] == (2400, 1280)
    ink = (pixels[..., :3] < 0.5).any(axis=2).mean()
    assert 0.01 < ink < 0.5, f"screenshot looks blank or broken (dark-pixel share {ink:.3f})"
    if os.environ.get("EMBEVAL_KEEP_SCREENSHOT"):  # to look at it: EMBEVAL_KEEP_SCREENSHOT=path
        shutil.copy(shot, os.environ["EMBEVAL_KEEP_SCREENSHOT"])

    got, res = laid_out(page, tmp_path)

    # Figures: alignment-uniformity + one similarity distribution per run (3 runs).
    assert len(got["imgs"]) == 4
    assert_drawn(got)
    tables = {t["id"]: t for t in got["tables"] if t["id"]}
    # Two groups: the full tiny-data runs, and the partial (--limit 200) historic run.
    assert set(tables) == {"main-table-1", "main-table-2"}
    assert tables["main-table-1"]["rows"] == 3 and tables["main-table-2"]["rows"] == 2
    assert "bow &lt;b&gt;model&lt;/b&gt;" in res.stdout  # escaped text, not markup
    assert np.isfinite(ink)


def test_missing_chromium_is_a_failure_not_a_skip(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("EMBEVAL_CHROMIUM", raising=False)
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        chromium()
