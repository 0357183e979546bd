"""Where the benchmark data is looked for when --data is not given: one rule, in data_root.

$EMBEVAL_DATA, else the project's data/ when it holds the data, else ../shared/data beside the
project (where CI and `make demo` find the reference copy), else data/ (where downloads go).
"""

from __future__ import annotations

import pytest

from embeval.eval.data import download
from embeval.eval.data import paths as datasets
from embeval.eval.data.paths import DataError, data_root
from embeval.eval.data.sts import load_sts


@pytest.fixture
def places(tmp_path, monkeypatch):
    """A project data/ holding only its tracked files, and an empty ../shared beside it."""
    project, shared = tmp_path / "embeval" / "data", tmp_path / "shared" / "data"
    project.mkdir(parents=True)
    (project / "MANIFEST.sha256").write_text("")
    (project / "README.md").write_text("")
    monkeypatch.setattr(datasets, "PROJECT_DATA", project)
    monkeypatch.setattr(datasets, "SHARED_DATA", shared)
    monkeypatch.delenv("EMBEVAL_DATA", raising=False)
    return project, shared


def test_shared_data_is_beside_the_project():
    assert datasets.SHARED_DATA == datasets.PROJECT_DATA.parent.parent / "shared" / "data"


def test_shared_copy_when_the_project_data_is_empty(places):
    project, shared = places
    (shared / "sts").mkdir(parents=True)
    assert data_root() == shared


def test_project_data_when_it_holds_the_data(places):
    project, shared = places
    (shared / "sts").mkdir(parents=True)
    (project / "transfer").mkdir()
    assert data_root() == project


def test_env_and_explicit_win(places, tmp_path, monkeypatch):
    project, shared = places
    (shared / "sts").mkdir(parents=True)
    monkeypatch.setenv("EMBEVAL_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "cli") == tmp_path / "cli"


def test_nothing_anywhere_is_data_and_the_error_names_every_place(places):
    project, shared = places
    assert data_root() == project  # where `embeval data download` puts it
    with pytest.raises(DataError) as exc:
        load_sts("STSBenchmark", "dev")
    msg = str(exc.value)
    for place in (project / "sts", project, shared, "$EMBEVAL_DATA", "--data"):
        assert str(place) in msg, place


def test_error_names_embeval_data_when_it_chose_the_root(places, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEVAL_DATA", str(tmp_path / "env"))
    with pytest.raises(DataError, match=r"env is \$EMBEVAL_DATA"):
        load_sts("STSBenchmark", "dev")


def test_downloads_go_to_project_data_not_the_shared_copy(places, monkeypatch):
    project, shared = places
    (shared / "sts").mkdir(parents=True)
    monkeypatch.setattr(download, "sources", lambda: [])  # nothing to fetch: only the root
    seen = []
    monkeypatch.setattr(download, "_Writer", lambda root, groups: seen.append(root))
    download.download(only=["transfer"], manifest=None)
    assert seen == [project]
