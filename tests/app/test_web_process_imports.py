"""The web process never imports torch, transformers or peft (it must start fast and stay small)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_app_main_and_its_routes_do_not_import_the_ml_stack(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import secrets
        import sys
        from app.config import Settings
        from app.main import create_app
        create_app(Settings(data_dir={str(tmp_path)!r}, secret_key=secrets.token_urlsafe(48)))
        import app.cli  # the CLI module is imported by `tapestry serve` too
        heavy = sorted(m for m in ("torch", "transformers", "peft") if m in sys.modules)
        print(",".join(heavy) or "clean")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean", f"imported: {result.stdout.strip()}"
