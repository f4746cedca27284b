"""The web process never imports numpy, torch, transformers, peft or the ML core (it must start
fast and stay small): it reaches the worker only through ``contract`` and the Celery app."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_web_app_loads_no_worker_module_numpy_or_torch(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import secrets
        import sys
        from app.config import Settings
        from app.main import create_app
        create_app(Settings(data_dir={str(tmp_path)!r}, secret_key=secrets.token_urlsafe(48)))
        import app.cli  # the CLI module is imported by `tapestry serve` too
        heavy = ("numpy", "torch", "transformers", "peft", "sklearn")
        ours = ("worker.ml", "worker.tasks")
        loaded = sorted(m for m in sys.modules
                        if m.partition(".")[0] in heavy or m.startswith(ours))
        print(",".join(loaded) or "clean")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean", f"imported: {result.stdout.strip()}"
