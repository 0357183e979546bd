"""How numbers are printed in reports, `embeval check` verdicts and exports.

Kept apart from `embeval.eval.report.build`, which imports the plotting stack: `embeval check`
prints p-values too and must start without matplotlib.
"""

from __future__ import annotations

import math

MISSING = "—"


def format_p(p: float | None) -> str:
    """A p-value to three decimals, '<0.001' below that, '—' when there is none."""
    if p is None or not math.isfinite(p):
        return MISSING
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def num(v: float | None, digits: int = 2) -> str:
    """A figure to `digits` decimals; '—' for a missing one (never 0)."""
    return MISSING if v is None else f"{v:.{digits}f}"


def signed(v: float | None, digits: int = 2) -> str:
    """A difference with its sign; '' when there is none."""
    return "" if v is None else f"{v:+.{digits}f}"
