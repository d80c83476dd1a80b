"""`python -m tools.reference` (`make reference`): the reference results the docs quote.

- `run` (tools/reference/run.py): the whole matrix into docs/results/<date>-<machine>/;
- `keys PATH` (tools/reference/keys.py): the flat keys of a reference folder, a compare or
  capacity results folder, or the newest results folder under PATH (e.g. `results`), one
  `key value` line each: what a checkable docs block greps to state a ratio.
"""
