"""Security primitives: password hashing, the signed session, CSRF, API tokens, headers, limits.

Nothing here touches the database; :mod:`app.deps` combines these with the models into the one
access-control dependency that routes declare.
"""
