"""Throughput of no-op Celery tasks, the counterpart of `reelq-bench noop`.

Starts a Celery worker on a queue of its own, waits until it consumes, runs a short warm-up,
then submits N tasks with `apply_async` and waits until the worker has finished them all.
Each task carries its submit time and, once it succeeded (and, in postgres mode, once its
result row is written), appends "submit done" to a file, so completion is measured the same
way with and without a result backend. Prints, in the format of reelq-bench:

  submit: N sent in S s = R tasks/s
  end to end: N tasks in S s = R tasks/s (first submit to last success)
  submit→succeeded: p50, p99 and max latency

Afterwards it stops the worker, deletes the queue and exchange (with a quorum queue also the
delayed-delivery topology Celery declares for it, unless another app uses it) and, in postgres
mode, its result rows. Run it with the interpreter of the virtualenv made by ./run.
"""

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["none", "postgres"], default="none", help="result backend")
    p.add_argument("--tasks", type=int, default=4000, help="tasks measured (default 4000)")
    p.add_argument(
        "--clients",
        type=int,
        default=1,
        help="submitting threads; 1 = one apply_async loop (default, the fastest here: the GIL "
        "serialises the threads and each extra one only adds switching)",
    )
    p.add_argument(
        "--pool",
        choices=["prefork", "threads", "solo"],
        help="worker pool (default: threads without a result backend, prefork with PostgreSQL; "
        "the fastest of prefork, threads and solo at 1-8 slots on 2 cores)",
    )
    p.add_argument("--concurrency", type=int, default=4, help="worker pool size (default 4)")
    p.add_argument("--prefetch", type=int, default=64, help="worker_prefetch_multiplier (default 64)")
    p.add_argument(
        "--queue-type",
        choices=["classic", "quorum"],
        default="classic",
        help="classic (default, Celery's usual) or quorum (the type of reelq's queues)",
    )
    p.add_argument(
        "--confirm",
        action="store_true",
        help="publisher confirms, as reelq publishes; each apply_async then waits for its confirm, "
        "so use --clients 16 to keep several in flight",
    )
    p.add_argument("--warmup", type=int, default=-1, help="tasks run before measuring (default 8 x concurrency)")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for completion")
    return p.parse_args()


def ensure_database(url: str) -> None:
    """Creates the result database if missing, connecting to the `postgres` database of the same server."""
    import psycopg2
    from psycopg2 import sql
    from psycopg2.extensions import parse_dsn

    params = parse_dsn(url)
    name = params.pop("dbname")
    params["dbname"] = "postgres"
    conn = psycopg2.connect(**params)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"created database {name}", file=sys.stderr)
    finally:
        conn.close()


def read_done(path: Path) -> list[tuple[float, float]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    # A line still being written has no newline yet; the last element is then partial.
    return [(float(a), float(b)) for a, b in (ln.split() for ln in data.split(b"\n")[:-1])]


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def wait_lines(path: Path, want: int, timeout: float, worker: subprocess.Popen) -> int:
    deadline = time.monotonic() + timeout
    n = count_lines(path)
    while n < want:
        if worker.poll() is not None:
            raise SystemExit(f"worker exited with {worker.returncode}")
        if time.monotonic() > deadline:
            return n
        time.sleep(0.05)
        n = count_lines(path)
    return n


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, round((len(sorted_values) - 1) * p))]


def stop_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is not None:
        return
    worker.send_signal(signal.SIGTERM)  # warm shutdown
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def main() -> None:
    args = parse_args()
    if args.pool is None:
        # A no-op task holds the GIL for microseconds, so threads beat processes (no pipe
        # to the pool) until results go to PostgreSQL, where threads serialise on
        # SQLAlchemy and the GIL and four processes overlap their commits.
        args.pool = "threads" if args.mode == "none" else "prefork"
    warmup = args.warmup if args.warmup >= 0 else 8 * args.concurrency
    run_id = f"{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}"
    queue_name = f"celery-bench-{run_id}"
    tmp = Path(tempfile.mkdtemp(prefix="celery-bench-"))
    done_file, ready_file = tmp / "done", tmp / "ready"

    os.environ.update(
        CELERY_BENCH_MODE=args.mode,
        CELERY_BENCH_QUEUE=queue_name,
        CELERY_BENCH_QUEUE_TYPE=args.queue_type,
        CELERY_BENCH_CONFIRM="1" if args.confirm else "0",
        CELERY_BENCH_PREFETCH=str(args.prefetch),
        CELERY_BENCH_POOL_LIMIT=str(max(10, args.clients)),
        CELERY_BENCH_DONE=str(done_file),
        CELERY_BENCH_READY=str(ready_file),
    )
    sys.path.insert(0, str(HERE))
    import celery
    import tasks  # configured by the environment above

    if args.mode == "postgres":
        ensure_database(tasks.PG_URL)
        # Creates the result tables now rather than inside the first measured task.
        tasks.app.backend.ResultSession().close()

    worker_cmd = [
        sys.executable, "-m", "celery", "-A", "tasks", "worker",
        f"--pool={args.pool}", f"--concurrency={args.concurrency}",
        f"--queues={queue_name}", f"--hostname=bench-{run_id}@%h",
        "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    worker_log = tmp / "worker.log"
    with worker_log.open("wb") as log:
        worker = subprocess.Popen(worker_cmd, cwd=HERE, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT)
    task_ids: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not ready_file.exists():
            if worker.poll() is not None:
                raise SystemExit(f"worker exited with {worker.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise SystemExit("worker not ready after 60 s")
            time.sleep(0.05)

        # Warm-up: forks, broker and database connections. Marked with submit time -1.
        for _ in range(warmup):
            task_ids.append(tasks.noop.apply_async((-1.0,)).id)
        if wait_lines(done_file, warmup, 60, worker) < warmup:
            raise SystemExit("warm-up tasks did not finish within 60 s")

        n, clients = args.tasks, max(1, args.clients)
        print(
            f"celery no-op tasks (result backend {args.mode}): {n} submitted with apply_async by "
            f"{clients} client thread(s); worker pool {args.pool} x{args.concurrency}, "
            f"prefetch {args.prefetch}/slot, {args.queue_type} queue, "
            f"confirms {'on' if args.confirm else 'off'}; celery {celery.__version__}",
            flush=True,
        )
        ids_lock = threading.Lock()

        def submit(count: int) -> None:
            ids = [tasks.noop.apply_async((time.time(),)).id for _ in range(count)]
            with ids_lock:
                task_ids.extend(ids)

        shares = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
        started = time.time()
        if clients == 1:
            submit(n)
        else:
            threads = [threading.Thread(target=submit, args=(c,)) for c in shares]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        submit_secs = time.time() - started
        print(f"  submit: {n} sent in {submit_secs:.2f} s = {n / submit_secs:.0f} tasks/s", flush=True)

        got = wait_lines(done_file, warmup + n, args.timeout, worker) - warmup
        if got < n:
            print(f"  gave up waiting: {got} of {n} done", flush=True)
        lines = [(s, d) for s, d in read_done(done_file) if s >= 0]
        if not lines:
            raise SystemExit("no task finished")
        first = min(s for s, _ in lines)
        last = max(d for _, d in lines)
        span = last - first
        print(
            f"  end to end: {len(lines)} tasks in {span:.2f} s = {len(lines) / span:.0f} tasks/s "
            "(first submit to last success)",
            flush=True,
        )
        lat = sorted(d - s for s, d in lines)
        print(
            f"  submit→succeeded: p50 {percentile(lat, 0.5) * 1e3:.1f} ms, "
            f"p99 {percentile(lat, 0.99) * 1e3:.1f} ms, max {lat[-1] * 1e3:.1f} ms",
            flush=True,
        )
        if args.mode == "postgres":
            check_results(tasks, task_ids, warmup + n)
    except BaseException:
        stop_worker(worker)
        sys.stderr.write("worker log:\n" + worker_log.read_text(errors="replace")[-4000:])
        raise
    finally:
        stop_worker(worker)
        cleanup(tasks, queue_name, task_ids if args.mode == "postgres" else [])
        for f in (done_file, ready_file, worker_log):
            f.unlink(missing_ok=True)
        tmp.rmdir()


def check_results(tasks, task_ids: list[str], want: int) -> None:
    """Confirms the result backend holds a SUCCESS row for every task."""
    import psycopg2

    with psycopg2.connect(tasks.PG_URL) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS' AND task_id = ANY(%s)", (task_ids,))
        (stored,) = cur.fetchone()
    conn.close()
    print(f"  result rows: {stored} of {want} stored as SUCCESS", flush=True)


def cleanup(tasks, queue_name: str, task_ids: list[str]) -> None:
    try:
        with tasks.app.connection_for_write() as conn:
            ch = conn.default_channel
            ch.queue_delete(queue_name)
            ch.exchange_delete(queue_name)
            if tasks.QUEUE_TYPE == "quorum":
                remove_delayed_delivery(conn)
    except Exception as exc:  # noqa: BLE001 - report and go on with the rest of the cleanup
        print(f"could not delete queue {queue_name}: {exc}", file=sys.stderr)
    if task_ids:
        import psycopg2

        with psycopg2.connect(tasks.PG_URL) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM celery_taskmeta WHERE task_id = ANY(%s)", (task_ids,))
        conn.close()


def remove_delayed_delivery(conn) -> None:
    """Deletes the delayed-delivery queues and exchanges a worker declares for quorum queues,
    unless another Celery app on the broker still has a queue bound to them or messages wait."""
    def attempt(op, *args, **kwargs):
        ch = conn.channel()  # a refused operation closes its channel
        try:
            result = op(ch)(*args, **kwargs)
            ch.close()
            return True, result
        except Exception:  # noqa: BLE001 - refused, in use or already gone
            return False, None

    # Refused while any queue other than ours (deleted by now) is bound to it.
    ok, _ = attempt(lambda ch: ch.exchange_delete, "celery_delayed_delivery", if_unused=True)
    if not ok:
        return
    levels = range(28)  # celery_delayed_0 .. celery_delayed_27
    for i in levels:
        # Quorum queues support neither if_empty nor if_unused: look, then delete.
        found, declared = attempt(lambda ch: ch.queue_declare, f"celery_delayed_{i}", passive=True)
        if found and declared.message_count == 0:
            attempt(lambda ch: ch.queue_delete, f"celery_delayed_{i}")
    for i in levels:  # each is bound to the one below it, so from the bottom up
        attempt(lambda ch: ch.exchange_delete, f"celery_delayed_{i}", if_unused=True)


if __name__ == "__main__":
    main()
