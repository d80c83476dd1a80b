"""`make docs-check` fails when the docs stop matching the product: a broken link, a renamed make
target or file, a quoted number that is not the reference's, a command block whose output
changed. Each test runs the real checker (`python -m tools.docs_check --root COPY`) on a copy
of the repository's docs with one thing broken, next to the unbroken copy that passes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.docs_check.blocks import match_output, parse_body, parse_info
from tools.docs_check.refs import QUOTE, matches
from tools.reference.keys import flatten_capacity, flatten_compare
from tools.reference.run import machine_slug

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("README.md", "docs", "Makefile")  # what the tests edit; the rest is linked


def check(root: Path, *args: str, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.docs_check", "--root", str(root), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The repository's README, docs and Makefile copied, everything else linked."""
    copy = tmp_path / "repo"
    copy.mkdir()
    for entry in ROOT.iterdir():
        if entry.name in (".git", ".venv", "results", ".lab") or entry.name.endswith("_cache"):
            continue
        if entry.name in COPIED:
            if entry.is_dir():
                shutil.copytree(entry, copy / entry.name)
            else:
                shutil.copy(entry, copy / entry.name)
        else:
            (copy / entry.name).symlink_to(entry)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is no longer in {path.name}: pick another line to break"
    path.write_text(text.replace(old, new, 1))


def name_current(repo: Path, folder: str) -> None:
    """Point docs/results/README.md's `Current reference:` line at `folder` (or "none yet")."""
    index = repo / "docs" / "results" / "README.md"
    text, n = re.subn(
        r"(?m)^Current reference: .*$", f"Current reference: {folder}", index.read_text()
    )
    assert n == 1, "docs/results/README.md has no `Current reference:` line"
    index.write_text(text)


def unquote(repo: Path) -> None:
    """The copied pages quote the real reference: unquote them, so that only a test's own page
    meets the reference the test made."""
    for page in [repo / "README.md", *(repo / "docs").rglob("*.md")]:
        page.write_text(re.sub(r"<!--\s*ref:[^>]*-->", "", page.read_text()))


def line_with(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def at(repo: Path, page: Path, text: str) -> str:
    """`page:line:` as docs-check names the line of `page` (in `repo`) that holds `text`."""
    return f"{page.relative_to(repo).as_posix()}:{line_with(page, text)}:"


def test_the_repository_docs_pass() -> None:
    done = check(ROOT, "--no-blocks")
    assert done.returncode == 0, done.stderr


def test_the_unbroken_copy_passes(repo: Path) -> None:
    done = check(repo, "--no-blocks")
    assert done.returncode == 0, done.stderr


def test_a_broken_anchor_or_link_fails(repo: Path) -> None:
    page = repo / "docs" / "architecture.md"
    edit(page, "(settings.md#how-configuration-flows)", "(settings.md#how-configuration-flow)")
    edit(repo / "README.md", "(docs/loadtest.md)", "(docs/load-tests.md)")
    done = check(repo, "--no-blocks")
    assert done.returncode == 1
    assert (
        f"{at(repo, page, 'settings.md#how-configuration-flow)')} link "
        "settings.md#how-configuration-flow: no heading #how-configuration-flow in docs/settings.md"
    ) in done.stderr
    readme = repo / "README.md"
    assert (
        f"{at(repo, readme, '(docs/load-tests.md)')} link docs/load-tests.md: no such file"
    ) in done.stderr


def test_a_link_to_lines_that_moved_away_from_its_name_fails(repo: Path) -> None:
    page = repo / "docs" / "labs" / "09-processes.md"
    edit(page, "(../../services/api/app.py#L23-L51)", "(../../services/api/app.py#L5-L9)")
    # the other form: `lag_probe` in [`services/api/metrics.py`](...)
    other = repo / "docs" / "labs" / "04-blocking-call.md"
    edit(other, "metrics.py#L198-L232)", "metrics.py#L150-L170)")
    done = check(repo, "--no-blocks")
    assert done.returncode == 1
    assert (
        f"{at(repo, page, 'app.py#L5-L9)')} link ../../services/api/app.py#L5-L9: lines 5-9 "
        "are not `create_app` (L"
    ) in done.stderr
    assert (
        f"{at(repo, other, 'metrics.py#L150-L170)')} link "
        "../../services/api/metrics.py#L150-L170: lines 150-170 are not `lag_probe`"
    ) in done.stderr


def test_a_renamed_make_target_fails(repo: Path) -> None:
    edit(repo / "Makefile", "\ncompare: venv", "\ncompare-variants: venv")
    done = check(repo, "--no-blocks")
    assert done.returncode == 1
    readme = repo / "README.md"
    assert (
        f"{at(repo, readme, 'make compare SCENARIOS=upstream USERS=200')} make compare: "
        "no such target in the Makefile"
    ) in done.stderr


def test_a_missing_file_module_or_function_fails(repo: Path) -> None:
    page = repo / "docs" / "architecture.md"
    edit(page, "`services/api/metrics.py`", "`services/api/metric.py`")
    edit(page, "`create_app(settings)`", "`build_app(settings)`")
    edit(page, "`python -m services.api`", "`python -m services.apis`")
    done = check(repo, "--no-blocks")
    assert done.returncode == 1
    assert "`services/api/metric.py`: no such file" in done.stderr
    assert (
        "`build_app(settings)`: nothing in services, loadtest, tools, tests defines" in done.stderr
    )
    assert "python -m services.apis: no services/apis.py" in done.stderr


LAB_PAGE = (
    "# A lab\n\n"
    "`async` served 892 req/s<!-- ref: compare.upstream.async.rps -->, "
    "**4.5x**<!-- ref: compare.upstream.ratio.async/sync -->\n"
    "the 199 req/s <!-- ref: compare.upstream.sync.rps --> of `sync`, "
    "with 1,000 users<!-- ref: options.compare.users -->.\n"
)


def with_reference(repo: Path, values: dict[str, float]) -> Path:
    folder = repo / "docs" / "results" / "2026-01-01-2core-test"
    folder.mkdir(parents=True)
    (folder / "reference.json").write_text(json.dumps(values))
    name_current(repo, "2026-01-01-2core-test")
    unquote(repo)
    page = repo / "docs" / "labs" / "01-a-lab.md"
    page.parent.mkdir(exist_ok=True)
    page.write_text(LAB_PAGE)
    return page


REFERENCE = {
    "compare.upstream.async.rps": 892.3,
    "compare.upstream.sync.rps": 198.6,
    "compare.upstream.ratio.async/sync": 4.4929,
    "options.compare.users": 1000,
}


def test_quoted_numbers_match_the_reference(repo: Path) -> None:
    with_reference(repo, REFERENCE)
    done = check(repo, "--no-blocks")
    assert done.returncode == 0, done.stderr


def test_a_changed_quote_or_measurement_fails(repo: Path) -> None:
    page = with_reference(repo, {**REFERENCE, "compare.upstream.sync.rps": 210.2})
    edit(page, "892 req/s", "893 req/s")
    edit(page, "ratio.async/sync", "ratio.async/sink")
    done = check(repo, "--no-blocks")
    assert done.returncode == 1
    assert (
        "docs/labs/01-a-lab.md:3: 893 req/s quotes compare.upstream.async.rps, but "
        "docs/results/2026-01-01-2core-test/reference.json has 892.3"
    ) in done.stderr
    assert "4.5x quotes compare.upstream.ratio.async/sink: no such key" in done.stderr
    assert "did you mean compare.upstream.ratio.async/sync" in done.stderr
    assert "docs/labs/01-a-lab.md:4: 199 req/s quotes compare.upstream.sync.rps" in done.stderr


def test_a_quote_without_a_current_reference_fails(repo: Path) -> None:
    name_current(repo, "none yet")
    page = repo / "docs" / "labs" / "01-a-lab.md"
    page.parent.mkdir(exist_ok=True)
    page.write_text(LAB_PAGE + "\nA marker alone <!-- ref: compare.upstream.async.rps -->\n")
    done = check(repo, "--no-blocks")
    assert done.returncode == 1
    assert "names no current reference" in done.stderr
    assert "docs/labs/01-a-lab.md:6: ref compare.upstream.async.rps: no number" in done.stderr


@pytest.mark.parametrize(
    ("quoted", "value", "ok"),
    [
        ("892", 892.3, True),
        ("892", 892.5, False),  # half-up: 893
        ("4.5", 4.46, True),
        ("4.4", 4.46, False),
        ("1,000", 999.7, True),
        ("0.99", 0.9906, True),
        ("0.990", 0.9906, False),
        ("5", 5, True),
        ("-3", -3.2, True),
    ],
)
def test_rounding_rule(quoted: str, value: float, ok: bool) -> None:
    assert matches(quoted, value) is ok


def test_the_quote_syntax() -> None:
    text = (
        "a 892 req/s<!-- ref: k1 --> b **4.5x**<!-- ref: k2 --> "
        "c 12 ms <!--ref:k3--> 3.5%<!-- ref: k4 -->"
    )
    found = [(m["number"], m["unit"], m["key"]) for m in QUOTE.finditer(text)]
    assert found == [
        ("892", "req/s", "k1"),
        ("4.5", "x", "k2"),
        ("12", "ms", "k3"),
        ("3.5", "%", "k4"),
    ]
    assert not list(QUOTE.finditer("v1.2<!-- ref: k -->"))  # part of a word: no quote


def test_output_matching_rules() -> None:
    assert match_output(["a", "...", "z"], ["a", "b", "c", "z"]) is None
    assert match_output(["a", "...", "z"], ["a", "z"]) is None
    assert match_output(["ratio {3..6}"], ["ratio 4.46"]) is None
    assert match_output(["ratio {3..6}"], ["ratio 6.01"]) == 0
    assert match_output(["took ... s: {1..2} x"], ["took 12.3 s: 1.5 x"]) is None
    assert match_output(["a", "b"], ["a", "c"]) == 1
    assert match_output(["a"], ["a", "b"]) == 0  # every printed line must be accounted for
    commands = parse_body("$ echo a \\\n  b\na b\n$ false\n(exit 1)\n", 10)
    assert [(c.line, c.command, c.exit_code) for c in commands] == [
        (10, "echo a \\\n  b", 0),
        (13, "false", 1),
    ]
    assert commands[0].expected == [(12, "a b")]
    assert parse_info("console") is None and parse_info("sh check") is None
    assert parse_info("console check lab=none env=A=1 timeout=5") == ((), {"A": "1"}, 5.0)


NO_LAB = """# Blocks

```console check lab=none
$ python -m services.registry
sync 8001
...
threaded {8000..8010}
$ python -c 'print(round(892.3 / 198.6, 2))'
{4..5}
$ exit 3
(exit 3)
```
"""


def test_checkable_blocks_run_and_must_match(repo: Path) -> None:
    page = repo / "docs" / "blocks.md"
    page.write_text(NO_LAB)
    done = check(repo, "docs/blocks.md")
    assert done.returncode == 0, done.stderr
    assert "1 checkable block(s) run: ok" in done.stderr

    page.write_text(NO_LAB.replace("{4..5}", "{5..6}").replace("(exit 3)", "(exit 0)"))
    done = check(repo, "docs/blocks.md")
    assert done.returncode == 1
    assert (
        "docs/blocks.md:9: $ python -c 'print(round(892.3 / 198.6, 2))': "
        "output does not match the expected line '{5..6}'" in done.stderr
    )
    assert "    | 4.49" in done.stderr

    page.write_text(NO_LAB.replace("(exit 3)", ""))
    done = check(repo, "docs/blocks.md")
    assert "docs/blocks.md:10: $ exit 3: exit status 3, expected 0" in done.stderr


TOKENS = 'import json, sys; print("tokens", json.load(sys.stdin)["threadpool"]["total"])'
LAB_BLOCKS = """# Against a lab

```console check lab=sync
$ curl -s 'http://127.0.0.1:8001/cpu?work=0'
{"detail": [{"type": "greater_than_equal", ...}]}
$ echo http://localhost:8001/x
http://localhost:8001/x
```

```console check lab=sync env=THREADPOOL_TOKENS=7
$ curl -s http://127.0.0.1:8001/runtime | python -c "$TOKENS"
tokens 7
```

```console check lab=sync
$ curl -s http://127.0.0.1:8001/runtime | python -c "$TOKENS"
tokens 7
```
"""


@pytest.mark.timeout(180)
def test_checkable_blocks_against_a_native_lab(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a lab the checker starts on free ports: the fixed port 8001 in a command reaches
    it, settings given with env= apply to their block only (the third block, back to the
    default 40 tokens, fails), and PAGE:LINE picks one block."""
    monkeypatch.setenv("TOKENS", TOKENS)  # the commands inherit the checker's environment
    page = repo / "docs" / "lab.md"
    page.write_text(LAB_BLOCKS)
    listed = check(repo, "--list", "docs/lab.md")
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [
        "docs/lab.md:3",
        "docs/lab.md:10",
        "docs/lab.md:15",
    ]
    done = check(repo, "docs/lab.md", timeout=170)
    assert done.returncode == 1, done.stderr
    problems = [line for line in done.stderr.splitlines() if line.startswith("docs/lab.md:")]
    assert len(problems) == 1, done.stderr
    assert problems[0].startswith("docs/lab.md:17: $ curl -s http://127.0.0.1:8001/runtime")
    assert "    | tokens 40" in done.stderr


def test_keys_from_results() -> None:
    run = {
        "scenario": "upstream",
        "stats": {"rps": 200.0, "p50_ms": 1000, "p95_ms": 1100, "p99_ms": 1700, "failures": 0},
        "ceiling": {"rps": 200.0},
        "server": {"cpu_mean_pct": 40.0},
        "server_peaks": {"loop_lag_ms": None},
        "bystander": {"p99_ms": 3.5},
    }
    flat = flatten_compare(
        {"runs": [{**run, "variant": "sync"}, {**run, "variant": "async", "stats": {"rps": 900.0}}]}
    )
    assert flat["compare.upstream.sync.predicted_rps"] == 200.0
    assert flat["compare.upstream.sync.bystander_ms"] == 3.5
    assert "compare.upstream.sync.loop_lag_max_ms" not in flat  # not given: no key
    assert flat["compare.upstream.ratio.async/sync"] == 4.5
    assert flat["compare.upstream.ratio.sync/async"] == 0.2222
    search = {"scenario": "upstream", "variant": "sync", "knee_users": 50, "max_rps": 199.0}
    capacity = flatten_capacity({"searches": [{**search, "knee_p95_ms": 480}]})
    assert capacity == {
        "capacity.upstream.sync.knee_users": 50,
        "capacity.upstream.sync.knee_rps": 199.0,
        "capacity.upstream.sync.knee_p95_ms": 480,
    }
    machine = {"cores": 2, "cpu_model": "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz"}
    assert machine_slug(machine) == "2core-intel-xeon"  # type: ignore[arg-type]


@pytest.mark.timeout(240)
def test_a_short_reference_run_is_quotable(repo: Path) -> None:
    """`python -m tools.reference run`, shortened, on a lab of its own: the folder, its keys,
    and a page quoting them that the check accepts until the quote changes."""
    out = repo / "docs" / "results"
    cmd = [sys.executable, "-m", "tools.reference", "run", "--scenarios", "upstream"]
    cmd += ["--variants", "sync,async", "--users", "10", "--duration", "2s", "--warmup", "0s"]
    cmd += ["--capacity-scenarios", "upstream", "--steps", "1", "--step-duration", "2s"]
    cmd += ["--out", str(out), "--name", "2026-01-01-test", "--current"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=220, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = out / "2026-01-01-test"
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"method.md", "reference.json", "compare/report.md", "compare/results.json"} <= files
    assert {"compare/upstream-bars.png", "capacity/results.json", "capacity/report.md"} <= files
    assert not any(f.startswith(("compare/locust/", ".")) for f in files)
    flat = json.loads((folder / "reference.json").read_text())
    for key in (
        "compare.upstream.sync.rps",
        "compare.upstream.async.predicted_rps",
        "compare.upstream.ratio.async/sync",
        "capacity.upstream.sync.knee_users",
        "machine.cores",
        "wall_s.compare",
        "wall_s.capacity",
    ):
        assert key in flat, key
    method = (folder / "method.md").read_text()
    assert "python -m loadtest.compare --scenarios upstream --variants sync,async" in method
    assert "| compare.upstream.sync.rps |" in method

    rps = flat["compare.upstream.sync.rps"]
    unquote(repo)
    page = repo / "docs" / "quote.md"
    page.write_text(f"# Q\n\nsync: {rps:.1f} req/s<!-- ref: compare.upstream.sync.rps -->\n")
    done = check(repo, "--no-blocks")
    assert done.returncode == 0, done.stderr
    page.write_text(f"# Q\n\nsync: {rps + 1:.1f} req/s<!-- ref: compare.upstream.sync.rps -->\n")
    assert check(repo, "--no-blocks").returncode == 1


def test_fill_writes_the_reference_over_tbd_and_the_check_accepts_it(repo: Path) -> None:
    page = with_reference(repo, REFERENCE)
    page.write_text(
        "async TBD req/s<!-- ref: compare.upstream.async.rps -->, "
        "TBDx<!-- ref: compare.upstream.ratio.async/sync --> sync; "
        "kept: 198.6 req/s<!-- ref: compare.upstream.sync.rps -->; "
        "unknown TBD<!-- ref: compare.nope.async.rps -->\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "tools.reference", "fill", str(page)],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and "no number for" in done.stderr  # the unknown key
    text = page.read_text()
    assert "async 892 req/s<!-- ref: compare.upstream.async.rps -->" in text
    assert "4.5x<!-- ref: compare.upstream.ratio.async/sync -->" in text
    assert "TBD<!-- ref: compare.nope.async.rps -->" in text  # left for a human
    page.write_text(text.replace("unknown TBD<!-- ref: compare.nope.async.rps -->", ""))
    assert check(repo, "--no-blocks").returncode == 0


def test_a_checkable_block_inside_a_list_item_is_found_and_dedented(tmp_path: Path) -> None:
    from tools.docs_check.markdown import fenced

    text = "1. Step:\n\n   ```console check\n   $ echo hi\n   hi\n   ```\n\nafter\n"
    (block,) = fenced(text)
    assert block.info == "console check"
    assert block.body == "$ echo hi\nhi\n"
    assert block.line == 3
