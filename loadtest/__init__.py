"""The lab's load side, in three layers (each a package; lower layers never import higher ones).

- generator/    what Locust loads: the scenario table, the user classes made from it (closed
                loop, or an open loop's schedule), load shapes, and which URL each variant
                answers on. Imports no FastAPI.
- analysis/     reading and judging runs: Locust's numbers, Little's-law ceilings, warnings,
                report.md, charts, the results folder and the machine it ran on.
- orchestrate/  running Locust: one measured run, the compare and capacity commands, e2e.

The files at this level are what other tools name by path or module: locustfile.py and
shapes.py (for `locust -f`), locust.conf, and `python -m loadtest.compare|capacity|e2e`.
"""
