"""The registry every kind of unit uses: names, aliases, "did you mean", user code as
package.module:name, and installed packages' entry points (a dist-info folder made here)."""

from __future__ import annotations

import sys

import pytest

from embeval.registry import Registry, UnknownUnit, first_line, load_object


def make() -> Registry:
    reg = Registry("widget", check=lambda label, unit: _callable(label, unit))

    @reg.register("round-trip", aliases=("rt",))
    def round_trip(x):
        """Return x unchanged. More text that help does not show."""
        return x

    return reg


def _callable(label, unit):
    if not callable(unit):
        raise UnknownUnit(f"widget {label}: expected a function")


def test_names_aliases_and_case():
    reg = make()
    assert reg.names() == ["round-trip"]
    assert reg.get("RT")(3) == 3 and reg.get(" round-trip ")(4) == 4
    assert reg.canonical("Rt") == "round-trip" and "RT" in reg
    assert reg.help() == "round-trip: Return x unchanged"


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownUnit, match=r"unknown widget 'round-trp'; did you mean 'round-trip'"):
        make().get("round-trp")
    with pytest.raises(UnknownUnit, match=r"expected one of round-trip, or your own"):
        make().get("zzz")


def test_a_name_cannot_be_registered_twice():
    reg = make()
    with pytest.raises(ValueError, match="'rt' is already registered"):
        reg.add("other", len, aliases=("rt",))
    reg.remove("round-trip")
    assert "rt" not in reg and reg.names() == []
    with pytest.raises(UnknownUnit, match=r"unknown widget 'x'; expected your own as package"):
        reg.get("x")


def test_user_code_as_module_path(tmp_path, monkeypatch):
    (tmp_path / "my_units.py").write_text("def double(x):\n    return 2 * x\n\nNOT_CALLABLE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = make()
    assert reg.get("my_units:double")(5) == 10
    with pytest.raises(UnknownUnit, match="widget my_units:NOT_CALLABLE: expected a function"):
        reg.get("my_units:NOT_CALLABLE")
    with pytest.raises(UnknownUnit, match="module 'my_units' has no 'triple'"):
        reg.get("my_units:triple")
    with pytest.raises(UnknownUnit, match="cannot import module 'no_such_mod'"):
        reg.get("no_such_mod:f")
    with pytest.raises(UnknownUnit, match="expected package.module:name"):
        load_object("my_units:", "widget")


def test_entry_points_of_installed_packages(tmp_path, monkeypatch):
    """An installed package declares `[embeval.widgets] halve = plug_mod:halve`; importlib finds
    its dist-info on sys.path as it would in site-packages."""
    (tmp_path / "plug_mod.py").write_text("def halve(x):\n    return x / 2\n")
    info = tmp_path / "plug_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plug-pkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[embeval.widgets]\nhalve = plug_mod:halve\nbroken = plug_mod:missing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = make()
    assert reg.get("halve")(8) == 4
    with pytest.raises(UnknownUnit, match=r"widget 'broken' \(entry point plug_mod:missing"):
        reg.get("broken")
    assert "plug_mod" in sys.modules


def test_first_line():
    def f():
        """Focal-InfoNCE (Hou & Li 2023). The rest."""

    def wrapped():
        """A first sentence that wraps
        onto a second, indented line. The rest."""

    assert first_line(f) == "Focal-InfoNCE (Hou & Li 2023)"
    assert first_line(wrapped) == "A first sentence that wraps onto a second, indented line"
    assert first_line(lambda: 0) == ""
