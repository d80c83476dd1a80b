"""Repository tooling that is neither the lab nor its load tests: the docs check
(`make docs-check`) and the reference results the docs quote (`make reference`)."""
