"""Fast inserts: COPY with ids taken from the table's sequence.

The importer needs the ids of the rows it creates (foreign keys of the next table) without
a query per row; taking a block of ids from the sequence and COPYing the rows with them is
the fastest way PostgreSQL offers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from django.db import connection, models
from django.utils import timezone


def _column_defaults(model: type[models.Model], given: Sequence[str]) -> dict[str, Any]:
    now = timezone.now()
    defaults: dict[str, Any] = {}
    for f in model._meta.concrete_fields:
        if f.primary_key or f.name in given or f.attname in given:
            continue
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            defaults[f.column] = now
        elif f.has_default():
            defaults[f.column] = f.get_default()
        elif f.null:
            defaults[f.column] = None
        elif isinstance(f, models.FileField | models.CharField | models.TextField):
            defaults[f.column] = ""
        else:
            raise ValueError(f"{model.__name__}.{f.name} needs a value")
    return defaults


def rows_insert(model: type[models.Model], columns: Sequence[str], rows: list[tuple]) -> list[int]:
    """Insert `rows` (values for `columns`, by attname) and return their new ids, in order."""
    if not rows:
        return []
    return _copy_insert(model, columns, rows, _column_defaults(model, columns))


def _copy_insert(
    model: type[models.Model],
    columns: Sequence[str],
    rows: list[tuple],
    defaults: dict[str, Any],
) -> list[int]:
    table = model._meta.db_table
    fields = [model._meta.get_field(c) for c in columns]
    json_at = [i for i, f in enumerate(fields) if isinstance(f, models.JSONField)]
    cols = ", ".join(
        connection.ops.quote_name(c) for c in ["id", *[f.column for f in fields], *defaults]
    )
    with connection.cursor() as cursor:
        # The sequence's name first: inside nextval(), pg_get_serial_sequence() would run
        # (a catalog look-up) once per row.
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
        (sequence,) = cursor.fetchone()
        cursor.execute(
            "SELECT nextval(%s::regclass) FROM generate_series(1, %s)", [sequence, len(rows)]
        )
        ids = [r[0] for r in cursor.fetchall()]
        with cursor.cursor.copy(
            f"COPY {connection.ops.quote_name(table)} ({cols}) FROM STDIN"
        ) as copy:
            # The defaults are the same on every row: render them as COPY text once (a
            # timestamp costs more to adapt than the rest of a row).
            tx = copy.formatter.transformer
            extra = tuple(_copy_text(v, tx) for v in defaults.values())
            write_row = copy.write_row
            if not json_at:
                for pk, row in zip(ids, rows, strict=True):
                    write_row((pk, *row, *extra))
                return ids
            dumps = orjson.dumps
            for pk, row in zip(ids, rows, strict=True):
                values = list(row)
                for i in json_at:
                    if values[i] is not None:
                        values[i] = dumps(values[i]).decode()
                write_row((pk, *values, *extra))
    return ids


def _copy_text(value: Any, transformer) -> str | None:
    """`value` as the text psycopg would send for it in a COPY row."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    from psycopg.adapt import PyFormat

    return bytes(transformer.get_dumper(value, PyFormat.TEXT).dump(value)).decode()
