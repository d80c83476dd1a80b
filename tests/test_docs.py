"""The docs cannot drift: the knobs table is the settings object's own, and every relative link
in README.md and docs/*.md leads to a file of the repository (and an #anchor to a heading in it)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from services.api.settings import markdown_table

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SETTINGS_DOC = ROOT / "docs" / "settings.md"
PAGES = [
    README,
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "docs" / "labs").glob("*.md")),
]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
# [text](target) and ![alt](target), an optional "title" after the target
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto: ...


def _prose(text: str) -> str:
    """The Markdown without code: links inside code blocks and spans are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text without markup, lower case, punctuation dropped
    (letters, digits, spaces, '-' and '_' stay), every space a hyphen."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor; repeated headings get -1, -2 ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(page: Path) -> list[str]:
    return LINK.findall(_prose(page.read_text()))


def test_settings_doc_lists_every_setting_with_its_default() -> None:
    # Regenerate with `python -m services.api.settings` and paste over the old table.
    assert markdown_table() in SETTINGS_DOC.read_text()


def test_readme_links_to_the_settings_doc() -> None:
    assert "docs/settings.md" in [t.split("#")[0] for t in links(README)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in links(page):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = unquote(target).partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_slugs_follow_github() -> None:
    assert slug("Docker, Podman, or neither") == "docker-podman-or-neither"
    assert slug("How to add a variant") == "how-to-add-a-variant"
    assert slug("`threaded`: `run_in_threadpool`") == "threaded-run_in_threadpool"
    assert slug("Little's-law ceilings") == "littles-law-ceilings"
    assert slug("Compare and capacity (`make compare`)") == "compare-and-capacity-make-compare"
