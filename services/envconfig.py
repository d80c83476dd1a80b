"""Environment -> one frozen settings model: how every service of the lab reads its knobs.

Only entry points call `load_or_exit` (with `os.environ`); everything else receives the object.
An empty variable (`FOO=` in a shell or .env) means "use the default", not "empty string".
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def from_env(model: type[M], environ: Mapping[str, str], prefix: str = "") -> M:
    """Build `model` from `PREFIX_FIELD` variables; raises pydantic's ValidationError."""
    values = {
        name: environ[key]
        for name in model.model_fields
        if environ.get(key := f"{prefix}{name.upper()}", "") != ""
    }
    return model.model_validate(values)


def error_lines(exc: ValidationError, prefix: str = "") -> list[str]:
    """One short line per problem, naming the variable: what a person fixes in their .env."""
    lines = []
    for err in exc.errors():
        if err["loc"]:
            name = prefix + "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"invalid setting {name}: {err['msg']} (got {err['input']!r})")
        else:  # a rule across fields: its message names the variables
            lines.append(f"invalid settings: {err['msg'].removeprefix('Value error, ')}")
    return lines


def load_or_exit(model: type[M], environ: Mapping[str, str], prefix: str = "", code: int = 2) -> M:
    """`from_env`, or stop the process with those lines on stderr and no traceback."""
    try:
        return from_env(model, environ, prefix)
    except ValidationError as exc:
        print("\n".join(error_lines(exc, prefix)), file=sys.stderr)
        raise SystemExit(code) from None
