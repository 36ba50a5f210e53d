"""Fast inserts: COPY with ids taken from the sequence on PostgreSQL, bulk_create elsewhere.

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
    defaults = _column_defaults(model, columns)
    if connection.vendor == "postgresql":
        return _copy_insert(model, columns, rows, defaults)
    fields = [model._meta.get_field(c) for c in columns]
    names = [f.attname for f in fields]
    objs = [model(**dict(zip(names, row, strict=True))) for row in rows]
    model.objects.bulk_create(objs, batch_size=2000)
    return [obj.pk for obj in objs]


def _copy_insert(
    model: type[models.Model],
    columns: Sequence[str],
    rows: list[tuple],
    defaults: dict[str, Any],
) -> list[int]:
    table = model._meta.db_table
    fields = [model._meta.get_field(c) for c in columns]
    json_at = [i for i, f in enumerate(fields) if isinstance(f, models.JSONField)]
    extra_cols = list(defaults)
    extra_vals = tuple(
        orjson.dumps(v).decode() if isinstance(v, dict | list) else v for v in defaults.values()
    )
    cols = ", ".join(
        connection.ops.quote_name(c) for c in ["id", *[f.column for f in fields], *extra_cols]
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [table, len(rows)],
        )
        ids = [r[0] for r in cursor.fetchall()]
        with cursor.cursor.copy(
            f"COPY {connection.ops.quote_name(table)} ({cols}) FROM STDIN"
        ) as copy:
            for pk, row in zip(ids, rows, strict=True):
                if json_at:
                    row = list(row)
                    for i in json_at:
                        if row[i] is not None:
                            row[i] = orjson.dumps(row[i]).decode()
                copy.write_row((pk, *row, *extra_vals))
    return ids
