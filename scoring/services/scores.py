"""Scores: a model version's P(A > B) (ensemble mean and spread) for every comparison of the
project's modality (text, or image or audio pairs: prompt text vectors with the
candidates' media vectors)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import connection, connections, transaction

from annotation.models import Candidate, Comparison, Prompt
from core.exceptions import ApplicationError
from scoring.models import Embedding, ModelVersion, Score
from scoring.selectors import EmbeddingsMissing
from scoring.services.embeddings import PairEncoders, embeddings_compute_project, pair_encoders
from scoring.train import ensemble_load, ensemble_score, ensemble_score_indexed, fast_dtype
from scoring.transformer import transformer_load

# Comparisons scored (and their vectors loaded) per round. Rounds of 10,000-12,500 overlap
# reading with scoring best on 2 cores (100k: 3.9-4.5 s; 25,000: 4.6 s; 50,000: 5.1 s;
# 5,000: 4.6-5.0 s; docs/benchmarks.md).
SCORE_CHUNK = 12_500
TRANSFORMER_SCORE_CHUNK = 2_000  # comparisons (with their texts) a transformer scores per round


def scores_compute(*, version: ModelVersion) -> int:
    """P(A > B) (ensemble mean and spread) of `version` for every comparison of its
    project's modality (`project_modality`); return how many were written. Idempotent: rows are upserted on (comparison,
    model version), so scoring again overwrites them.

    Per round of SCORE_CHUNK comparisons: one query reads the comparisons with their three
    vectors, the heads run once per distinct (prompt, response) in bfloat16 where the CPU
    has it natively (`fast_dtype`), and one statement upserts the scores; the next round is
    read meanwhile on a second connection (`_prefetcher`). Contents without a vector are
    embedded first (`embeddings_compute_project`), then the round is read again."""
    if not version.artifact:
        raise ApplicationError(f"Model version #{version.pk} has no trained model to score with.")
    if version.kind == ModelVersion.Kind.TRANSFORMER:
        return _scores_compute_transformer(version)
    with version.artifact.open("rb") as fh:
        ensemble = ensemble_load(io.BytesIO(fh.read()))
    dtype = fast_dtype(next(ensemble.parameters()).device)
    encoders = pair_encoders(project=version.project)

    def read(after_id: int) -> _ScoreChunk | None:
        return _score_chunk_read(version.project_id, encoders, after_id, SCORE_CHUNK)

    written, last_id, embedded = 0, 0, False
    with _prefetcher() as prefetch:
        pending = prefetch(read, last_id)
        while chunk := pending.result():
            if chunk.missing:
                if embedded:  # embedded already, still missing: the encoder wrote nothing
                    raise EmbeddingsMissing(
                        f"{chunk.missing:,} contents of project #{version.project_id} have no "
                        f"{encoders.response.version} vector after embedding them."
                    )
                embeddings_compute_project(project=version.project)
                embedded = True
                pending = prefetch(read, last_id)  # the same round again, with its vectors
                continue
            last_id = int(chunk.ids.max())
            # The next round is read (mostly PostgreSQL's time) while this one is scored
            # and written (mostly ours).
            pending = prefetch(read, last_id)
            p_a, spread = _chunk_score(ensemble, chunk, dtype)
            written += _scores_write(chunk.ids, version.pk, p_a, spread)
    return written


# ---------------------------------------------------------------- scoring, helpers


@contextmanager
def _prefetcher() -> Iterator[Callable[..., Future]]:
    """`prefetch(fn, *args)` -> a Future of `fn(*args)`, run in one background thread with
    its own database connection (closed at the end) on PostgreSQL outside a transaction.
    Inside a transaction another connection would not see its rows: there the call runs
    at once, in this thread."""
    if connection.in_atomic_block:

        def now(fn: Callable, *args) -> Future:
            future: Future = Future()
            try:
                future.set_result(fn(*args))
            except Exception as exc:
                future.set_exception(exc)
            return future

        yield now
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scores-read") as pool:
        try:
            yield pool.submit
        finally:
            # Connections are per thread: run there, this closes the reader thread's own.
            pool.submit(connections.close_all).result()


@dataclass
class _ScoreChunk:
    """A round of comparisons to score: ids (N,); prompt, A and B vectors, each (N, dim)
    float32; how many of the round's contents have no vector; and, where responses repeat
    enough to be worth it, `distinct`: (first, inverse) of the distinct (prompt, response)
    rows among the 2N (A rows, then B rows)."""

    ids: np.ndarray
    prompt: np.ndarray
    a: np.ndarray
    b: np.ndarray
    missing: int
    distinct: tuple[np.ndarray, np.ndarray] | None = None


# Score the distinct (prompt, response) rows only when they are at most this share of all.
DISTINCT_SHARE = 0.9


def _chunk_score(ensemble, chunk: _ScoreChunk, dtype) -> tuple[np.ndarray, np.ndarray]:
    """P(A > B) mean and spread of a round, each distinct (prompt, response) row once."""
    if chunk.distinct is None:
        return ensemble_score(ensemble, chunk.prompt, chunk.a, chunk.b, dtype=dtype)
    first, inverse = chunk.distinct
    n = len(chunk.ids)
    from_a = first < n
    responses = np.empty((len(first), chunk.a.shape[1]), dtype=np.float32)
    responses[from_a] = chunk.a[first[from_a]]
    responses[~from_a] = chunk.b[first[~from_a] - n]
    return ensemble_score_indexed(
        ensemble,
        chunk.prompt[first % n],
        responses,
        inverse[:n],
        inverse[n:],
        dtype=dtype,
    )


def _score_chunk_read(
    project_id: int, encoders: PairEncoders, after_id: int, limit: int
) -> _ScoreChunk | None:
    """The next `limit` comparisons of the project's modality with id > after_id, by id:
    prompt vectors of the prompt encoder, A and B vectors of the response encoder."""
    import psycopg

    c, p, cand, e = (
        Comparison._meta.db_table,
        Prompt._meta.db_table,
        Candidate._meta.db_table,
        Embedding._meta.db_table,
    )
    # One statement: the comparisons, each side's (prompt, candidate) ids, and the three
    # vectors (NULL where missing). Results in binary: bytea comes back as raw bytes.
    query = (
        f"SELECT c.id, c.prompt_id, c.candidate_a_id, c.candidate_b_id, "
        f"ep.dtype, ep.vector, ea.dtype, ea.vector, eb.dtype, eb.vector "
        f"FROM (SELECT id, prompt_id, candidate_a_id, candidate_b_id FROM {c} "
        f"      WHERE project_id = %s AND id > %s ORDER BY id LIMIT %s) c "
        f"JOIN {p} p ON p.id = c.prompt_id "
        f"JOIN {cand} ca ON ca.id = c.candidate_a_id AND ca.kind = %s "
        f"JOIN {cand} cb ON cb.id = c.candidate_b_id AND cb.kind = %s "
        f"LEFT JOIN {e} ep ON ep.content_hash = p.content_hash AND ep.encoder = %s "
        f"LEFT JOIN {e} ea ON ea.content_hash = ca.content_hash AND ea.encoder = %s "
        f"LEFT JOIN {e} eb ON eb.content_hash = cb.content_hash AND eb.encoder = %s"
    )  # no ORDER BY: sorting 2 KB rows spills to disk; the ids are sorted in numpy instead
    kind = encoders.modality
    params = [project_id, after_id, limit, kind, kind, encoders.prompt.version]
    params += [encoders.response.version] * 2
    connection.ensure_connection()
    # SET LOCAL needs a transaction: the JIT compiler costs ~0.1 s a round and gains
    # nothing on index look-ups and hash joins.
    with transaction.atomic(), psycopg.Cursor(connection.connection) as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(query, params, binary=True)
        rows = cursor.fetchall()
        if not rows:
            # The window held only other kinds' comparisons: step over it, or stop.
            cursor.execute(
                f"SELECT max(id) FROM (SELECT id FROM {c} WHERE project_id = %s AND id > %s "
                f"ORDER BY id LIMIT %s) w",
                [project_id, after_id, limit],
            )
            last = cursor.fetchone()[0]
            if last is None:
                return None
            return _score_chunk_read(project_id, encoders, last, limit)
    ids, prompt_ids, a_ids, b_ids, p_dt, p_vec, a_dt, a_vec, b_dt, b_vec = zip(*rows, strict=True)
    return _score_chunk_build(
        np.array(ids, dtype=np.int64),
        np.array(prompt_ids, dtype=np.int64),
        np.array(a_ids, dtype=np.int64),
        np.array(b_ids, dtype=np.int64),
        (p_dt, p_vec),
        (a_dt, a_vec),
        (b_dt, b_vec),
        encoders.prompt.dim,
        encoders.response.dim,
    )


def _vectors_matrix(dtypes, vectors, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, dim) float32 from per-row (dtype, bytes); rows without a vector are NaN. Also the
    mask of missing rows."""
    n = len(vectors)
    missing = np.fromiter((v is None for v in vectors), dtype=bool, count=n)
    kinds = set(dtypes) - {None}
    if not missing.any() and len(kinds) == 1:  # the usual case: one join, one frombuffer
        raw = np.frombuffer(b"".join(vectors), dtype=np.dtype(kinds.pop()).newbyteorder("<"))
        return raw.reshape(n, dim).astype(np.float32), missing
    out = np.full((n, dim), np.nan, dtype=np.float32)
    for i, (dt, v) in enumerate(zip(dtypes, vectors, strict=True)):
        if v is not None:
            out[i] = np.frombuffer(v, dtype=np.dtype(dt).newbyteorder("<"))
    return out, missing


def _score_chunk_build(
    ids, prompt_ids, a_ids, b_ids, p_col, a_col, b_col, prompt_dim, dim
) -> _ScoreChunk:
    prompt, p_missing = _vectors_matrix(*p_col, prompt_dim)
    a, a_missing = _vectors_matrix(*a_col, dim)
    b, b_missing = _vectors_matrix(*b_col, dim)
    chunk = _ScoreChunk(ids, prompt, a, b, int(p_missing.sum() + a_missing.sum() + b_missing.sum()))
    # Distinct (prompt, candidate) rows: a response compared several times (rankings,
    # overlapping pairs) need go through the heads once. Ids are positive and far below
    # 2**31 in practice: packed into one int64 key each, a 1-d unique is fast (a 2-d
    # `np.unique(axis=...)` sorts row views, about 50 times slower).
    n = len(ids)
    both_ids = np.concatenate([a_ids, b_ids])
    prompts_twice = np.concatenate([prompt_ids, prompt_ids])
    width = int(both_ids.max()) + 1
    if int(prompts_twice.max()) < (2**62) // width:
        _, first, inverse = np.unique(
            prompts_twice * width + both_ids, return_index=True, return_inverse=True
        )
    else:
        _, first, inverse = np.unique(
            np.stack([prompts_twice, both_ids], axis=1),
            axis=0,
            return_index=True,
            return_inverse=True,
        )
    if len(first) <= DISTINCT_SHARE * 2 * n:
        chunk.distinct = (first, inverse.reshape(-1))
    return chunk


def _scores_write(ids: np.ndarray, version_id: int, p_a: np.ndarray, spread: np.ndarray) -> int:
    """Upsert (comparison, version) scores in one statement; return the rows written."""
    # In comparison order, so that two writers of the same rows cannot deadlock.
    order = np.argsort(ids, kind="stable")
    ids, p_a, spread = ids[order], p_a[order], spread[order]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Score._meta.db_table} (comparison_id, model_version_id, p_a, spread) "
            "SELECT k.c, %s, k.p, k.s FROM unnest(%s::bigint[], %s::float8[], %s::float8[]) "
            "AS k(c, p, s) "
            "ON CONFLICT (comparison_id, model_version_id) "
            "DO UPDATE SET p_a = EXCLUDED.p_a, spread = EXCLUDED.spread",
            # Array literals as text: PostgreSQL parses them in C; psycopg would adapt
            # 3 x N Python numbers one by one.
            [version_id, _array_text(ids), _array_text(p_a), _array_text(spread)],
        )
        return cursor.rowcount


def _array_text(values: np.ndarray) -> str:
    """A PostgreSQL array literal of numbers: '{1,2.5,...}' (float32 values exactly, as the
    shortest decimal that reads back as the same double)."""
    return "{" + ",".join(map(repr, values.tolist())) + "}"


def _scores_compute_transformer(version: ModelVersion) -> int:
    """Score every text comparison with a fine-tuned transformer: P(A > B) =
    sigmoid(r(prompt, a) - r(prompt, b)); one model, so the spread is 0."""
    with version.artifact.open("rb") as fh:
        rm = transformer_load(fh.read(), device=settings.SCORING_DEVICE)
    comparisons = Comparison.objects.filter(
        project_id=version.project_id,
        candidate_a__kind=Candidate.Kind.TEXT,
        candidate_b__kind=Candidate.Kind.TEXT,
    ).order_by("id")
    written, last_id = 0, 0
    while rows := list(
        comparisons.filter(id__gt=last_id).values_list(
            "id", "prompt__text", "candidate_a__text", "candidate_b__text"
        )[:TRANSFORMER_SCORE_CHUNK]
    ):
        ids, prompts, texts_a, texts_b = zip(*rows, strict=True)
        r_a = rm.score(prompts, texts_a).astype(np.float64)
        r_b = rm.score(prompts, texts_b).astype(np.float64)
        p_a = 1.0 / (1.0 + np.exp(-(r_a - r_b)))
        _scores_write(np.asarray(ids, dtype=np.int64), version.pk, p_a, np.zeros(len(ids)))
        written += len(rows)
        last_id = ids[-1]
    return written
