"""docker-compose.yml: the deployment's services, commands, healthchecks and secrets.

Parsed, not run (no Docker daemon in CI). Every ``TAPESTRY_*`` variable it sets must be a real
Settings field, so a renamed setting cannot silently fall back to its default in production.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import Settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
TAPESTRY_IMAGES = ("migrate", "web", "worker-gpu", "worker-default")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _command(service: dict[str, Any]) -> str:
    command = service["command"]
    return " ".join(command) if isinstance(command, list) else str(command)


def test_services_and_their_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"postgres", "redis", *TAPESTRY_IMAGES}
    assert _command(services["migrate"]) == "tapestry db upgrade"
    web = _command(services["web"])
    assert web.startswith("uvicorn app.main:create_app --factory") and "--workers 4" in web
    gpu = _command(services["worker-gpu"])
    assert gpu.startswith("celery -A worker.celery_app worker") and "-Q gpu " in gpu
    default = _command(services["worker-default"])
    assert "-Q live,default,inference" in default


def test_gpu_worker_reserves_an_nvidia_gpu(compose: dict[str, Any]) -> None:
    devices = compose["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "deploy" not in compose["services"]["worker-default"]


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name in ("postgres", "redis", "web", "worker-gpu", "worker-default"):
        assert compose["services"][name].get("healthcheck", {}).get("test"), name
    assert "/healthz" in str(compose["services"]["web"]["healthcheck"]["test"])


def test_startup_order_waits_for_health_and_migrations(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("web", "worker-gpu", "worker-default"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
    assert "postgres-data" in compose["volumes"]


def test_secrets_come_from_the_environment_and_are_required(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    assert "${TAPESTRY_SECRET_KEY:?" in text and "${POSTGRES_PASSWORD:?" in text
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"SECRET|PASSWORD", key):
                assert str(value).startswith("${") and ":?" in str(value), (name, key)
    assert not re.search(r"postgresql\S*://\w+:(?!\$\{)[^@\s]+@", text), "hard-coded DB password"


def test_every_tapestry_variable_is_a_settings_field(compose: dict[str, Any]) -> None:
    fields = {name.upper() for name in Settings.model_fields}
    used = set()
    for service in compose["services"].values():
        used |= {k for k in (service.get("environment") or {}) if k.startswith("TAPESTRY_")}
    used |= set(re.findall(r"\bTAPESTRY_[A-Z_]+", (REPO / "Dockerfile").read_text()))
    assert used, "expected TAPESTRY_* settings in the compose file"
    unknown = sorted(v for v in used if v.removeprefix("TAPESTRY_") not in fields)
    assert not unknown, f"not Settings fields: {unknown}"


def test_dockerfile_installs_the_project_and_serves_the_factory() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'pip install ".[demo]"' in dockerfile  # not editable: assets ship in the wheel
    assert "app.main:create_app" in dockerfile and "--factory" in dockerfile
    for path in ("app", "worker", "contract", "migrations", "templates", "static", "alembic.ini"):
        assert path in dockerfile
