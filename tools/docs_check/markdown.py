"""Markdown as GitHub reads it, just enough to check it: pages, fenced blocks, code spans, links,
headings and their anchors. Every finding keeps its line number."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote

# A fenced block: ``` or ~~~ (3 or more), an info string, up to the same fence on its own line;
# indented too (inside a list item), its body then read without that indent.
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)(?P<info>[^\n]*)\n(?P<body>.*?)"
    r"^[ \t]*(?P=fence)[ \t]*$",
    re.M | re.S,
)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
# [text](target) and ![alt](target), an optional "title" after the target
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto: ...
# docs/results/<run>/ holds generated reports (links to files not committed): not checked.
GENERATED = re.compile(r"^docs/results/[^/]+/")


@dataclass(frozen=True)
class Problem:
    path: Path  # relative to the repository
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass(frozen=True)
class Fenced:
    info: str  # the info string, stripped: "console check", "sh", ""
    body: str
    line: int  # of the opening fence
    body_line: int  # of the first body line


def pages(root: Path) -> list[Path]:
    """README.md and every docs/**/*.md written by hand, relative to root."""
    found = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    rel = [p.relative_to(root) for p in found if p.is_file()]
    return [p for p in rel if not GENERATED.match(p.as_posix())]


def line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def fenced(text: str) -> list[Fenced]:
    return [
        Fenced(
            m["info"].strip(),
            _dedent(m["body"], m["indent"]),
            line_of(text, m.start()),
            line_of(text, m.start("body")),
        )
        for m in FENCE.finditer(text)
    ]


def _dedent(body: str, indent: str) -> str:
    return "".join(line.removeprefix(indent) for line in body.splitlines(keepends=True))


def _blank(m: re.Match[str]) -> str:
    """Same length and the same newlines, nothing else: positions keep their line numbers."""
    return re.sub(r"[^\n]", " ", m[0])


def without_fences(text: str) -> str:
    return FENCE.sub(_blank, text)


def prose(text: str) -> str:
    """The Markdown without code: links inside code blocks and spans are not links."""
    return CODE_SPAN.sub(_blank, without_fences(text))


def code_spans(text: str) -> Iterator[tuple[int, str]]:
    """(line, content) of every inline code span outside fenced blocks."""
    outside = without_fences(text)
    for m in CODE_SPAN.finditer(outside):
        yield line_of(outside, m.start()), m[2].strip()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text without markup, lower case, punctuation dropped
    (letters, digits, spaces, '-' and '_' stay), every space a hyphen."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


@cache
def _anchors(page: Path, mtime_ns: int) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(without_fences(page.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    # explicit anchors: <a name="x"></a> / <a id="x"></a>
    found.update(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", page.read_text()))
    return frozenset(found)


def anchors(page: Path) -> frozenset[str]:
    """Every heading's anchor; repeated headings get -1, -2 ... as on GitHub."""
    return _anchors(page, page.stat().st_mtime_ns)


def links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every Markdown link and image outside code."""
    text = prose(text)
    return [(line_of(text, m.start()), m[1]) for m in LINK.finditer(text)]


# [`name`](path.py#L12-L30), or `name` in [file](path.py#L12-L30): a code span naming a
# function, a class or a method (its last dotted part counts: `async_.read_item`,
# `AsyncUpstream.__init__`; `def name` too), linked to lines of a module.
FILE_SUFFIXES = {"py", "md", "yaml", "yml", "toml", "sql", "sh"}
_LINES = r"\(\s*<?([^)\s>#]+\.py)#L(\d+)(?:-L?(\d+))?>?\s*\)"
_NAME = r"`(?:async def |def |class )?(?:[\w.]+\.)?(\w+)`"
NAMED_LINES = re.compile(rf"\[{_NAME}\]{_LINES}|{_NAME} in\s+\[`?[^\]`]*\.py`?\]{_LINES}")


def _spans(source: str) -> dict[str, list[tuple[int, int]]]:
    """Every function's and class's lines in a Python module, by name."""
    found: dict[str, list[tuple[int, int]]] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            found.setdefault(node.name, []).append((first, node.end_lineno or node.lineno))
    return found


def check_line_links(root: Path, page: Path) -> list[Problem]:
    """A link from a named function or class to lines of a module (lines move as code
    changes, and nothing else would notice): the lines must start inside a definition of that
    name (only the last dotted part is compared: `A.f` passes on any `f` of the module)."""
    text = (root / page).read_text()
    outside = without_fences(text)
    problems = []
    for m in NAMED_LINES.finditer(outside):
        groups = m.groups()[:4] if m[1] else m.groups()[4:]
        name, target, first, last = (
            groups[0],
            groups[1],
            int(groups[2]),
            int(groups[3] or groups[2]),
        )
        if name in FILE_SUFFIXES:  # [`sync.py`](...): a file, not a definition
            continue
        dest = Path(os.path.normpath((root / page).parent / unquote(target)))
        if not dest.is_file():
            continue  # check_links reports it
        spans = _spans(dest.read_text()).get(name, [])
        if not any(a <= first <= min(b, last) for a, b in spans):
            where = ", ".join(f"L{a}-L{b}" for a, b in spans) or "not defined there"
            link = m[0][m[0].rindex("(") + 1 : -1].strip()
            message = f"link {link}: lines {first}-{last} are not `{name}` ({where})"
            target_at = m.start(2) if m[1] else m.start(6)  # the link's line, not the name's
            problems.append(Problem(page, line_of(outside, target_at), message))
    return problems


def check_links(root: Path, page: Path) -> list[Problem]:
    """Every relative link of `page` (relative to root) leads to a file of the repository, and
    every #anchor into a Markdown file to one of its headings."""
    root = root.resolve()
    problems = []
    for line, target in links((root / page).read_text()):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = unquote(target).partition("#")
        # lexically, not resolve(): a symlink inside the repository is inside it
        dest = Path(os.path.normpath((root / page).parent / path)) if path else root / page
        if not dest.is_relative_to(root):
            problems.append(Problem(page, line, f"link {target}: outside the repository"))
        elif not dest.exists():
            problems.append(Problem(page, line, f"link {target}: no such file"))
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            where = dest.relative_to(root)
            problems.append(Problem(page, line, f"link {target}: no heading #{anchor} in {where}"))
    return problems
