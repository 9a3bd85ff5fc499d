"""A PostgreSQL schema of its own for a test: created on the machine's server, dropped afterwards.

The server and database come from ``DEPTCAST_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/test``).
"""

import os
import secrets
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import quote

import psycopg

BASE_URL = os.environ.get("DEPTCAST_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def schema_url(schema: str) -> str:
    """The URL whose connections use ``schema`` as their search path.

    :rtype: str
    """
    sep = "&" if "?" in BASE_URL else "?"
    return f"{BASE_URL}{sep}options={quote(f'-c search_path={schema}')}"


@contextmanager
def pg_schema(prefix: str = "deptcast_test") -> Iterator[str]:
    """Create a fresh schema, yield its URL, drop it with everything in it.

    :rtype: Iterator[str]
    """
    schema = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(BASE_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema_url(schema)
    finally:
        with psycopg.connect(BASE_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
