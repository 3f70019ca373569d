"""`python -m daq` is the same as the `remdaq` command."""

from .cli import main

main()
