"""Results as data: the contract between scoring, reports and notebooks.

- `load_run` / `save_run` / `RunResult`: a run's files (`embeval.results.files`);
- `records`: typed views of a file's objects (STS and transfer scores, diagnostics, metadata);
- `to_frame(paths)`: every figure of one or more runs as one long pandas DataFrame, with the
  report's bootstrap intervals (`embeval.results.frame`; pandas is imported on first use).
"""

from embeval.results import records
from embeval.results.files import ResultsError, RunResult, load_run, save_run

__all__ = ["ResultsError", "RunResult", "load_run", "records", "save_run", "to_frame"]


def __getattr__(name: str):
    if name == "to_frame":  # pandas and scipy load only when a frame is asked for
        from embeval.results.frame import to_frame

        return to_frame
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
