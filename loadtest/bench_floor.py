"""`python -m loadtest.bench_floor`: at this path for the Makefile, like loadtest/compare.py."""

import sys

from loadtest.orchestrate.bench_floor import main

if __name__ == "__main__":
    sys.exit(main())
