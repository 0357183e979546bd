"""`embeval reproduce`: experiment cards (TOML) -> trained and scored cells -> statistics.

- `card`: read and check a card before anything runs.
- `cells`: run one (model, method, seed) cell, resumably, as `embeval train` + `embeval score`
  subprocesses; `--jobs` and Ray run several.
- `summary`: seed means, hierarchical-bootstrap intervals, paired tests against the baseline,
  ties with the best (Holm), training geometry per cell.
"""
