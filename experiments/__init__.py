"""Command-line programs, run as `python -m experiments.NAME`."""
