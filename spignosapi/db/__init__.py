"""The database backend named by the settings' ENGINE when PostgreSQL connections are pooled (see base.py)."""
