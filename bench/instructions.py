#!/usr/bin/env python3
"""Helpers of bench/instructions.sh (standard library only).

  load     drive the service running under callgrind: for each request, a
           warm-up with instrumentation off, then a fixed number of
           sequential keep-alive requests with it on, dumped on their own;
           an idle window first gives the instructions the service spends
           doing nothing (its reconciler, timers), which are subtracted
  crates   group `callgrind_annotate` output by crate
  cpu      run a load generator and print, as JSON, the CPU seconds that the
           service, PostgreSQL and the generator itself spent meanwhile
  rate     the requests per second of a round's service run, for pgbench -R
  share    summarize the alternated rounds of the wall-clock comparison
"""

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import time

# Preloaded order n (bench/preload_pg.sql) has this id.
T0_MS = 1704067200000
CREATE_BODY = b'{"order":[{"product":"latte","size":"small","quantity":1}]}'


def preload_id(n):
    h = f"{T0_MS + n * 1000:012x}{n:020x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


REQUESTS = {
    "GET /healthz": lambda i: ("GET", "/healthz", None),
    "GET /orders/{id}": lambda i: ("GET", f"/orders/{preload_id(1 + i % 5000)}", None),
    "POST /orders": lambda i: ("POST", "/orders", CREATE_BODY),
    "GET /orders?limit=10": lambda i: ("GET", "/orders?limit=10", None),
}
EXPECTED = {"POST /orders": 201}


def callgrind_control(pid, *args):
    subprocess.run(["callgrind_control", *args, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def newest_dump(out_dir, pid, before):
    files = [f for f in os.listdir(out_dir)
             if f.startswith(f"callgrind.{pid}.") and f not in before]
    if len(files) != 1:
        raise SystemExit(f"instructions: expected one new dump, found {files}")
    return os.path.join(out_dir, files[0])


def dump_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise SystemExit(f"instructions: no totals in {path}")


def measured(pid, out_dir, label, body):
    """Runs body() with instrumentation on; returns (instructions, seconds, dump)."""
    before = set(os.listdir(out_dir))
    callgrind_control(pid, "--zero")
    callgrind_control(pid, "--instr=on")
    t0 = time.monotonic()
    body()
    seconds = time.monotonic() - t0
    callgrind_control(pid, f"--dump={label}")
    callgrind_control(pid, "--instr=off")
    dump = newest_dump(out_dir, pid, before)
    return dump_total(dump), seconds, dump


def run_requests(port, name, count, offset=0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    expected = EXPECTED.get(name, 200)
    make = REQUESTS[name]
    for i in range(offset, offset + count):
        method, path, body = make(i)
        headers = {"Content-Type": "application/json"} if body else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != expected:
            raise SystemExit(f"instructions: {method} {path} answered {response.status}")
    conn.close()


def cmd_load(args):
    names = args.requests or list(REQUESTS)
    os.makedirs(args.out, exist_ok=True)
    # The idle cost: the same instrumentation, no requests.
    idle, idle_s, _ = measured(args.pid, args.out, "idle", lambda: time.sleep(args.idle))
    idle_rate = idle / idle_s
    results = {"idle_per_s": round(idle_rate)}
    for name in names:
        run_requests(args.port, name, args.warmup)
        total, seconds, dump = measured(
            args.pid, args.out, re.sub(r"\W+", "_", name).strip("_"),
            lambda: run_requests(args.port, name, args.count, args.warmup))
        per_request = (total - idle_rate * seconds) / args.count
        results[name] = {"per_request": round(per_request), "total": total,
                         "seconds": round(seconds, 2), "dump": dump}
        print(f"  {name:<22} {per_request / 1000:8.1f}k instructions/request "
              f"({total:,} in {seconds:.1f} s, idle {idle_rate * seconds / args.count:.0f}"
              f"/request subtracted)", flush=True)
    with open(os.path.join(args.out, "load.json"), "w") as f:
        json.dump(results, f, indent=1)
    return 0


# ------------------------------------------------------------------ crates

REGISTRY = re.compile(r"/(?:registry/src/[^/]+|git/checkouts/[^/]+/[^/]+)/([A-Za-z0-9_.-]+?)-\d+\.\d+[^/]*/")
LINE = re.compile(r"^\s*([\d,]+)\s+\([\s\d.]+%\)\s+(.*?)(?:\s+\[(.*)\])?$")


def crate_of(location, obj):
    file, _, func = location.partition(":")
    name = os.path.basename(obj or "")
    m = REGISTRY.search(file)
    if m:
        return m.group(1)
    if "/library/" in file and ("/rustc/" in file or "rustlib" in file):
        return "std (" + file.split("/library/")[1].split("/")[0] + ")"
    if name.startswith("libc.so") or name.startswith("ld-linux") or file.startswith("./"):
        if "malloc" in file or any(k in func for k in ("malloc", "free", "realloc", "calloc", "tcache")):
            return "glibc malloc/free"
        if "mem" in func or "str" in func:
            return "glibc mem*/str*"
        return "glibc other"
    if name.startswith("vgpreload"):
        return "valgrind"
    if file.startswith("/") and "/src/" in file:
        return "orders-service"
    # No line tables: by the function's path.
    head = func.split("::")[0].lstrip("<")
    return head or name or "?"


def cmd_crates(args):
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100",
                          "--show-percs=no", "--auto=no", args.dump],
                         capture_output=True, text=True, check=True).stdout
    total = 0
    groups = {}
    started = False
    for line in out.splitlines():
        if not started:
            if re.match(r"^\s*[\d,]+\s+\(", line) and "PROGRAM TOTALS" in line:
                total = int(line.split()[0].replace(",", ""))
            if line.startswith("-- ") and "function-by-function" in line.lower() or \
               re.match(r"^\s*Ir\s+file:function", line):
                started = True
            continue
        m = re.match(r"^\s*([\d,]+)\s+(\S.*?)(?:\s+\[(.*)\])?$", line)
        if not m:
            continue
        ir = int(m.group(1).replace(",", ""))
        crate = crate_of(m.group(2), m.group(3))
        groups[crate] = groups.get(crate, 0) + ir
    if not total:
        total = sum(groups.values())
    per = args.requests
    print(f"  {args.label}: {total / per / 1000:.1f}k instructions/request "
          "(idle not subtracted), by crate:")
    shown = 0
    for crate, ir in sorted(groups.items(), key=lambda kv: -kv[1]):
        if shown >= args.top:
            break
        shown += 1
        print(f"    {ir / per / 1000:8.1f}k  {100 * ir / total:5.1f}%  {crate}")
    return 0


def cmd_cpu(args):
    """The CPU each side of a comparison spends, so a share of throughput
    can be read as costs (bench.py's sampler: a PostgreSQL backend that
    exits during the run, a pgbench client's, counts up to its last
    sample)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench import CpuSampler

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    with CpuSampler(args.service_pid) as cpu:
        run = subprocess.run(command, capture_output=True, text=True)
    sys.stdout.write(run.stdout)
    if run.returncode != 0:
        sys.stderr.write(run.stderr)
        return run.returncode
    spent = {party: cores * cpu.seconds for party, cores in cpu.cores.items()}
    print("CPUJSON " + json.dumps({"service": spent["service"], "postgres": spent["postgres"],
                                   "client": spent["loadgen"], "wall": cpu.seconds}))
    return 0


def service_round(path):
    """A round's wrk figures (bench/wrk/bench.lua) and the CPU spent."""
    with open(path) as f:
        text = f.read()
    bench = json.loads(re.search(r"^BENCHJSON (.*)$", text, re.M).group(1))
    cpu = json.loads(re.search(r"^CPUJSON (.*)$", text, re.M).group(1))
    return bench, cpu


def pgbench_round(path):
    """A round's pgbench figures: tps, transactions and the CPU spent."""
    with open(path) as f:
        text = f.read()
    tps = float(re.search(r"^tps = ([0-9.]+) \(without initial", text, re.M).group(1))
    transactions = int(re.search(r"^number of transactions actually processed: (\d+)",
                                 text, re.M).group(1))
    cpu = json.loads(re.search(r"^CPUJSON (.*)$", text, re.M).group(1))
    return tps, transactions, cpu


def cmd_rate(args):
    bench, _ = service_round(args.file)
    print(max(1, round(bench["requests"] / (bench["duration_us"] / 1e6))))
    return 0


def cmd_share(args):
    """Each round's share and what a request and a transaction cost in
    CPU, then the median share: the machine's speed drifts between rounds
    (two runs of one binary differ by up to 25%), so one round proves
    little, and the costs say why the share is what it is."""
    rounds = []
    for n in range(1, args.rounds + 1):
        bench, service_cpu = service_round(os.path.join(args.out, f"round-{n}-service.txt"))
        errors = sum(v for k, v in bench.items() if k.startswith("err_"))
        if errors:
            print(f"instructions: round {n}: {errors} errors", file=sys.stderr)
            return 1
        requests = bench["requests"]
        rps = requests / (bench["duration_us"] / 1e6)
        tps, transactions, pg_cpu = pgbench_round(os.path.join(args.out, f"round-{n}-pgbench.txt"))
        share = rps / tps
        rounds.append(share)

        def us(seconds, count):
            return 1e6 * seconds / count

        print(f"  round {n}: service {rps:6.0f} req/s   pgbench -M prepared {tps:6.0f} tps   "
              f"{100 * share:3.0f}%")
        print(f"           CPU µs a request: service {us(service_cpu['service'], requests):5.1f}, "
              f"PostgreSQL {us(service_cpu['postgres'], requests):5.1f}, "
              f"wrk {us(service_cpu['client'], requests):5.1f}; "
              f"a transaction: PostgreSQL {us(pg_cpu['postgres'], transactions):5.1f}, "
              f"pgbench {us(pg_cpu['client'], transactions):5.1f}")
        paced = os.path.join(args.out, f"round-{n}-paced.txt")
        if os.path.exists(paced):
            paced_tps, paced_tx, paced_cpu = pgbench_round(paced)
            print(f"           pgbench held to the service's rate ({paced_tps:6.0f} tps): "
                  f"PostgreSQL {us(paced_cpu['postgres'], paced_tx):5.1f}, "
                  f"pgbench {us(paced_cpu['client'], paced_tx):5.1f} µs a transaction")
    rounds.sort()
    middle = len(rounds) // 2
    median = rounds[middle] if len(rounds) % 2 else (rounds[middle - 1] + rounds[middle]) / 2
    print(f"  median share {100 * median:.0f}% of pgbench -M prepared over {len(rounds)} rounds "
          f"({100 * rounds[0]:.0f}% to {100 * rounds[-1]:.0f}%)")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("load")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--idle", type=float, default=10.0)
    p.add_argument("requests", nargs="*")
    p = sub.add_parser("crates")
    p.add_argument("--dump", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--requests", type=int, required=True)
    p.add_argument("--top", type=int, default=25)
    p = sub.add_parser("cpu")
    p.add_argument("--service-pid", type=int, default=0)
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("rate")
    p.add_argument("--file", required=True)
    p = sub.add_parser("share")
    p.add_argument("--out", required=True)
    p.add_argument("--rounds", type=int, required=True)
    args = parser.parse_args()
    commands = {"load": cmd_load, "crates": cmd_crates, "cpu": cmd_cpu, "rate": cmd_rate,
                "share": cmd_share}
    return commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
