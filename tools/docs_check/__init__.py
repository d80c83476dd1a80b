"""`python -m tools.docs_check` (`make docs-check`): the docs cannot drift from the product.

Over README.md and docs/**/*.md (docs/results/<run>/ excepted: generated, not written):
- markdown.py: every relative link leads to a file of the repository, every #anchor to a heading;
- names.py: every repository path, project module or function, bare `function()` and
  `make <target>` a page names in code exists;
- refs.py: every number quoted as `<number><unit><!-- ref: KEY -->` equals the current
  reference's value (docs/results/README.md names it) at the decimals written;
- blocks.py: every ```` ```console check ```` block runs against a native lab started for the
  check, and its output matches.
Each problem is reported as `path:line: what is wrong`.
"""
