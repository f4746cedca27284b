"""A wheel built from the repository installs into a fresh virtualenv and serves from anywhere.

Templates, static files, migrations, alembic.ini and the demo data must travel inside the wheel
(``app/_assets``): nothing may be looked up next to the source tree. The fresh virtualenv borrows
the test environment's third-party packages through a ``.pth`` path line (no network, no second
torch install); that line does not run the source tree's editable-install hook, so ``app`` and
``worker`` can only come from the wheel.
"""

from __future__ import annotations

import os
import shutil
import site
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("app", "worker", "contract", "templates", "static", "migrations", "alembic.ini",
           "pyproject.toml", "README.md")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _build_wheel(tmp: Path) -> Path:
    source = tmp / "source"
    source.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    dist = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist), str(source)], check=True, cwd=tmp)
    (wheel,) = dist.glob("tapestry-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    fresh_python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(fresh_python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True).stdout.strip()
    borrowed = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "borrowed-deps.pth").write_text("\n".join(borrowed) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(fresh_python), "install",
                    "--no-deps", "--no-index", "-q", str(wheel)], check=True)
    return venv


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_venv_and_serves_login_and_healthz(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    venv = _fresh_venv(tmp_path, wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "TAPESTRY_"))}
    env.update(TAPESTRY_DATA_DIR=str(elsewhere / "data"), PYTHONUNBUFFERED="1")

    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import app.assets, contract, worker; print(app.assets.asset_path('templates')); "
         "print(worker.__file__); print(contract.__file__)"],
        check=True, capture_output=True, text=True, cwd=elsewhere, env=env).stdout.split()
    assert all(path.startswith(str(venv)) for path in where), where
    assert not any(path.startswith(str(REPO)) for path in where), where

    # `tapestry demo` migrates (migrations from the wheel), seeds (the demo CSV from the wheel)
    # and serves (templates and static files from the wheel).
    port = _free_port()
    server = subprocess.Popen(
        [str(venv / "bin" / "tapestry"), "demo", "--no-worker", "--port", str(port)],
        cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read().decode()  # type: ignore[union-attr]
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the installed app did not start"
                time.sleep(0.2)
        assert health.status_code == 200
        assert health.json()["status"] == "ok", health.text
        login = httpx.get(f"{base}/login")
        assert login.status_code == 200
        assert 'name="csrf_token"' in login.text
        css = httpx.get(f"{base}/static/ui.css")
        assert css.status_code == 200 and css.text.strip()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_assets_resolve_to_the_repository_files_in_a_checkout() -> None:
    from app.assets import asset_path

    for name in ("templates", "static", "migrations", "alembic.ini"):
        assert asset_path(name) == (REPO / name).resolve()
    with pytest.raises(FileNotFoundError, match="installation is incomplete"):
        asset_path("no-such-asset")
