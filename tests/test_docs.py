"""The docs cannot drift: the knobs table is the settings object's own, and every relative link
in README.md and docs/**/*.md leads to a file of the repository (and an #anchor to a heading in
it). The link logic is the docs check's own (tools/docs_check/markdown.py, `make docs-check`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.api.settings import markdown_table
from tools.docs_check.markdown import check_links, links, pages, slug

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SETTINGS_DOC = ROOT / "docs" / "settings.md"


def test_settings_doc_lists_every_setting_with_its_default() -> None:
    # Regenerate with `python -m services.api.settings` and paste over the old table.
    assert markdown_table() in SETTINGS_DOC.read_text()


def test_readme_links_to_the_settings_doc() -> None:
    assert "docs/settings.md" in [t.split("#")[0] for _, t in links(README.read_text())]


@pytest.mark.parametrize("page", pages(ROOT), ids=str)
def test_relative_links_resolve(page: Path) -> None:
    broken = check_links(ROOT, page)
    assert not broken, "\n".join(map(str, broken))


def test_slugs_follow_github() -> None:
    assert slug("Docker, Podman, or neither") == "docker-podman-or-neither"
    assert slug("How to add a variant") == "how-to-add-a-variant"
    assert slug("`threaded`: `run_in_threadpool`") == "threaded-run_in_threadpool"
    assert slug("Little's-law ceilings") == "littles-law-ceilings"
    assert slug("Compare and capacity (`make compare`)") == "compare-and-capacity-make-compare"
