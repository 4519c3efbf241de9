"""`python -m experiments.sweep ...`: see `experiments.sweep.cli`."""

import sys

from experiments.sweep.cli import main

if __name__ == "__main__":
    sys.exit(main())
