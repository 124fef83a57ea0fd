"""`python -m runner` is `ye-run`."""

from runner.cli.main import main

main()
