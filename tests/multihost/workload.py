#!/usr/bin/env python3
"""Write workload and checker for the multi-host partition tests (runs inside the client's namespace).

  workload.py write LOG HOST PORT        two writers insert unique ids through the proxy until SIGTERM; each
                                         acknowledged insert is appended to LOG as
                                         "id client_ms server_addr timeline server_epoch",
                                         each failed one to LOG.failed as "client_ms why"
  workload.py transact LOG HOST PORT     one client running transactions of four statements (BEGIN, INSERT,
                                         a 0.2 s sleep, COMMIT) through the proxy until SIGTERM; appends
                                         "client_ms ok" or "client_ms error: why" to LOG for each
  workload.py check LOG HOST PORT MODE [SINCE_MS]
                                         reads every id back from the current primary and prints one
                                         JSON line: acknowledged, lost, terms, overlapping terms,
                                         first acknowledged write at or after SINCE_MS, longest gap.
                                         Exits 1 if any acknowledged id is missing in sync/quorum
                                         mode (MODE on|quorum) or two terms overlapped (any mode).

One psql per insert (no client library needed), each bounded by a 1.5 s client-side timeout: an insert
that times out or fails is not acknowledged, so its id may or may not exist (never counted lost).
The superuser password comes from PGPASSWORD. Terms are (server address, timeline); the servers
share this machine's clock, so acknowledged writes of two terms must not interleave in server time.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

TABLE = "mh_workload"


def psql(host, port, sql, timeout, failures=None):
    """psql's output, or None after noting why not (and appending "client_ms why" to `failures`)."""
    env = dict(os.environ, PGCONNECT_TIMEOUT="2")
    try:
        r = subprocess.run(["psql", "-h", host, "-p", str(port), "-U", "postgres", "-d", "postgres", "-XAtq",
                            "-F", " ", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True, timeout=timeout, env=env)
        why = None
        if r.returncode != 0:
            why = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"psql exit {r.returncode}"
    except subprocess.TimeoutExpired:
        why = f"no answer within {timeout} s"
    if why is None:
        return r.stdout.strip()
    note(why)
    if failures is not None:
        failures.write(f"{now_ms()} {why}\n")
    return None


_last_note = [""]
_note_lock = threading.Lock()


def note(message):
    """Logs a failure to stderr once per change of its text (the workload's log)."""
    with _note_lock:
        if message == _last_note[0]:
            return
        _last_note[0] = message
        print(time.strftime("%H:%M:%S"), message, file=sys.stderr, flush=True)


def now_ms():
    return int(time.time() * 1000)


WRITERS = 2           # concurrent writers: a stuck INSERT does not hide when writes came back
CLIENT_TIMEOUT = 1.5  # seconds; an INSERT without an answer by then is not acknowledged


def write(log, host, port):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while psql(host, port, f"CREATE TABLE IF NOT EXISTS {TABLE}(id bigint PRIMARY KEY, at timestamptz)", 5) is None:
        if stop:
            return
        time.sleep(0.2)
    lock = threading.Lock()
    with open(log, "a", buffering=1) as out, open(log + ".failed", "a", buffering=1) as failed:
        threads = [threading.Thread(target=writer, args=(w, out, failed, lock, stop, host, port))
                   for w in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def writer(number, out, failed, lock, stop, host, port):
    next_id = (int(time.time() * 1000) * 10 + number) * 100000  # unique across writers and restarts
    while not stop:
        next_id += 1
        answer = psql(host, port,
                      f"INSERT INTO {TABLE} VALUES ({next_id}, clock_timestamp()) RETURNING "
                      "inet_server_addr(), substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8), "
                      "extract(epoch from at)", CLIENT_TIMEOUT, failed)
        if answer:
            addr, timeline, epoch = answer.split()
            with lock:
                out.write(f"{next_id} {now_ms()} {addr} {int(timeline, 16)} {epoch}\n")
        else:
            time.sleep(0.05)


def transact(log, host, port):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    psql(host, port, "CREATE TABLE IF NOT EXISTS mh_transactions(id bigserial PRIMARY KEY, at timestamptz DEFAULT now())", 10)
    # One statement at a time (psql reads the script): the transaction spans four round trips,
    # idle in transaction between them, as an application's would.
    script = "BEGIN;\nINSERT INTO mh_transactions DEFAULT VALUES;\nSELECT pg_sleep(0.2);\nCOMMIT;\n"
    env = dict(os.environ, PGCONNECT_TIMEOUT="5")
    with open(log, "a", buffering=1) as out:
        while not stop:
            try:
                r = subprocess.run(["psql", "-h", host, "-p", str(port), "-U", "postgres", "-d", "postgres", "-XAtq",
                                    "-v", "ON_ERROR_STOP=1"], input=script, capture_output=True, text=True,
                                   timeout=10, env=env)
                why = "" if r.returncode == 0 else (r.stderr.strip().splitlines() or [f"psql exit {r.returncode}"])[-1]
            except subprocess.TimeoutExpired:
                why = "no answer within 10 s"
            out.write(f"{now_ms()} {'ok' if not why else 'error: ' + why}\n")


def check(log, host, port, mode, since_ms):
    acked = []
    with open(log) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 5:
                acked.append((int(parts[0]), int(parts[1]), parts[2], int(parts[3]), float(parts[4])))
    ids = None
    for _ in range(50):
        ids = psql(host, port, f"SELECT id FROM {TABLE}", 10)
        if ids is not None:
            break
        time.sleep(0.2)
    if ids is None:
        print(json.dumps({"error": "cannot read the table back through the proxy"}))
        return 1
    present = set(int(x) for x in ids.split())
    lost = [a[0] for a in acked if a[0] not in present]
    # Terms and their server-time intervals.
    terms = {}
    for _, _, addr, tl, epoch in acked:
        lo, hi = terms.get((addr, tl), (epoch, epoch))
        terms[(addr, tl)] = (min(lo, epoch), max(hi, epoch))
    ordered = sorted(terms.items(), key=lambda kv: kv[1][0])
    overlaps = [f"{a[0]}/tl{a[1]} until {ai[1]:.3f} vs {b[0]}/tl{b[1]} from {bi[0]:.3f}"
                for (a, ai), (b, bi) in zip(ordered, ordered[1:]) if bi[0] < ai[1]]
    client_times = sorted(a[1] for a in acked)
    after = [t for t in client_times if t >= since_ms]
    by_time = sorted(acked, key=lambda a: a[1])
    before = [(a[2], a[3]) for a in by_time if a[1] < since_ms]
    new_term = [a[1] for a in by_time if a[1] >= since_ms and (not before or (a[2], a[3]) != before[-1])]
    window = [t for t in client_times if t >= since_ms - 1000]
    gap = max((b - a for a, b in zip(window, window[1:])), default=0)
    result = {
        "acknowledged": len(acked),
        "lost": len(lost),
        "lost_ids": lost[:10],
        "terms": [f"{k[0]}/tl{k[1]}" for k, _ in ordered],
        "overlaps": overlaps,
        "first_ack_after_ms": (after[0] - since_ms) if after else None,
        "first_ack_new_term_ms": (new_term[0] - since_ms) if new_term else None,
        "acks_after": len(after),
        "longest_gap_ms": gap,
    }
    print(json.dumps(result))
    bad = overlaps or (lost and mode in ("on", "quorum"))
    return 1 if bad else 0


def main():
    if len(sys.argv) >= 5 and sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3], sys.argv[4])
        return 0
    if len(sys.argv) >= 5 and sys.argv[1] == "transact":
        transact(sys.argv[2], sys.argv[3], sys.argv[4])
        return 0
    if len(sys.argv) >= 6 and sys.argv[1] == "check":
        return check(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]) if len(sys.argv) > 6 else 0)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
