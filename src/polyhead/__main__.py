"""``python -m polyhead``: the command line (also what torchrun runs: ``torchrun ... -m polyhead fit``)."""

from .cli import main

main()
