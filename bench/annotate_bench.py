"""Annotation-loop benchmark: the app under gunicorn, 50 simulated annotators over HTTP.

Run from the repository root:

    .venv/bin/python bench/annotate_bench.py [--comparisons 200000] [--annotators 50]
                                             [--seconds 60] [--workers 4] [--threads 1]

It drops and re-creates its own database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/prefdata_annbench), migrates it, loads two projects of
unlabelled comparisons (10k and --comparisons, overlap 3) and then:

1. measures the next-item call alone (lease + skip, one annotator, median of 200) on both
   projects: `next_ms_10k`, `next_ms_200k`;
2. starts gunicorn with production settings, and drives --annotators clients, each a real
   HTTP session with its own login, doing what the browser does: GET the pair fragment
   (htmx), POST the answer to the submit URL in it. Phase 1 (paced): one pair per second
   per annotator, for --seconds; phase 2 (saturation): no pauses, for --seconds;
3. checks the database: no comparison with more than 3 human judgements or two from one
   person (duplicates), and exactly one judgement per accepted submission (none lost or
   doubled).

Last line: `annotate_p95_ms=N annotate_p50_ms=M max_pairs_per_s=T errors=E duplicates=D`
(latency of the GET + POST round trip in the paced phase; throughput in the saturation
phase), after a line `next_ms_10k=A next_ms_200k=B`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/prefdata_annbench"
PASSWORD = "bench-password-1"
SUBMIT_URL = re.compile(r"/projects/[\w-]+/label/([0-9a-f-]{36})/submit/")
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def _database_reset(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _django_setup(url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    os.environ["DATABASE_URL"] = url
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _load(slug: str, n: int, workdir: Path, overlap: int = 3):
    from annotation.models import Project
    from annotation.services.importing import pairs_import
    from annotation.services.projects import project_create

    path = workdir / f"{slug}.jsonl"
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(
                f'{{"prompt": "Question {i}: which answer is better?", '
                f'"responses": ["First answer to {i}, short.", "Second answer to {i}, a bit longer."]}}\n'
            )
    project = project_create(slug=slug, name=slug)
    Project.objects.filter(pk=project.pk).update(overlap=overlap)
    started = time.perf_counter()
    result = pairs_import(project=project, path=path, source_name=f"import:{path.name}")
    print(
        f"loaded {slug}: {result.comparisons_created:,} comparisons in {time.perf_counter() - started:.1f} s"
    )
    project.refresh_from_db()
    return project


def _annotators(projects, n: int) -> list[str]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    from annotation.models import Membership

    User = get_user_model()
    # The server runs production settings, whose hashers the test settings lack: hash the
    # password with production's default (PBKDF2) so that the logins are real.
    hasher = PBKDF2PasswordHasher()
    password = hasher.encode(PASSWORD, hasher.salt())
    names = []
    for i in range(n):
        user = User.objects.create(username=f"bench{i}", password=password)
        for project in projects:
            Membership.objects.create(project=project, user=user, role=Membership.Role.ANNOTATOR)
        names.append(user.username)
    return names


def _next_ms(project, username: str) -> float:
    from django.contrib.auth import get_user_model

    from annotation.services.queue import assignment_next_for, assignment_skip

    user = get_user_model().objects.get(username=username)
    times = []
    for _ in range(200):
        started = time.perf_counter()
        assignment = assignment_next_for(annotator=user, project=project)
        times.append((time.perf_counter() - started) * 1000)
        assignment_skip(assignment=assignment, annotator=user)
    return statistics.median(times)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gunicorn(url: str, port: int, workers: int, threads: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "bench-only-secret-key-0123456789abcdef",
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/10",
        "DJANGO_SECURE_COOKIES": "false",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}",
             "-w", str(workers), "-k", "gthread", "--threads", str(threads),
             "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"gunicorn did not start:\n{log.read_text()[-3000:]}")


class Annotator:
    def __init__(self, base: str, slug: str, username: str) -> None:
        self.base, self.slug, self.username = base, slug, username
        self.session = None
        self.headers: dict[str, str] = {}
        self.current: str | None = None
        self.accepted = 0

    async def login(self, aiohttp) -> None:
        # unsafe=True: keep cookies from an IP-address host (127.0.0.1).
        self.session = aiohttp.ClientSession(
            base_url=self.base, cookie_jar=aiohttp.CookieJar(unsafe=True)
        )
        async with self.session.get("/accounts/login/") as r:
            token = CSRF_INPUT.search(await r.text()).group(1)
        form = {"username": self.username, "password": PASSWORD, "csrfmiddlewaretoken": token}
        async with self.session.post("/accounts/login/", data=form, allow_redirects=False) as r:
            if r.status != 302:
                raise RuntimeError(f"login failed for {self.username}: {r.status}")
        cookies = self.session.cookie_jar.filter_cookies(aiohttp.client.URL(self.base))
        self.headers = {"HX-Request": "true", "X-CSRFToken": cookies["csrftoken"].value}

    async def _fragment(self, url: str) -> str | None:
        """GET a pair fragment; the key of the pair in it, or None when the queue is empty."""
        async with self.session.get(url, headers=self.headers) as r:
            body = await r.text()
            if r.status != 200:
                raise RuntimeError(f"GET {url}: {r.status}")
        match = SUBMIT_URL.search(body)
        return match.group(1) if match else None

    async def one_pair(self) -> bool:
        """What the page does per pair: fetch the next pair (the prefetch, which leases it)
        and save the answer to the one on screen (the server sends back the counters only).
        False when the queue is empty."""
        base = f"/projects/{self.slug}/label/"
        if self.current is None:
            self.current = await self._fragment(base)
            if self.current is None:
                return False
        following = await self._fragment(f"{base}?prefetch={self.current}")
        form = {"choice": "left", "time_spent_ms": "1000", "next": "progress"}
        async with self.session.post(
            f"{base}{self.current}/submit/", data=form, headers=self.headers
        ) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"POST answer: {r.status}")
        self.accepted += 1
        self.current = following
        return True


async def _phase(annotators, seconds: float, pause: float) -> tuple[list[float], int, int]:
    latencies: list[float] = []
    errors = 0
    done = 0
    deadline = time.monotonic() + seconds

    async def run(a: Annotator) -> None:
        nonlocal errors, done
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                if not await a.one_pair():
                    return
            except Exception as exc:  # counted, and the client goes on
                errors += 1
                if errors <= 5:
                    print(f"error ({a.username}): {exc}")
                await asyncio.sleep(0.2)
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            done += 1
            if pause:
                await asyncio.sleep(max(0.0, pause - (time.perf_counter() - started)))

    started = time.monotonic()
    await asyncio.gather(*(run(a) for a in annotators))
    elapsed = time.monotonic() - started
    return latencies, errors, int(done / elapsed) if elapsed else 0


async def _drive(base: str, slug: str, usernames: list[str], seconds: float):
    import aiohttp

    annotators = [Annotator(base, slug, u) for u in usernames]
    try:
        await asyncio.gather(*(a.login(aiohttp) for a in annotators))
        paced, errors_1, _ = await _phase(annotators, seconds, pause=1.0)
        saturated, errors_2, per_s = await _phase(annotators, seconds, pause=0.0)
    finally:
        await asyncio.gather(*(a.session.close() for a in annotators if a.session))
    return paced, saturated, errors_1 + errors_2, per_s, sum(a.accepted for a in annotators)


def _check(project, accepted: int) -> tuple[int, int]:
    from django.db.models import Count

    from annotation.models import Comparison, Judgement

    human = Judgement.objects.filter(comparison__project=project, source_kind="human")
    over = Comparison.objects.filter(
        project=project, human_judgement_count__gt=project.overlap
    ).count()
    over += (
        human.values("comparison_id").annotate(n=Count("id")).filter(n__gt=project.overlap).count()
    )
    twice = human.values("comparison_id", "user_id").annotate(n=Count("id")).filter(n__gt=1).count()
    lost_or_doubled = abs(human.count() - accepted)
    print(
        f"judgements={human.count():,} accepted_submissions={accepted:,} over_k={over} same_person_twice={twice}"
    )
    return over + twice, lost_or_doubled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comparisons", type=int, default=200_000)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    _database_reset(url)
    _django_setup(url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    workdir = Path(tempfile.mkdtemp(prefix="annbench-"))
    small = _load("bench-10k", 10_000, workdir)
    big = _load("bench-big", args.comparisons, workdir)
    # Fresh tables have no statistics (and autovacuum may be off): give the planner some.
    subprocess.run(["psql", url, "-qc", "ANALYZE"], check=True)
    names = _annotators([small, big], args.annotators + 2)
    next_10k = _next_ms(small, names[-1])
    next_big = _next_ms(big, names[-2])
    print(f"next_ms_10k={next_10k:.2f} next_ms_200k={next_big:.2f}")

    port = _free_port()
    server = _gunicorn(url, port, args.workers, args.threads, workdir / "gunicorn.log")
    try:
        paced, saturated, errors, per_s, accepted = asyncio.run(
            _drive(f"http://127.0.0.1:{port}", big.slug, names[: args.annotators], args.seconds)
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    duplicates, lost = _check(big, accepted)
    q = statistics.quantiles(paced, n=100) if len(paced) > 1 else [0.0] * 99
    print(
        f"paced: {len(paced):,} pairs; saturation: {len(saturated):,} pairs, {per_s} pairs/s; lost_or_doubled={lost}"
    )
    print(
        f"annotate_p95_ms={q[94]:.1f} annotate_p50_ms={statistics.median(paced):.1f} "
        f"max_pairs_per_s={per_s} errors={errors + lost} duplicates={duplicates}"
    )


if __name__ == "__main__":
    main()
