"""README's knobs table is the settings object's own: the two never drift apart."""

from pathlib import Path

from services.api.settings import markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_lists_every_setting_with_its_default() -> None:
    assert markdown_table() in README.read_text()
