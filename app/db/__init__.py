"""Database: declarative base, models and session handling."""
