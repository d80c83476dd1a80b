"""Every file, module, function and make target a page names in code exists.

What counts as naming one (only inside inline code spans, except `make` and `python -m`, which are
also read in fenced blocks; a line holding `<!-- docs-check: ignore -->` is skipped):
- a repository path: a span without spaces whose first component exists at the repository's
  top level (or next to the page), or that ends in a known file extension: `services/registry.py`,
  `docs/labs/`, `services/api/variants/<variant>.py` (`<...>`, `{...}`, `*` and a lone `NN`
  are wildcards: at least one file must match). A trailing `:12`, `:12-30` or `#L12` is a line
  reference and ignored; generated first components (results/, .lab/, .venv/) are not checked;
- a project name: a dotted name under services, loadtest, tools or tests, optionally called or
  with a `:attribute`: `services.api.main:app`, `loadtest.compare`, `services.registry.get()`: the
  module must exist and define (or import) the name;
- `python -m <module>` of a project module: the module (or package with __main__.py) must exist;
- a bare call `create_app(settings)`: some module under services, loadtest, tools or tests
  must define or import `create_app`, or services/loadtest call it (`pg_sleep(0.2)`: in SQL
  text), or it is a Python builtin;
- `make <target>` (options and VAR=value may come first): the Makefile must have the target.
"""

from __future__ import annotations

import ast
import builtins
import re
from functools import cache
from pathlib import Path

from tools.docs_check.markdown import Problem, code_spans, fenced

PACKAGES = ("services", "loadtest", "tools", "tests")
IGNORE = "<!-- docs-check: ignore -->"
GENERATED_DIRS = {"results", ".lab", ".venv", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
EXTENSIONS = tuple(".py .md .yaml .yml .toml .txt .sql .sh .conf .json .cfg".split())

MAKE = re.compile(
    r"(?:^|[\s;&|(])make\s+(?:(?:-\S+|[A-Za-z_]\w*=\S*)\s+)*([A-Za-z0-9_][\w.-]*)\b(?!=)", re.M
)
PYTHON_M = re.compile(r"\bpython[\d.]*\s+-m\s+([A-Za-z_][\w.]*)")
PATH = re.compile(r"^(?:\./)?[\w.<>{}*-]+(?:/[\w.<>{}*-]*)*$")
LINE_REF = re.compile(r"(?::\d+(?:-\d+)?|#L\d+(?:-L?\d+)?|::[\w\[\]-]+)$")
DOTTED = re.compile(rf"^((?:{'|'.join(PACKAGES)})(?:\.\w+)+)(?::(\w+))?(?:\(.*\))?$", re.S)
BARE_CALL = re.compile(r"^([A-Za-z_]\w*)\(.*\)$", re.S)
TARGET = re.compile(r"^([A-Za-z0-9_.-]+(?:[ \t]+[A-Za-z0-9_.-]+)*)[ \t]*:(?!=)", re.M)


def make_targets(root: Path) -> set[str]:
    makefile = root / "Makefile"
    if not makefile.exists():
        return set()
    found = {t for m in TARGET.finditer(makefile.read_text()) for t in m[1].split()}
    return {t for t in found if not t.startswith(".")}  # .PHONY, .DEFAULT_GOAL


def _module_file(root: Path, dotted: str) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _defined(path: Path, mtime_ns: int) -> frozenset[str]:
    """Names a module defines or imports at any level (def, class, assignment, import)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return frozenset(names)


def defined(path: Path) -> frozenset[str]:
    return _defined(path, path.stat().st_mtime_ns)


def project_names(root: Path) -> set[str]:
    """Names defined or imported by the project's Python, and names called as `name(` in the
    Python and SQL text of services/ and loadtest/ (SQL's pg_sleep(), a call in a string)."""
    names: set[str] = set()
    for package in PACKAGES:
        for path in (root / package).rglob("*"):
            if ".venv" in path.parts or path.suffix not in (".py", ".sql"):
                continue
            if path.suffix == ".py":
                names |= defined(path)
            if package in ("services", "loadtest"):  # not the docs' own tests and examples
                names.update(re.findall(r"\b([A-Za-z_]\w*)\(", path.read_text()))
    return names


def check_dotted(root: Path, dotted: str, attribute: str | None) -> str | None:
    """None when `dotted` (plus `:attribute`) names a project module and what it defines."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        module = _module_file(root, ".".join(parts[:n]))
        if module is None:
            continue
        rest = parts[n:] + ([attribute] if attribute else [])
        if rest and rest[0] not in defined(module):
            return f"{'.'.join(parts[:n])} ({module.relative_to(root)}) has no {rest[0]}"
        return None
    return f"no module {parts[0]}" + "".join(f".{p}" for p in parts[1:2]) + " in the repository"


def check_module_main(root: Path, module: str) -> str | None:
    """`python -m module`: a module file, or a package with __main__.py."""
    base = root.joinpath(*module.split("."))
    if base.with_suffix(".py").is_file() or (base / "__main__.py").is_file():
        return None
    path = module.replace(".", "/")
    return f"python -m {module}: no {path}.py nor {path}/__main__.py"


def _glob(base: Path, path: str) -> bool:
    pattern = re.sub(r"<[^>]*>|\{[^}]*\}|\bNN\b", "*", path).rstrip("/")
    if not any(c in pattern for c in "*?["):
        target = base / pattern
        return target.is_dir() if path.endswith("/") else target.exists()
    return any((p.is_dir() or not path.endswith("/")) for p in base.glob(pattern))


def check_path(root: Path, page: Path, span: str) -> str | None:
    """None when the span is not a repository path, or names one that exists."""
    if not PATH.match(span) or span.startswith("/") or "." == span.strip("./"):
        return None
    path = LINE_REF.sub("", span.removeprefix("./"))
    first = path.split("/", 1)[0]
    if first in GENERATED_DIRS or "://" in span:
        return None
    for base in (root, (root / page).parent):
        if re.search(r"[<>{}*]", first):
            break
        if (base / first).exists():
            if _glob(base, path):
                return None
            return f"`{span}`: no such file or folder in the repository"
    if "/" in path and path.rstrip("/").endswith(EXTENSIONS):
        return f"`{span}`: no such file in the repository"
    return None


def check_names(root: Path, page: Path) -> list[Problem]:
    root = root.resolve()
    text = (root / page).read_text()
    lines = text.splitlines()
    targets = make_targets(root)
    known: set[str] | None = None
    problems: list[Problem] = []

    def report(line: int, message: str | None) -> None:
        if message and IGNORE not in lines[line - 1]:
            problems.append(Problem(page, line, message))

    def check_commands(line: int, code: str) -> None:
        for m in MAKE.finditer(code):
            target = m[1]
            if target not in targets:
                at = line + code.count("\n", 0, m.start(1))
                report(at, f"make {target}: no such target in the Makefile")
        for m in PYTHON_M.finditer(code):
            if m[1].split(".")[0] in PACKAGES:
                report(line + code.count("\n", 0, m.start()), check_module_main(root, m[1]))

    for block in fenced(text):
        check_commands(block.body_line, block.body)
    for line, span in code_spans(text):
        check_commands(line, span)
        if m := DOTTED.match(span):
            wrong = check_dotted(root, m[1], m[2])
            report(line, f"`{span}`: {wrong}" if wrong else None)
        elif m := BARE_CALL.match(span):
            if known is None:
                known = project_names(root)
            name = m[1]
            if name not in known and not hasattr(builtins, name):
                report(
                    line,
                    f"`{span}`: nothing in {', '.join(PACKAGES)} defines, imports or calls {name}",
                )
        else:
            report(line, check_path(root, page, span))
    return problems
