"""The tracking store: experiments, runs and the model registry, in SQL (SQLite or PostgreSQL).

Imports SQLAlchemy; ``import modelpack`` does not import this package.
"""
