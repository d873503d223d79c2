"""Alembic's environment and revisions, shipped with the package so that an
installed Sluice (a wheel, no checkout) can still run `flask --app webapp db upgrade`."""
