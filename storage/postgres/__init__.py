"""The PostgreSQL store (PostgreSQL 15, psycopg 3 and psycopg_pool): the shared SQL
operations (storage/sql/) through a connection pool in worker threads, the same
recorded migrations in PostgreSQL's dialect."""

from .store import PostgresStore

__all__ = ["PostgresStore"]
