"""`python -m loadtest.drill`: kept at this path for the Makefile, like loadtest/compare.py."""

import sys

from loadtest.orchestrate.drill import main

if __name__ == "__main__":
    sys.exit(main())
