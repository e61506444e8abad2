"""`python -m harness.cli_main` runs the CLI (used by tests in a subprocess)."""
from harness.cli import main

main()
