"""Tapestry web application and domain: config, database, services, auth, web and API routes."""
