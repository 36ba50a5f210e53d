"""Import/export benchmark on PostgreSQL.

Run from the repository root:

    .venv/bin/python bench/import_bench.py [--rows 100000] [--export-rows 1000000]
                                           [--hh ../shared/data/hh-rlhf-harmless-sample.jsonl.gz]

It drops and re-creates its own database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/prefdata_bench), migrates it, then:

1. generates --rows synthetic TRL pairs (JSONL) and times pairs_import into a new project;
2. imports the hh-rlhf sample into another project;
3. times export_write (trl-jsonl) of the first project in this process;
4. builds a project of --export-rows pairs (imports of files of --rows pairs) and exports it to
   JSONL and to Parquet, each in a fresh subprocess that reports its own peak RSS (VmHWM).

The last line is `import_pairs_per_s=N export_rows_per_s=N peak_rss_mb=M` (the 100k TRL import;
the JSONL export of the big project).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/prefdata_bench"
SETTINGS = "config.settings.test"

# ---------------------------------------------------------------------------- data


# fmt: off
_SYLLABLES = [
    "ka", "ri", "to", "na", "me", "lo", "su", "pe", "di", "ra", "vo", "ne", "ti", "sa", "mu",
    "le", "ko", "ba", "fi", "ge", "hu", "ja", "pi", "zo", "wa", "ce", "dra", "str", "pla",
    "tion", "ment", "ing", "er", "al", "ous", "ive", "able", "ly", "ex", "con", "pro", "re",
    "un", "in",
]
# fmt: on
_EXTRA = ["café", "naïve", "Zürich", "数据", "😀", "—", "“quoted”", "x²", "e.g.", "i.e."]


def _vocabulary(rng: random.Random, size: int = 4000) -> list[str]:
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))))
    out = sorted(words)
    out += ["the", "a", "of", "to", "and", "is", "in", "that", "it", "for"] * 40
    return out + _EXTRA


def _pool(rng: random.Random, n_words: int = 600_000) -> str:
    """A long text of words, sentences and paragraphs; strings are slices of it."""
    vocab = _vocabulary(rng)
    parts = []
    sentence = 0
    for w in rng.choices(vocab, k=n_words):
        if sentence == 0:
            w = w.capitalize()
        sentence += 1
        parts.append(w)
        if sentence > 6 and rng.random() < 0.12:
            parts[-1] += "." if rng.random() < 0.85 else "?"
            sentence = 0
            if rng.random() < 0.1:
                parts[-1] += "\n\n"
    return " ".join(parts)


def trl_file_write(path: Path, rows: int, seed: int) -> None:
    """`rows` TRL pairs: prompt/chosen/rejected strings of 200-600 characters, varied.

    About a fifth of the rows reuse a recent prompt with new responses (as in datasets that
    hold several pairs per prompt); some carry a margin or an id.
    """
    import orjson

    rng = random.Random(seed)
    pool = _pool(rng)
    top = len(pool) - 700
    rand, randint = rng.random, rng.randint

    def text(tag: str) -> str:
        start = randint(0, top)
        return f"{tag} {pool[start : start + randint(200, 600)].strip()}"

    recent: list[str] = []
    with open(path, "wb") as fh:
        buf = []
        for i in range(rows):
            if recent and rand() < 0.2:
                prompt = recent[randint(0, len(recent) - 1)]
            else:
                prompt = text(f"[s{seed}:{i}]")
                recent.append(prompt)
                if len(recent) > 100:
                    recent.pop(0)
            row = {"prompt": prompt, "chosen": text(f"({i}a)"), "rejected": text(f"({i}b)")}
            r = rand()
            if r < 0.1:
                row["margin"] = round(rand() * 5, 3)
            elif r < 0.15:
                row["id"] = f"s{seed}-{i}"
            buf.append(orjson.dumps(row))
            if len(buf) >= 10_000:
                fh.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            fh.write(b"\n".join(buf) + b"\n")


# ---------------------------------------------------------------------------- database


def database_recreate(url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def django_setup(url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    os.environ["DATABASE_URL"] = url
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# ---------------------------------------------------------------------------- steps


def timed_import(project, path: Path, source: str, fmt: str = "auto"):
    from annotation.services.importing import pairs_import

    started = time.perf_counter()
    result = pairs_import(project=project, path=path, source_name=source, fmt=fmt)
    return result, time.perf_counter() - started


def export_in_subprocess(url: str, slug: str, fmt: str, out: Path) -> dict:
    """Run the export alone in a fresh process and read its peak RSS.

    The peak is the child's own VmHWM (/proc/self/status, read as it ends). Not ru_maxrss
    from wait4()/RUSAGE_CHILDREN: on Linux that starts from the parent's high-water mark
    at fork (it survives exec), so it would report this process's size (hundreds of MB
    after the imports), not the export's."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "DATABASE_URL": url}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-export", slug, fmt, str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, check=True)
    info = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    info["bytes"] = out.stat().st_size
    return info


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def child_export(slug: str, fmt: str, out: str) -> None:
    django_setup(os.environ["DATABASE_URL"])
    from annotation.models import Project
    from annotation.services.exporting import export_write

    project = Project.objects.get(slug=slug)
    started = time.perf_counter()
    n = export_write(project=project, fmt=fmt, out=Path(out))
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": n, "seconds": seconds, "peak_rss_mb": _peak_rss_mb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--export-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--hh", type=Path, default=ROOT.parent / "shared/data/hh-rlhf-harmless-sample.jsonl.gz"
    )
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--child-export", nargs=3, metavar=("SLUG", "FORMAT", "OUT"))
    args = parser.parse_args()
    if args.child_export:
        child_export(*args.child_export)
        return

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    print(f"database: {url} (dropped and re-created)")
    database_recreate(url)
    django_setup(url)
    from django.core.management import call_command

    from annotation.services.exporting import export_write
    from annotation.services.projects import project_create

    call_command("migrate", verbosity=0)

    with tempfile.TemporaryDirectory(prefix="prefdata-bench-") as tmp_dir:
        tmp = Path(tmp_dir)

        # 1. TRL import.
        started = time.perf_counter()
        trl = tmp / "trl-0.jsonl"
        trl_file_write(trl, args.rows, args.seed)
        print(
            f"generated {args.rows:,} TRL pairs ({trl.stat().st_size / 1e6:.0f} MB) "
            f"in {time.perf_counter() - started:.1f} s"
        )
        project = project_create(slug="bench-trl", name="bench TRL")
        result, seconds = timed_import(project, trl, f"import:{trl.name}")
        import_rate = args.rows / seconds
        print(
            f"import trl: {args.rows:,} rows in {seconds:.2f} s = {import_rate:,.0f} pairs/s "
            f"({result.comparisons_created:,} comparisons, {result.prompts_created:,} prompts, "
            f"{result.candidates_created:,} candidates, {result.judgements_created:,} labels)"
        )

        # 2. hh-rlhf import.
        if args.hh.is_file():
            hh_project = project_create(slug="bench-hh", name="bench hh-rlhf")
            result, seconds = timed_import(hh_project, args.hh, "import:hh-rlhf", fmt="hh-rlhf")
            print(
                f"import hh-rlhf: {result.rows:,} rows in {seconds:.2f} s = "
                f"{result.rows / seconds:,.0f} pairs/s ({result.comparisons_created:,} "
                f"comparisons, {result.duplicate_rows} duplicate rows)"
            )
        else:
            print(f"import hh-rlhf: skipped, no file at {args.hh}")

        # 3. In-process JSONL export of the TRL project.
        out = tmp / "trl.jsonl"
        started = time.perf_counter()
        n = export_write(project=project, fmt="trl-jsonl", out=out)
        seconds = time.perf_counter() - started
        print(
            f"export trl-jsonl ({n:,} rows, in process): {seconds:.2f} s = {n / seconds:,.0f} rows/s"
        )
        out.unlink()

        # 4. A big project, then exports in fresh processes.
        big = project_create(slug="bench-big", name="bench big")
        parts = -(-args.export_rows // args.rows)
        started = time.perf_counter()
        import_seconds = 0.0
        for i in range(parts):
            rows = min(args.rows, args.export_rows - i * args.rows)
            path = trl if (i == 0 and rows == args.rows) else tmp / f"trl-{i}.jsonl"
            if path != trl:
                trl_file_write(path, rows, args.seed + i)
            _, seconds = timed_import(big, path, f"import:{path.name}")
            import_seconds += seconds
            path.unlink()
        print(
            f"built the {args.export_rows:,}-pair project in {time.perf_counter() - started:.0f} s "
            f"({parts} files; import alone {args.export_rows / import_seconds:,.0f} pairs/s)"
        )
        exports = {}
        for fmt, name in (("trl-jsonl", "big.jsonl"), ("trl-parquet", "big.parquet")):
            info = export_in_subprocess(url, "bench-big", fmt, tmp / name)
            exports[fmt] = info
            print(
                f"export {fmt} ({info['rows']:,} rows, fresh process): {info['seconds']:.2f} s = "
                f"{info['rows'] / info['seconds']:,.0f} rows/s, peak RSS "
                f"{info['peak_rss_mb']:.0f} MB, file {info['bytes'] / 1e6:.0f} MB"
            )
            (tmp / name).unlink()

    jsonl = exports["trl-jsonl"]
    print(
        f"import_pairs_per_s={import_rate:.0f} "
        f"export_rows_per_s={jsonl['rows'] / jsonl['seconds']:.0f} "
        f"peak_rss_mb={jsonl['peak_rss_mb']:.0f}"
    )


if __name__ == "__main__":
    main()
