"""Where the files that are not Python live: templates, static files, migrations, alembic.ini.

They sit at the repository root (the layout the project keeps), and ``app/_assets/`` holds
symbolic links to them. A source checkout or editable install follows the links; building a
wheel copies the files behind them into the package, so a plain ``pip install .`` finds them at
the same place, from any working directory.
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent / "_assets"


def asset_path(name: str) -> Path:
    """The real path of a bundled asset (``templates``, ``static``, ``migrations``, ...)."""
    path = (ASSETS_DIR / name).resolve()
    if not path.exists():
        raise FileNotFoundError(
            f"Tapestry's {name!r} is missing from {ASSETS_DIR}: the installation is incomplete "
            "(reinstall the package, or run from a full source checkout)"
        )
    return path
