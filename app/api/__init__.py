"""The versioned REST API under ``/api/v1``.

Each module exposes ``router``; see ``app.main.ROUTERS``.
"""
