#!/usr/bin/env python
"""Load test of the scale-out configuration: 50 concurrent clients on tiles and API for 60 s.

Starts a fresh instance on the real PostgreSQL and Redis of this machine (a database of its own,
`ladder_load`, and Redis database 3), two web processes (`manage.py serve --no-worker`), imports a
real slide, and drives them with N client threads (keep-alive, round-robin over the web processes)
requesting a mix of deep-zoom tiles (70 %), DZI descriptors (10 %), slide metadata (10 %) and the
case list (10 %). Target: zero errors. Writes benchmarks/results/load.json.

    python benchmarks/load.py [--clients 50] [--seconds 60] [--slide PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
from analysis.core.slides.reader import DeepZoomGeometry  # noqa: E402

DEFAULT_SLIDE = PROJECT_ROOT.parent / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"
DATABASE_URL = os.environ.get("LOAD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ladder_load")
REDIS_URL = os.environ.get("LOAD_REDIS_URL", "redis://127.0.0.1:6379/3")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    if done.returncode:
        raise SystemExit(f"manage.py {' '.join(args[:2])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def fresh_database() -> None:
    import psycopg

    base, name = DATABASE_URL.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(["redis-cli", "-u", REDIS_URL, "flushdb"], capture_output=True)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--web", type=int, default=2, help="web processes")
    parser.add_argument("--slide", type=Path, default=DEFAULT_SLIDE)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "load.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ladder-load-"))
    env = {**os.environ, "LADDER_DATA_DIR": str(work / "data"), "DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL,
           "LADDER_SLIDE_ROOTS": str(args.slide.resolve().parent), "PYTHONUNBUFFERED": "1"}
    env.pop("LADDER_DB_PATH", None)
    fresh_database()
    manage(env, "migrate", "--noinput", "-v0")
    manage(env, "import_slides", "--case", "LOAD-1", "--stain", "he", str(args.slide))
    script = ("import json\nfrom django.contrib.auth.models import User\nfrom rest_framework.authtoken.models import Token\n"
              "from cases.models import Slide\nu = User.objects.create_user('load', password='load-not-secret-1')\n"
              "t, _ = Token.objects.get_or_create(user=u)\ns = Slide.objects.get(case__case_id='LOAD-1')\n"
              "print(json.dumps({'token': t.key, 'slide': s.pk, 'case': s.case_id, 'w': s.width, 'h': s.height}))")
    info = json.loads(manage(env, "shell", "-c", script).strip().splitlines()[-1])

    servers = []
    for _ in range(args.web):
        port = free_port()
        log = open(work / f"web-{port}.log", "w")
        process = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(port), "--no-worker"],
                                   cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        servers.append((process, f"http://127.0.0.1:{port}"))
    headers = {"Authorization": f"Token {info['token']}"}
    for process, url in servers:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/slides/{info['slide']}.dzi", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

    geometry = DeepZoomGeometry(width=info["w"], height=info["h"])
    levels = list(range(max(0, geometry.max_level - 5), geometry.max_level + 1))
    slide = info["slide"]

    def next_path(rng: random.Random) -> tuple[str, str]:
        roll = rng.random()
        if roll < 0.7:
            level = rng.choice(levels)
            cols, rows = geometry.tile_count(level)
            return "tile", f"/slides/{slide}_files/{level}/{rng.randrange(cols)}_{rng.randrange(rows)}.jpeg"
        if roll < 0.8:
            return "dzi", f"/slides/{slide}.dzi"
        if roll < 0.9:
            return "api_slide", f"/api/slides/{slide}/"
        return "api_cases", "/api/cases/"

    results: dict[str, list[float]] = {}
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + args.seconds

    def client(index: int) -> None:
        rng = random.Random(index)
        base = servers[index % len(servers)][1]
        local: dict[str, list[float]] = {}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as session:
            while time.monotonic() < stop_at:
                kind, path = next_path(rng)
                started = time.perf_counter()
                try:
                    response = session.get(path)
                    ok = response.status_code == 200
                    detail = f"{response.status_code} {path}"
                except httpx.HTTPError as exc:
                    ok, detail = False, f"{exc.__class__.__name__} {path}"
                elapsed = (time.perf_counter() - started) * 1000
                if ok:
                    local.setdefault(kind, []).append(elapsed)
                else:
                    with lock:
                        errors.append(detail)
        with lock:
            for kind, values in local.items():
                results.setdefault(kind, []).extend(values)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    duration = time.monotonic() - began
    for process, _ in servers:
        process.terminate()
        process.wait(timeout=20)

    every = [v for values in results.values() for v in values]
    report = {
        "benchmark": "load", "clients": args.clients, "seconds": round(duration, 1), "web_processes": args.web,
        "configuration": "scale-out: PostgreSQL + Redis (cache, channel layer), Daphne web processes",
        "slide": str(args.slide), "requests": len(every) + len(errors), "errors": len(errors),
        "error_samples": errors[:10], "throughput_rps": round((len(every) + len(errors)) / duration, 1),
        "latency_ms": {"p50": percentile(every, 50), "p95": percentile(every, 95)},
        "by_kind": {kind: {"n": len(v), "p50_ms": percentile(v, 50), "p95_ms": percentile(v, 95),
                           "mean_ms": statistics.fmean(v)} for kind, v in sorted(results.items())},
        "targets": {"errors": 0},
        "met": {"zero_errors": not errors},
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=float))
    print(json.dumps({k: report[k] for k in ("requests", "errors", "throughput_rps", "latency_ms")}, default=float))


if __name__ == "__main__":
    main()
