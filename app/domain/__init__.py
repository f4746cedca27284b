"""Domain services: the rules of Tapestry, independent of HTTP.

Functions take a SQLAlchemy ``Session`` and plain values, ``flush`` but never ``commit`` (the edge
owns the transaction), and raise :mod:`app.errors` domain errors, never ``HTTPException``.
"""
