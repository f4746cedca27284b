"""The self-contained demo: bundled ticket data, seeding, and a supervisor for web + worker."""
