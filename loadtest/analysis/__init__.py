"""Reading and judging runs: statistics, ceilings, warnings, reports, charts, results folders."""
