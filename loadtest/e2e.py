"""`python -m loadtest.e2e`: kept at this path for the Makefile, compose and README."""

import sys

from loadtest.orchestrate.e2e import main

if __name__ == "__main__":
    sys.exit(main())
