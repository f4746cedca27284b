"""Server-rendered pages (Jinja2 + htmx).

Each module exposes ``router``; see ``app.main.ROUTERS``.
"""
