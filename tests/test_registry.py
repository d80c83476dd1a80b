"""services/registry.py is the one list of variants: code, Makefile and compose follow it."""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path

import pytest

from services import registry
from services.api.contract import ROUTES

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", registry.NAMES)
def test_each_variant_module_has_every_endpoint_and_its_resources(name: str) -> None:
    module = importlib.import_module(registry.get(name).module)
    assert callable(module.resources)
    for route in ROUTES:
        assert callable(getattr(module, route.endpoint)), (name, route.endpoint)
    assert module.__doc__ and module.__doc__.startswith(f"{name}:")


def test_ports_and_colours_are_unique() -> None:
    variants = registry.VARIANTS.values()
    assert len({v.port for v in variants}) == len({v.colour for v in variants}) == len(variants)


def test_unknown_variant_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="choose from sync, async"):
        registry.get("fast")


def test_make_urls_lists_every_variant() -> None:
    out = subprocess.run(
        ["make", "--no-print-directory", "urls"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    listed = [line.split()[0] for line in out.splitlines() if line.strip().startswith("api-")]
    assert listed == [f"api-{n}" for n in registry.NAMES]
    for v in registry.VARIANTS.values():
        assert f"http://localhost:{v.port}/runtime" in out


def test_the_makefile_names_no_variant() -> None:
    """Variant lists live in the registry: the Makefile defaults to 'every variant'."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))  # not examples
    for name in registry.NAMES:
        assert f"{name}," not in text and f",{name}" not in text, name
