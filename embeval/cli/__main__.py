"""`python -m embeval.cli` (torchrun, accelerate launch)."""

from embeval.cli import main

main()
