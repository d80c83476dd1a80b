"""`python -m loadtest.compare`: kept at this path for the Makefile, compose and README."""

import sys

from loadtest.orchestrate.compare import main

if __name__ == "__main__":
    sys.exit(main())
