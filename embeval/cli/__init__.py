"""embeval command line: one small module per subcommand. The only package that prints.

`embeval --help` ends with QUICK_START (embeval.cli.app).
"""

from embeval.cli import (  # noqa: F401  (registers them)
    audit,
    check,
    data,
    export,
    report,
    reproduce,
    score,
    train,
)
from embeval.cli.app import main

__all__ = ["main"]
