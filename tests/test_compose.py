"""compose.yaml holds the lab's promises: one API image, fair limits, loopback-only ports,
every variable documented with a default in .env, the same ports as the native lab, and every
container but PostgreSQL read-only, without capabilities or new privileges."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.lab.ports import API_PORTS, LOCUST_PORT, UPSTREAM_PORT, VARIANTS

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_matches_the_compose_spec() -> None:
    # podman-compose ignores keys Docker would reject: check against the specification itself.
    checker = Path(sys.executable).with_name("check-jsonschema")
    proc = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_one_api_service_per_registry_variant_and_locust_waits_for_each() -> None:
    services = _compose()["services"]
    apis = {name for name in services if name.startswith("api-")}
    assert apis == {f"api-{v}" for v in VARIANTS}
    assert set(services["locust"]["depends_on"]) == apis
    # the dropdown's URLs come from one template, not a second list of variants
    assert services["locust"]["environment"]["LAB_TARGETS"] == "http://api-{variant}:8000"


def test_variants_share_one_image_and_differ_only_by_variant() -> None:
    services = _compose()["services"]
    apis = {v: services[f"api-{v}"] for v in VARIANTS}
    assert {s["image"] for s in apis.values()} == {"localhost/fastapi-lab-api:latest"}
    assert len({str(s["deploy"]) for s in apis.values()}) == 1  # the same CPU and memory limits
    for variant, service in apis.items():
        assert service["environment"]["API_VARIANT"] == variant
        others = {k: v for k, v in service["environment"].items() if k != "API_VARIANT"}
        sync_env = {k: v for k, v in apis["sync"]["environment"].items() if k != "API_VARIANT"}
        assert others == sync_env


def test_ports_are_loopback_only_and_match_the_native_lab() -> None:
    services = _compose()["services"]
    published = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            host, host_port, _ = port.split(":")
            assert host == "127.0.0.1", (name, port)
            published[name] = int(host_port)
    expected = {f"api-{v}": API_PORTS[v] for v in VARIANTS}
    expected |= {"upstream": UPSTREAM_PORT, "locust": LOCUST_PORT}
    assert published == expected


def test_every_variable_has_a_default_in_env_and_a_line_in_the_header() -> None:
    text = COMPOSE.read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    defaults = dict(
        line.split("=", 1) for line in (ROOT / ".env").read_text().splitlines()
        if line and not line.startswith("#")
    )  # fmt: skip
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert used <= set(defaults), used - set(defaults)
    for name in used:
        assert re.search(rf"^#\s+{name}\s", header, re.M), f"{name} is not in the header comment"
    # and the defaults in .env are the ones the ${VAR:-default} fallbacks give
    for name, default in re.findall(r"\$\{([A-Z_]+):-([^}]*)\}", text):
        assert defaults[name] == default, (name, defaults[name], default)


def test_database_init_scripts_are_the_native_labs() -> None:
    postgres = _compose()["services"]["postgres"]
    assert "./services/db:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]
    assert postgres["healthcheck"]["test"][0] == "CMD-SHELL" and "pg_isready" in str(postgres)


# Services that must stay hardened (tests/test_compose.py is the guard; compose.yaml's x-hardened
# anchor the single place they get it from). PostgreSQL is deliberately NOT here: its entrypoint
# runs as root to chown PGDATA and the socket directory, then drops to the postgres user, which
# needs its default capabilities and a writable /var/run/postgresql.
HARDENED = ("upstream", *(f"api-{v}" for v in VARIANTS), "locust", "locust-worker")
EXEMPT = {"postgres"}


def test_every_service_is_hardened_or_deliberately_exempt() -> None:
    services = _compose()["services"]
    # a new service must choose: hardened, or added to EXEMPT with its reason
    assert set(services) == set(HARDENED) | EXEMPT, set(services) ^ (set(HARDENED) | EXEMPT)


@pytest.mark.parametrize("name", HARDENED)
def test_service_runs_read_only_without_privileges(name: str) -> None:
    service = _compose()["services"][name]
    assert service.get("read_only") is True, f"{name}: read_only: true is missing"
    assert "no-new-privileges:true" in service.get("security_opt", []), name
    assert service.get("cap_drop") == ["ALL"], f"{name}: cap_drop must be [ALL]"
    assert not service.get("cap_add"), f"{name}: adds capabilities back"
    assert not service.get("privileged"), name
    # where its processes write: Python's tempfile (gunicorn's worker files, the metrics
    # directory, Locust runs, matplotlib's MPLCONFIGDIR) goes to /tmp, in memory
    tmpfs = [entry.split(":")[0] for entry in service.get("tmpfs", [])]
    assert "/tmp" in tmpfs, f"{name}: a read-only container needs a tmpfs on /tmp"


def test_locust_writes_only_to_memory() -> None:
    services = _compose()["services"]
    for name in ("locust", "locust-worker"):
        service = services[name]
        assert service["environment"]["MPLCONFIGDIR"].startswith("/tmp/"), name
        # results/ of the image: writable for compare/capacity runs (the tmpfs keeps the
        # image directory's mode but is root's, so the Dockerfile makes it 1777)
        assert "/app/results" in [e.split(":")[0] for e in service["tmpfs"]], name
    dockerfile = (ROOT / "loadtest/Dockerfile").read_text()
    assert "mkdir -m 1777 /app/results" in dockerfile


def test_postgres_is_exempt_from_read_only_and_cap_drop_but_gains_no_privileges() -> None:
    postgres = _compose()["services"]["postgres"]
    assert "read_only" not in postgres and "cap_drop" not in postgres
    assert "no-new-privileges:true" in postgres["security_opt"]


# API variables whose compose value is the container's own wiring, not a knob with a default:
# bind every interface on the port the image exposes, reach the other services by name.
CONTAINER_WIRING = {"API_VARIANT", "API_HOST", "API_PORT", "DATABASE_URL", "UPSTREAM_URL"}


def test_compose_and_env_defaults_are_the_settings_defaults() -> None:
    """One default per knob: running natively or under compose without overrides gives the same
    settings (UPSTREAM_TIMEOUT was 10 in compose and .env, 15 natively)."""
    from services.api.settings import Settings

    env_file = dict(
        line.split("=", 1) for line in (ROOT / ".env").read_text().splitlines()
        if line and not line.startswith("#")
    )  # fmt: skip
    native = Settings()
    passed = _compose()["services"]["api-sync"]["environment"]
    knobs = {name: value for name, value in passed.items() if name not in CONTAINER_WIRING}
    assert knobs, "compose passes no API knob?"
    header = COMPOSE.read_text()
    for name, value in knobs.items():
        fallback = re.fullmatch(r"\$\{([A-Z_]+):-([^}]*)\}", str(value))
        assert fallback and fallback[1] == name, f"{name}: {value!r} is not ${{{name}:-default}}"
        documented = re.search(rf"^#\s+{name}\s+(\S+)", header, re.M)
        sources = (
            ("compose.yaml", fallback[2]),
            ("compose.yaml's header", documented and documented[1]),
            (".env", env_file.get(name)),
        )
        for where, raw in sources:
            assert raw is not None, f"{name} has no default in {where}"
            parsed = getattr(Settings.model_validate({name.lower(): raw}), name.lower())
            expected = getattr(native, name.lower())
            assert parsed == expected, f"{name}: {where} says {raw}, Settings says {expected}"
