"""The `store` phase of bench/suite.py: the same host on its embedded SQLite store and
on Postgres (a private cluster started here, Debian's server, default durability:
fsync and synchronous commit on), one host on this machine either way.

Sync e2e: wrk at 16 and 64 connections, each run answered once stored. Async: wrk at
64 connections sending `mode: async` (answered 202 once the queued execution is
stored) for BENCH_SECS, then the wait until every accepted run has ended; accepted
runs / that whole time is the completion rate.
"""

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import suite

ASYNC_BODY = '{"input":{"name":"Ada"},"mode":"async"}'
SYNC_BODY = '{"input":{"name":"Ada"}}'


def pg_bin():
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise SystemExit("the store phase needs Postgres (scripts/setup installs Debian's postgresql)")
    return versions[-1].parent


def as_server_user(argv):
    """Postgres refuses to run as root: its programs run as `postgres` then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextlib.contextmanager
def pg_cluster():
    """A private cluster in a temporary directory on a free port; yields its URL base."""
    bin_dir = pg_bin()
    tmp = Path(tempfile.mkdtemp(prefix="warden-bench-pg-"))
    tmp.chmod(0o777)
    data = tmp / "data"
    port = suite.free_port()
    subprocess.run(as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "warden",
                                   "--auth=trust", "-E", "UTF8"]), check=True, capture_output=True)
    # TLS on offer (a self-signed certificate): rows say `sslmode` each.
    certs = tmp / "tls"
    certs.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(certs / "server.key"), "-out", str(certs / "server.crt")],
                   check=True, capture_output=True)
    (certs / "server.key").chmod(0o600)
    if os.geteuid() == 0:
        subprocess.run(["chown", "postgres", str(certs / "server.key")], check=True)
    options = (f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c max_connections=200 -c ssl=on "
               f"-c ssl_cert_file={certs / 'server.crt'} -c ssl_key_file={certs / 'server.key'}")
    subprocess.run(as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"),
                                   "-o", options, "-w", "start"]), check=True, capture_output=True)
    try:
        yield f"postgres://warden@127.0.0.1:{port}"
    finally:
        subprocess.run(as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                       capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def health(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/health", timeout=10) as r:
        return json.loads(r.read())


def serve(data, config_text):
    port = suite.free_port()
    cfg = Path(data) / "warden.toml"
    cfg.write_text(config_text)
    argv = [str(suite.WARDEN), "serve", "--data-dir", data, "--addr", f"127.0.0.1:{port}", "--config", str(cfg)]
    return argv, port


@contextlib.contextmanager
def one_host(config_text):
    """A host serving `config_text` on a data dir of its own, up: yields its port."""
    data = tempfile.mkdtemp(prefix="warden-bench-")
    argv, port = serve(data, config_text)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        suite.wait_up(f"http://127.0.0.1:{port}/admin/health", proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def async_load(name, config_text):
    """Accepts async runs for SECS at 64 connections, then waits for all to end."""
    with one_host(config_text) as port:
        url = f"http://127.0.0.1:{port}/v1/agents/echo/execute"
        env = dict(os.environ, BENCH_BODY=SYNC_BODY)
        subprocess.run(["wrk", "-t1", "-c4", "-d2s", "-s", str(suite.LOAD), url],
                       capture_output=True, env=env, check=True)
        began = time.monotonic()
        load = suite.wrk(url, 64, ASYNC_BODY)
        while True:
            h = health(port)["executions"]
            if h["running"] == 0 and h["waiting"] == 0:
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - began
        accepted = load["requests"] - load["errors"]
        row = {"name": name, "accept_rps": accepted / suite.SECS, "accepted": accepted,
               "refused": load["errors"], "complete_rps": accepted / elapsed, "drain_s": elapsed - suite.SECS,
               "accept_p50_ms": load["p50_ms"], "accept_p99_ms": load["p99_ms"]}
        print(f"{name:<28} async: {row['accept_rps']:.0f} accepted/s, {row['complete_rps']:.0f} completed/s "
              f"({accepted} runs, {row['refused']} refused, drained {row['drain_s']:.1f} s after)", flush=True)
        return row


def sync_load(name, config_text):
    data = tempfile.mkdtemp(prefix="warden-bench-")
    try:
        argv, port = serve(data, config_text)
        return suite.loaded(name, argv, f"http://127.0.0.1:{port}/admin/health",
                            f"http://127.0.0.1:{port}/v1/agents/echo/execute", SYNC_BODY)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def turns(name, config_text, n=200):
    """One conversation's sync turns of echo, one after another: each turn's time (ms),
    p50 and p99 (every turn placed after the one before, read from the store, and on
    Postgres claimed within echo's slots across the hosts)."""
    with one_host(config_text) as port:
        url = f"http://127.0.0.1:{port}/v1/agents/echo/execute"

        def turn(body):
            request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                             headers={"content-type": "application/json"})
            began = time.monotonic()
            with urllib.request.urlopen(request, timeout=30) as r:
                answer = json.loads(r.read())
            if answer.get("status") != "completed":
                raise SystemExit(f"{name}: a turn ended {answer}")
            return answer, (time.monotonic() - began) * 1000

        first, _ = turn({"input": {"name": "Ada"}, "conversation": True})
        conversation = first["conversation_id"]
        for _ in range(20):
            turn({"input": {"name": "Ada"}, "conversation_id": conversation})
        times = sorted(turn({"input": {"name": "Ada"}, "conversation_id": conversation})[1] for _ in range(n))
        row = {"name": name, "turns": n, "p50_ms": times[n // 2], "p99_ms": times[min(n - 1, n * 99 // 100)]}
        print(f"{name:<28} turns: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms ({n} in a row)",
              flush=True)
        return row


def claim_ms(url):
    """Queued to running (ms) of the runs stored at `url`: p50 and p99."""
    out = subprocess.run(
        ["psql", "-X", "-tA", "-F", " ", "-d", url, "-c",
         "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY started_at - queued_at),"
         " percentile_disc(0.99) WITHIN GROUP (ORDER BY started_at - queued_at)"
         " FROM executions WHERE started_at IS NOT NULL AND queued_at IS NOT NULL"],
        check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


@contextlib.contextmanager
def hosts(configs):
    """Hosts serving one config each (one database), every one up and serving the echo
    the first deployed; yields their ports and data dirs."""
    datas = [tempfile.mkdtemp(prefix="warden-bench-") for _ in configs]
    procs, ports = [], []
    try:
        for data, config in zip(datas, configs):
            argv, port = serve(data, config)
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            suite.wait_up(f"http://127.0.0.1:{port}/admin/health", procs[-1])
            ports.append(port)
        for port in ports[1:]:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/agents/echo", timeout=5)
                    break
                except OSError:
                    time.sleep(0.1)
        env = dict(os.environ, BENCH_BODY=SYNC_BODY)
        for port in ports:
            subprocess.run(["wrk", "-t1", "-c4", "-d2s", "-s", str(suite.LOAD),
                            f"http://127.0.0.1:{port}/v1/agents/echo/execute"],
                           capture_output=True, env=env, check=True)
        yield ports, datas
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=60)
        for data in datas:
            shutil.rmtree(data, ignore_errors=True)


def two_hosts(name, config_text, db_url):
    """Two hosts on one database, each loaded by its own wrk at 32 connections at once."""
    with hosts([config_text, config_text]) as (ports, _):
        urls = [f"http://127.0.0.1:{port}/v1/agents/echo/execute" for port in ports]
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(2) as pool:
            both = list(pool.map(lambda url: suite.wrk(url, 32, SYNC_BODY), urls))
        claim_p50, claim_p99 = claim_ms(db_url)
        row = {"name": name, "conns": 64, "rps": sum(x["rps"] for x in both),
               "p50_ms": max(x["p50_ms"] for x in both), "p99_ms": max(x["p99_ms"] for x in both),
               "errors": sum(x["errors"] for x in both), "claim_p50_ms": claim_p50, "claim_p99_ms": claim_p99}
        print(f"{name:<28} c=2x32 {row['rps']:>9.0f} runs/s  p50 {row['p50_ms']:.2f} ms  "
              f"p99 {row['p99_ms']:.2f} ms  errors {row['errors']}", flush=True)
        return row


def one_door(name, db_url):
    """Two hosts on one database, every run sent to the first (async, 64 connections),
    which runs 2 at a time (echo may run 3): the second claims from the shared queue
    what the first has no room for."""
    configs = [f'max_concurrent_executions = 2\n[store]\nurl = "{db_url}"\n', f'[store]\nurl = "{db_url}"\n']
    with hosts(configs) as (ports, datas):
        url = f"http://127.0.0.1:{ports[0]}/v1/agents/echo/execute"
        began = time.monotonic()
        load = suite.wrk(url, 64, ASYNC_BODY)
        while True:
            hs = [health(port)["executions"] for port in ports]
            if all(h["running"] == 0 and h["waiting"] == 0 for h in hs):
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - began
        accepted = load["requests"] - load["errors"]
        host_b = (Path(datas[1]) / "host-id").read_text().strip()
        out = subprocess.run(
            ["psql", "-X", "-tA", "-F", " ", "-d", db_url, "-c",
             f"SELECT count(*) FILTER (WHERE owner = '{host_b}'), count(*),"
             " percentile_disc(0.5) WITHIN GROUP (ORDER BY started_at - queued_at),"
             " percentile_disc(0.99) WITHIN GROUP (ORDER BY started_at - queued_at)"
             " FROM executions WHERE started_at IS NOT NULL"],
            check=True, capture_output=True, text=True).stdout.split()
        row = {"name": name, "accept_rps": accepted / suite.SECS, "complete_rps": accepted / elapsed,
               "share_b": float(out[0]) / max(float(out[1]), 1.0),
               "claim_p50_ms": float(out[2]), "claim_p99_ms": float(out[3])}
        print(f"{name:<28} async: {row['accept_rps']:.0f} accepted/s, {row['complete_rps']:.0f} completed/s, "
              f"{row['share_b']:.0%} run by the second host, queued to running p50 {row['claim_p50_ms']:.0f} ms "
              f"p99 {row['claim_p99_ms']:.0f} ms", flush=True)
        return row


def store():
    rows = {}
    with pg_cluster() as base:
        databases = iter(range(1000))

        def database():
            db = f"bench_{next(databases)}"
            subprocess.run(["psql", "-X", "-q", "-d", f"{base}/postgres", "-c", f"CREATE DATABASE {db}"],
                           check=True, capture_output=True)
            return f"{base}/{db}"

        def postgres(mode="disable"):
            return f'[store]\nurl = "{database()}?sslmode={mode}"\n'

        for backend, config in (("sqlite", lambda: ""), ("postgres", postgres),
                                ("postgres_tls", lambda: postgres("require"))):
            rows[backend] = {
                "sync": sync_load(f"{backend}, sync", config()),
                "async": async_load(f"{backend}, async", config()),
                "turns": turns(f"{backend}, turns", config()),
            }
        url = database() + "?sslmode=disable"
        rows["postgres_two_hosts"] = two_hosts("postgres, 2 hosts", f'[store]\nurl = "{url}"\n', url)
        rows["postgres_one_door"] = one_door("postgres, 2 hosts, 1 door", database() + "?sslmode=disable")
    return rows


def report(r):
    """BENCHMARKS.md lines for the phase's figures."""
    by = lambda rows, c: next(x for x in rows if x["conns"] == c)
    lines = [
        "## Storage: SQLite and Postgres",
        "",
        "One host, the echo agent, every run recorded; the same host on its embedded SQLite",
        "store and on Postgres (a private cluster of Debian's server on this machine, default",
        "durability: fsync and synchronous commit on; SQLite in WAL with `synchronous = NORMAL`).",
        "Async: wrk sends `mode: async` at 64 connections (each answered 202 once its queued",
        "record is stored), then the host finishes what it accepted; completed/s counts from",
        "the first request to the last run's end. On 2 cores the database server takes CPU from",
        "the host it serves: this measures overhead, not scale. On Postgres every execution",
        "goes through the shared queue: its `queued` record is committed before anything runs",
        "it, then a host claims it in a transaction (a lock, a count, a read, an update); the",
        "echo agent's `max_concurrency` (3, the default) holds across every host, counted in",
        "that transaction.",
        "",
        "| store | sync c=16 runs/s | p50 ms | sync c=64 runs/s | p50 ms | p99 ms | async accepted/s | completed/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {"sqlite": "sqlite", "postgres": "postgres", "postgres_tls": "postgres over TLS (`sslmode=require`)"}
    for backend in [b for b in names if b in r]:
        s, a = r[backend]["sync"], r[backend]["async"]
        c16, c64 = by(s, 16), by(s, 64)
        lines.append(f"| {names[backend]} | {c16['rps']:,.0f} | {c16['p50_ms']:.2f} | {c64['rps']:,.0f} | "
                     f"{c64['p50_ms']:.2f} | {c64['p99_ms']:.2f} | {a['accept_rps']:,.0f} | {a['complete_rps']:,.0f} |")
    if all("turns" in r[b] for b in ("sqlite", "postgres")):
        t = {b: r[b]["turns"] for b in ("sqlite", "postgres")}
        lines += ["", f"A conversation's turns, sync, one after another ({t['sqlite']['turns']} echo turns after 20): "
                  f"p50 {t['sqlite']['p50_ms']:.2f} ms, p99 {t['sqlite']['p99_ms']:.2f} ms on SQLite; "
                  f"p50 {t['postgres']['p50_ms']:.2f} ms, p99 {t['postgres']['p99_ms']:.2f} ms on Postgres, where a turn,",
                  "once the turns before it ended, is claimed on its host within its agent's slots on every host",
                  "(a claim transaction: the lock, the count, the update)."]
    if "postgres_tls" in r:
        plain, tls = by(r["postgres"]["sync"], 64)["rps"], by(r["postgres_tls"]["sync"], 64)["rps"]
        lines += ["", f"Over TLS (every connection of the host encrypted, rustls; the server's certificate not "
                  f"checked, as `require` does) the sync runs at 64 connections are {tls / plain:.2f}× the plain ones."]
    two = r["postgres_two_hosts"]
    lines += [
        "",
        f"Two hosts on the one Postgres, each loaded by its own wrk at 32 connections at once (64 in",
        f"all, on the same 2 cores): {two['rps']:,.0f} runs/s together, p50 {two['p50_ms']:.2f} ms and p99",
        f"{two['p99_ms']:.2f} ms (the slower host's), against {by(r['postgres']['sync'], 64)['rps']:,.0f} runs/s",
        "for one host at 64 connections. A second host adds its own runtime, pools and writer on",
        "the same cores, and the two share echo's 3 slots: a slot passes from one host to the",
        "other only once the run that held it has its end committed (a host reuses its own",
        "slots at once). Queued to running (the wait for a slot included):",
        f"p50 {two['claim_p50_ms']:.0f} ms, p99 {two['claim_p99_ms']:.0f} ms.",
        "",
    ]
    door = r.get("postgres_one_door")
    if door:
        lines += [
            "The shared queue: the same two hosts, every run sent to the first (async, 64",
            "connections) with `max_concurrent_executions = 2` there (echo may run 3), so the second claims what",
            f"the first has no room for: {door['accept_rps']:,.0f} accepted/s, {door['complete_rps']:,.0f} completed/s,",
            f"{door['share_b']:.0%} run by the second host; queued to running p50 {door['claim_p50_ms']:.0f} ms,",
            f"p99 {door['claim_p99_ms']:.0f} ms (a backlog waits its turn for echo's 3 slots: queueing, not claiming).",
            "",
        ]
    return lines
