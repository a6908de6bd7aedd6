"""`python -m vae_core`: the command line (see vae_core/cli.py)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
