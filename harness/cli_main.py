"""`python -m harness.cli_main` runs the CLI (used by tests in a subprocess)."""
from harness.cli import main

if __name__ == "__main__":  # a spawned worker imports this module again: it must not run
    main()
