"""`python -m labkit.cli`, the same as the `labkit` command."""

from . import main

main()
