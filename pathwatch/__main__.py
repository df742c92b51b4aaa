"""`python -m pathwatch` runs the CLI."""

from pathwatch.cli import main

main()
