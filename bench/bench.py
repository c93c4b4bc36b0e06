#!/usr/bin/env python3
"""Helpers of bench/run.sh (standard library only).

  start     start the service, time start-up until GET /readyz answers 200
  sql       write the pgbench scripts and EXPLAIN statements, taking the SQL
            text from src/repository/ so the scripts run exactly the
            service's statements
  http      run one wrk measurement and record it, with the service's
            resources (peak RSS, CPU and syscalls per request) and the
            database transactions per request
  pgbench   run one pgbench measurement and record it
  report    print the final table from the recorded results
"""

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

# Preloaded order n has id hex(T0_MS + n * 1000, 12 digits) + hex(n, 20 digits)
# and was created at T0_MS + n * 1000 ms: ids are time-ordered like the
# service's UUIDv7 ids, and any n in 1..N names an existing order. The same
# formula is in preload_pg.sql and preload_sqlite.sql.
T0_MS = 1704067200000  # 2024-01-01T00:00:00Z


def preload_id_sql(n):
    return (f"(lpad(to_hex({T0_MS}::bigint + {n}::bigint * 1000), 12, '0') "
            f"|| lpad(to_hex({n}::bigint), 20, '0'))::uuid")


# A fresh time-ordered id per pgbench transaction, from the transaction's
# clock and a random number; the same text twice in one transaction gives
# the same id (now() is the transaction's start).
NEW_ID_SQL = ("(lpad(to_hex(floor(extract(epoch FROM now()) * 1000)::bigint), 12, '0') "
              "|| lpad(to_hex(:r::bigint), 20, '0'))::uuid")


# ----------------------------------------------------------------- start

def cmd_start(args):
    env = dict(os.environ)
    log = open(args.log, "ab")
    t0 = time.perf_counter()
    proc = subprocess.Popen(args.command, env=env, stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = t0 + args.timeout
    status = None
    polls = 0
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            print(json.dumps({"pid": proc.pid, "error": f"exited with {proc.returncode}"}))
            return 1
        polls += 1
        try:
            conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=2)
            conn.request("GET", "/readyz")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                ready_ms = (time.perf_counter() - t0) * 1000
                print(json.dumps({"pid": proc.pid, "ready_ms": round(ready_ms, 2),
                                  "polls": polls}))
                return 0
        except OSError:
            pass
        time.sleep(0.0005)
    print(json.dumps({"pid": proc.pid, "error": f"not ready after {args.timeout}s "
                      f"(last status {status})"}))
    return 1


# ------------------------------------------------------------------- sql

def rust_string(literal_body):
    """The value of a Rust "..." literal's body: `\\` + newline + indentation
    disappears, `\\"` and `\\\\` unescape."""
    text = re.sub(r"\\\n\s*", "", literal_body)
    return text.replace('\\"', '"').replace("\\\\", "\\")


def const_str(source, name):
    m = re.search(r"const " + name + r": &str =\s*\"((?:[^\"\\]|\\.|\\\n)*)\";", source, re.S)
    if not m:
        raise SystemExit(f"bench: cannot find const {name} in the source")
    return rust_string(m.group(1))


def subst(sql, mapping):
    def repl(m):
        key = int(m.group(1))
        if key not in mapping:
            raise SystemExit(f"bench: no pgbench value for ${key} in {sql}")
        return mapping[key]
    return re.sub(r"\$(\d+)\b", repl, sql)


def cmd_sql(args):
    pg_rs = open(os.path.join(args.root, "src/repository/postgres.rs")).read()
    # The reads are put together by macros: the service's own code prints
    # them (examples/statements.rs).
    printed = subprocess.run(
        ["cargo", "run", "--quiet", "--release", "--locked", "--example", "statements"],
        cwd=args.root, check=True, capture_output=True, text=True).stdout
    statements = json.loads(printed)
    get = statements["GET"]
    create = const_str(pg_rs, "CREATE")
    lists = {"list": statements["LIST"], "list_nc": statements["LIST_NC"]}
    os.makedirs(args.out, exist_ok=True)
    scripts = {
        # $1 id, $2 owner, $3 created (a timestamptz), $4..$7 the item arrays.
        "create": "\\set r random(1, 1152921504606846975)\n" + subst(create, {
            1: NEW_ID_SQL, 2: ":owner", 3: "now()", 4: ":positions", 5: ":products",
            6: ":sizes", 7: ":quantities"}) + ";\n",
        # $1 id of an existing order, $2 owner.
        "get": "\\set i random(1, :orders)\n" + subst(get, {
            1: preload_id_sql(":i"), 2: ":owner"}) + ";\n",
    }
    for name, sql in lists.items():
        # $1 owner, $2 page size plus one (the service asks one more row to
        # know whether a next page exists).
        scripts[name] = subst(sql, {1: ":owner", 2: ":limit"}) + ";\n"
    for name, text in scripts.items():
        with open(os.path.join(args.out, f"{name}.sql"), "w") as f:
            f.write(text)
    # EXPLAIN of each statement as the service's prepared statements run it:
    # the plan cache decides between custom and generic plans after five
    # executions, so EXPLAIN the sixth. The generic plan follows, for the
    # record (the plan cache keeps re-planning when it costs more).
    # psql variable get_id: an existing order, whichever way it was made.
    get_id = ":'get_id'::uuid"
    with open(os.path.join(args.out, "explain.sql"), "w") as f:
        f.write(f"PREPARE get_order(uuid, text) AS {get};\n")
        for name, sql in lists.items():
            f.write(f"PREPARE {name}(text, int8) AS {sql};\n")
        f.write("\\o /dev/null\n")
        for _ in range(5):
            f.write(f"EXECUTE get_order({get_id}, 'test');\n")
            for name in lists:
                f.write(f"EXECUTE {name}('test', 11);\n")
        f.write("\\o\n")
        f.write(f"\\echo '--- GET /orders/{{id}} (6th execution of the prepared statement): {get}'\n")
        f.write(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE get_order({get_id}, 'test');\n")
        for name, sql in lists.items():
            label = {"list": "GET /orders?limit=10", "list_nc": "GET /orders?limit=10&cancelled=false"}[name]
            f.write(f"\\echo '--- {label} (6th execution): {sql}'\n".replace("'cancelled'", "''cancelled''"))
            f.write(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE {name}('test', 11);\n")
        f.write("SET plan_cache_mode = force_generic_plan;\n")
        for name in lists:
            f.write(f"\\echo '--- {name}: generic plan (not what runs while custom plans cost less)'\n")
            f.write(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE {name}('test', 11);\n")
    with open(os.path.join(args.out, "statements.txt"), "w") as f:
        f.write(f"CREATE: {create}\nGET: {get}\n")
        for name, sql in lists.items():
            f.write(f"{name.upper()}: {sql}\n")
    return 0


# ------------------------------------------------------------ measurements

def proc_snapshot(pid):
    snap = {}
    if not pid:
        return snap
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    snap[key] = int(value.split()[0])
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            # utime and stime (fields 14 and 15 of stat(5)), in clock ticks
            snap["cpu_ticks"] = int(fields[11]) + int(fields[12])
    except OSError:
        pass
    return snap


class CpuSampler:
    """Who used the CPU while a command ran: the service, PostgreSQL, the load
    generator (wrk or pgbench) and everything else (a build beside the
    benchmark shows up there). Samples every process's utime + stime four
    times a second so that processes ending before the command does
    (pgbench's server backends) still count, up to their last sample."""

    def __init__(self, service_pid):
        self.service_pid = service_pid
        self.tick = os.sysconf("SC_CLK_TCK")
        self.start = self._sample()
        self.last = dict(self.start)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _sample():
        ticks = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    head, _, tail = f.read().rpartition(")")
                fields = tail.split()
                # keyed by pid and start time (field 22), as pids are reused
                ticks[(int(entry), int(fields[19]))] = (head.split("(", 1)[1],
                                                        int(fields[11]) + int(fields[12]))
            except (OSError, IndexError, ValueError):
                continue
        return ticks

    @staticmethod
    def _machine():
        """(all jiffies, idle + iowait, steal) of the whole machine."""
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return sum(v), v[3] + v[4], v[7]

    def _run(self):
        while not self.stop.wait(0.25):
            self.last.update(self._sample())

    def __enter__(self):
        self.machine0 = self._machine()
        self.t0 = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.last.update(self._sample())
        total, idle, steal = self._machine()
        self.seconds = time.monotonic() - self.t0
        used = {"service": 0, "postgres": 0, "loadgen": 0, "other": 0}
        for (pid, _), (comm, ticks) in self.last.items():
            base = self.start.get((pid, _))
            delta = ticks - (base[1] if base else 0)
            if delta <= 0 or pid == os.getpid():
                continue
            if pid == self.service_pid:
                used["service"] += delta
            elif comm == "postgres":
                used["postgres"] += delta
            elif comm in ("wrk", "pgbench"):
                used["loadgen"] += delta
            else:
                used["other"] += delta
        self.cores = {k: v / self.tick / self.seconds for k, v in used.items()}
        # Busy share of the whole machine, from the kernel's own counters.
        jiffies = total - self.machine0[0]
        self.busy = 1 - (idle - self.machine0[1]) / jiffies if jiffies else 0
        # Time the hypervisor gave our virtual CPUs to someone else.
        self.steal = (steal - self.machine0[2]) / jiffies if jiffies else 0
        return False


def record(path, row):
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def cmd_http(args):
    before = proc_snapshot(args.pid)
    with CpuSampler(args.pid) as cpu:
        out = subprocess.run(args.command, capture_output=True, text=True)
    after = proc_snapshot(args.pid)
    sys.stderr.write(out.stderr)
    if args.raw:
        with open(args.raw, "a") as f:
            f.write(f"$ {' '.join(args.command)}\n{out.stdout}{out.stderr}\n")
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCHJSON ")), None)
    if line is None:
        sys.stderr.write(out.stdout)
        raise SystemExit(f"bench: wrk printed no result for {args.endpoint}")
    w = json.loads(line[len("BENCHJSON "):])
    if args.warmup:
        return 0
    requests = max(w["requests"], 1)
    errors = w["err_status"] + w["err_connect"] + w["err_read"] + w["err_write"] + w["err_timeout"]
    row = {
        "kind": "http", "mode": args.mode, "endpoint": args.endpoint, "orders": args.orders,
        "requests": w["requests"], "rps": w["requests"] / (w["duration_us"] / 1e6),
        "p50_ms": w["p50_us"] / 1000, "p99_ms": w["p99_us"] / 1000, "max_ms": w["max_us"] / 1000,
        "errors": errors, "err_status": w["err_status"],
        "rss_hwm_kib": after.get("VmHWM"), "rss_kib": after.get("VmRSS"),
        "pool": args.pool, "rust_log": args.rust_log, "phase": args.phase,
    }
    add_cpu(row, cpu, row["rps"])
    record(args.results, row)
    print(f"  {args.endpoint:<36} {args.orders:>9,} orders{' (' + args.phase + ')' if args.phase != 'preloaded' else ''}: {row['rps']:6.0f} req/s  "
          f"p50 {row['p50_ms']:.2f}  p99 {row['p99_ms']:.2f}  max {row['max_ms']:.1f} ms  "
          f"errors {errors}  VmHWM {(row['rss_hwm_kib'] or 0) / 1024:.1f} MiB  " + cpu_text(row),
          flush=True)
    return 0


def add_cpu(row, cpu, rate):
    """CPU cores used by each party, and microseconds of CPU per request."""
    row["cpu_busy"] = cpu.busy
    row["cpu_steal"] = cpu.steal
    for party, cores in cpu.cores.items():
        row[f"cores_{party}"] = cores
        row[f"us_per_req_{party}"] = cores * 1e6 / rate if rate else None


def cpu_text(row):
    return ("CPU us/req: " + " ".join(
        f"{party} {row[f'us_per_req_{party}']:.0f}" for party in ("service", "postgres", "loadgen")
        if row.get(f"us_per_req_{party}") is not None)
        + f"; machine busy {100 * row['cpu_busy']:.0f}%, other {100 * row['cores_other'] / os.cpu_count():.0f}%"
        f", steal {100 * row['cpu_steal']:.0f}%")


def cmd_pgbench(args):
    with CpuSampler(None) as cpu:
        out = subprocess.run(args.command, capture_output=True, text=True)
    if args.raw:
        with open(args.raw, "a") as f:
            f.write(f"$ {' '.join(args.command)}\n{out.stdout}{out.stderr}\n")
    text = out.stdout + out.stderr
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", text)
    lat = re.search(r"latency average = ([\d.]+) ms", text)
    failed = re.search(r"number of failed transactions: (\d+)", text)
    done = re.search(r"number of transactions actually processed: (\d+)", text)
    if out.returncode != 0 or not tps:
        sys.stderr.write(text)
        raise SystemExit(f"bench: pgbench {args.script} failed")
    row = {"kind": "pgbench", "script": args.script, "protocol": args.protocol,
           "orders": args.orders,
           "tps": float(tps.group(1)), "lat_avg_ms": float(lat.group(1)) if lat else None,
           "failed": int(failed.group(1)) if failed else 0,
           "transactions": int(done.group(1)) if done else None}
    add_cpu(row, cpu, row["tps"])
    record(args.results, row)
    label = f"{args.script}.sql -M {args.protocol}"
    print(f"  pgbench {label:<28} {args.orders:>9,} orders: {row['tps']:6.0f} tps    "
          f"latency avg {row['lat_avg_ms']:.2f} ms  failed {row['failed']}  " + cpu_text(row),
          flush=True)
    return 0


# ---------------------------------------------------------------- report

MATCHING_SCRIPT = {
    "POST /orders": "create",
    "GET /orders/{id}": "get",
    "GET /orders?limit=10": "list",
    "GET /orders?limit=10&cancelled=false": "list_nc",
}


def noise(row):
    """CPU taken from the benchmark by others: processes outside it, and the
    hypervisor's steal, as a share of the machine."""
    return f"{100 * (row['cores_other'] / os.cpu_count() + row.get('cpu_steal', 0)):.0f}%"


def cmd_report(args):
    rows = [json.loads(l) for l in open(args.results) if l.strip()]
    meta = {}
    if args.meta and os.path.exists(args.meta):
        meta = json.load(open(args.meta))
    every_http = [r for r in rows if r["kind"] == "http"]
    http_rows = [r for r in every_http if r.get("phase", "preloaded") == "preloaded"]
    pg = {(r["script"], r.get("protocol", "prepared"), r["orders"]): r
          for r in rows if r["kind"] == "pgbench"}
    header = ["endpoint", "orders", "req/s", "p50 ms", "p99 ms", "max ms", "non-2xx",
              "pgbench script", "pgbench tps simple / prepared", "share simple / prepared",
              "peak RSS MiB",
              "CPU us/req svc+pg (pgbench prepared: pg)" if pg else "CPU us/req svc",
              "other+steal CPU"]
    table = []
    for r in http_rows:
        script = MATCHING_SCRIPT.get(r["endpoint"])
        by_protocol = [pg.get((script, protocol, r["orders"]))
                       for protocol in ("simple", "prepared")]
        p = by_protocol[1] or by_protocol[0]
        tps = " / ".join(f"{b['tps']:.0f}" if b else "-" for b in by_protocol)
        share = " / ".join(f"{100 * r['rps'] / b['tps']:.0f}%" if b else "-" for b in by_protocol)
        table.append([
            r["endpoint"], f"{r['orders']:,}", f"{r['rps']:.0f}", f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}", f"{r['max_ms']:.1f}", str(r["errors"]),
            f"{script}.sql" if p else "-", tps if p else "-", share if p else "-",
            f"{r['rss_hwm_kib'] / 1024:.1f}" if r.get("rss_hwm_kib") else "-",
            (f"{r['us_per_req_service']:.0f}"
             + (f"+{r['us_per_req_postgres']:.0f}" if r.get("mode") != "sqlite" else "")
             + (f" ({p['us_per_req_postgres']:.0f})" if p else "")),
            noise(r) + (f" / {noise(p)}" if p else ""),
        ])
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    def fmt(cells):
        return "| " + " | ".join(c.ljust(widths[i]) if i in (0, 7) else c.rjust(widths[i])
                                 for i, c in enumerate(cells)) + " |"
    print()
    title = f"Results ({meta.get('mode', '?')}"
    for key in ("pool", "rust_log", "wrk_threads", "duration_s", "connections"):
        if key in meta:
            title += f", {key}={meta[key]}"
    print(title + ")")
    print(fmt(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in table:
        print(fmt(row))
    peak = max((r.get("rss_hwm_kib") or 0 for r in http_rows), default=0) / 1024
    if "cpu_model" in meta:
        print(f"machine: {meta['cpus']} x {meta['cpu_model']}; busy before the run: "
              f"{meta.get('busy_before_pct', '?')}%; wrk {meta.get('wrk')}; git {meta.get('git')}")
    print(f"service peak RSS (VmHWM) over the run: {peak:.1f} MiB; "
          f"start-up to ready: {meta.get('ready_ms', '?')} ms")
    pgb_failed = sum(r["failed"] for r in pg.values())
    if pg:
        print(f"pgbench failed transactions: {pgb_failed}")

    fresh = report_fresh(every_http)
    per_core = report_per_core(every_http)

    print("\nTargets:")
    checks = []
    notes = []
    # The service prepares its statements, so PostgreSQL's own limit for
    # them is pgbench -M prepared; the simple protocol, which
    # parses and plans every statement again, is for the record.
    for endpoint, script in MATCHING_SCRIPT.items():
        for r in http_rows:
            if r["endpoint"] != endpoint:
                continue
            p = pg.get((script, "prepared", r["orders"]))
            if p:
                share = r["rps"] / p["tps"]
                checks.append((f"{endpoint} at {r['orders']:,}: {100 * share:.0f}% of "
                               f"{script}.sql -M prepared (>= 70%)", share >= 0.70))
            elif r.get("mode") != "sqlite":
                checks.append((f"{endpoint} at {r['orders']:,}: no {script}.sql -M prepared "
                               "figure", False))
            p = pg.get((script, "simple", r["orders"]))
            if p:
                notes.append(f"{endpoint} at {r['orders']:,}: {100 * r['rps'] / p['tps']:.0f}% "
                             f"of {script}.sql -M simple")
    for endpoint in ("GET /orders?limit=10", "GET /orders?limit=10&cancelled=false"):
        by_size = {r["orders"]: r for r in http_rows if r["endpoint"] == endpoint}
        if len(by_size) >= 2:
            small, large = by_size[min(by_size)], by_size[max(by_size)]
            ratio = large["p50_ms"] / small["p50_ms"]
            ratio99 = large["p99_ms"] / small["p99_ms"]
            checks.append((f"{endpoint}: p50 at {max(by_size):,} is {ratio:.2f}x the one at "
                           f"{min(by_size):,} (<= 1.5x; p99 {ratio99:.2f}x)", ratio <= 1.5))
    for endpoint, never, analyzed in fresh:
        ratio = analyzed["rps"] / never["rps"]
        text = (f"{endpoint} never analyzed: {never['rps']:.0f} req/s; analyzed serves "
                f"{ratio:.2f}x that (<= 1.5x; p99 {never['p99_ms']:.1f} ms never analyzed, "
                f"{analyzed['p99_ms']:.1f} ms analyzed)")
        if endpoint.startswith("GET /orders?"):
            checks.append((text, ratio <= 1.5))
        else:
            notes.append(text)
    errors = sum(r["errors"] for r in every_http)
    checks.append((f"non-2xx and socket errors: {errors} (0)", errors == 0))
    checks.append((f"peak RSS {peak:.1f} MiB (<= 30 MiB)", 0 < peak <= 30))
    ready = meta.get("ready_ms")
    if isinstance(ready, (int, float)):
        checks.append((f"start-up to ready {ready:.1f} ms (< 100 ms)", ready < 100))
    for text, ok in checks:
        print(f"  [{'PASS' if ok else 'MISS'}] {text}")
    for text in notes:
        print(f"  [INFO] {text}")
    if per_core:
        print("  [INFO] per service core: " + ", ".join(
            f"{e} {v:.0f} req/s" for e, v in per_core))
    return 0


def print_table(header, table, left=(0,)):
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    def fmt(cells):
        return "| " + " | ".join(c.ljust(widths[i]) if i in left else c.rjust(widths[i])
                                 for i, c in enumerate(cells)) + " |"
    print(fmt(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in table:
        print(fmt(row))


def report_fresh(every_http):
    """The reads on the database filled through the API, before and after
    ANALYZE: [(endpoint, never-analyzed row, analyzed row)]."""
    never = {r["endpoint"]: r for r in every_http if r.get("phase") == "fresh"}
    analyzed = {r["endpoint"]: r for r in every_http if r.get("phase") == "fresh-analyzed"}
    pairs = [(e, never[e], analyzed[e]) for e in never if e in analyzed]
    if not pairs:
        return pairs
    print(f"\nNever analyzed (orders placed through the API into the freshly migrated "
          f"database) and after ANALYZE:")
    table = [[e, f"{n['orders']:,}", f"{n['rps']:.0f}", f"{n['p50_ms']:.2f}", f"{n['p99_ms']:.2f}",
              f"{a['rps']:.0f}", f"{a['p50_ms']:.2f}", f"{a['p99_ms']:.2f}",
              f"{a['rps'] / n['rps']:.2f}x"] for e, n, a in pairs]
    print_table(["endpoint", "orders", "never analyzed req/s", "p50 ms", "p99 ms",
                 "analyzed req/s", "p50 ms", "p99 ms", "analyzed / never"], table)
    return pairs


def report_per_core(every_http):
    """The service pinned to one core: [(endpoint, requests/s per core of
    CPU the service used)]."""
    rows = [r for r in every_http if r.get("phase") == "per-core"]
    if not rows:
        return []
    print("\nPer core (the service pinned to CPU 0, PostgreSQL and wrk to CPU 1):")
    table = []
    per_core = []
    for r in rows:
        cores = r.get("cores_service") or 0
        rate = r["rps"] / cores if cores else 0
        per_core.append((r["endpoint"], rate))
        table.append([r["endpoint"], f"{r['orders']:,}", f"{r['rps']:.0f}", f"{r['p50_ms']:.2f}",
                      f"{r['p99_ms']:.2f}", f"{cores:.2f}", f"{r.get('cores_postgres', 0):.2f}",
                      f"{rate:.0f}", f"{r['us_per_req_service']:.0f}"])
    print_table(["endpoint", "orders", "req/s", "p50 ms", "p99 ms", "service cores",
                 "postgres cores", "req/s per service core", "service CPU us/req"], table)
    return per_core


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("start")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("command", nargs=argparse.REMAINDER)

    p = sub.add_parser("sql")
    p.add_argument("--root", required=True)
    p.add_argument("--out", required=True)

    p = sub.add_parser("http")
    for name in ("--endpoint", "--results", "--raw", "--mode", "--pool", "--rust-log"):
        p.add_argument(name)
    p.add_argument("--phase", default="preloaded")
    p.add_argument("--orders", type=int, required=True)
    p.add_argument("--pid", type=int)
    p.add_argument("--warmup", action="store_true")
    p.add_argument("command", nargs=argparse.REMAINDER)

    p = sub.add_parser("pgbench")
    for name in ("--script", "--results", "--raw"):
        p.add_argument(name)
    p.add_argument("--protocol", choices=("simple", "prepared"), required=True)
    p.add_argument("--orders", type=int, required=True)
    p.add_argument("command", nargs=argparse.REMAINDER)

    p = sub.add_parser("report")
    p.add_argument("--results", required=True)
    p.add_argument("--meta")

    args = parser.parse_args()
    if getattr(args, "command", None) and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    return {"start": cmd_start, "sql": cmd_sql, "http": cmd_http, "pgbench": cmd_pgbench,
            "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
