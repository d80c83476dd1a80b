"""Which URL each variant answers on: configuration, not code.

LAB_TARGETS takes one of two forms:
- a template applied to every variant of the registry (services/registry.py), e.g.
  `http://api-{variant}:8000` (compose), so no list of variants is kept outside the registry;
- `variant=url,...`, overriding the native lab's ports (the registry's) for those variants.
Locust's Host field / --host still wins over both.
"""

from __future__ import annotations

import os

from services.lab.ports import HOST
from services.registry import NAMES, VARIANTS

__all__ = ["NAMES", "load_targets"]

PLACEHOLDER = "{variant}"
_SCHEMES = ("http://", "https://")


def load_targets(spec: str | None = None) -> dict[str, str]:
    """Variant -> base URL, from `spec` (default: $LAB_TARGETS) over the native lab's ports."""
    spec = (os.environ.get("LAB_TARGETS", "") if spec is None else spec).strip()
    if PLACEHOLDER in spec:
        return _from_template(spec)
    targets = {name: f"http://{HOST}:{v.port}" for name, v in VARIANTS.items()}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        variant, sep, url = item.partition("=")
        if not sep or variant not in VARIANTS or not url.startswith(_SCHEMES):
            raise ValueError(
                f"LAB_TARGETS: expected variant=http://host:port (variants: {', '.join(NAMES)}) "
                f"or one URL with {PLACEHOLDER}, got {item!r}"
            )
        targets[variant] = url.rstrip("/")
    return targets


def _from_template(template: str) -> dict[str, str]:
    if "," in template or "=" in template.split("?", 1)[0] or not template.startswith(_SCHEMES):
        raise ValueError(
            f"LAB_TARGETS: a {PLACEHOLDER} template is one URL for every variant, like "
            f"http://api-{PLACEHOLDER}:8000, got {template!r}"
        )
    return {name: template.replace(PLACEHOLDER, name).rstrip("/") for name in NAMES}
