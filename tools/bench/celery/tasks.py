"""Celery app with one no-op task, for a throughput comparison with reelq's no-op job bench.

Configured from the environment, which bench.py sets for both itself and the worker it starts:

  CELERY_BROKER            AMQP URL (default amqp://guest:guest@127.0.0.1:5672//)
  CELERY_BENCH_MODE        none: no result backend; postgres: results stored in PostgreSQL
  CELERY_BENCH_PG          libpq URL of the result database (postgres mode)
  CELERY_BENCH_QUEUE       queue name, unique per run so runs never see each other's messages
  CELERY_BENCH_QUEUE_TYPE  classic (default) or quorum
  CELERY_BENCH_CONFIRM     1: publisher confirms (each publish waits for the broker)
  CELERY_BENCH_PREFETCH    messages prefetched per pool slot (default 64)
  CELERY_BENCH_DONE        file the task appends "submit_time done_time" to when it succeeds
  CELERY_BENCH_READY       file the worker creates once it consumes

The queue and its exchange are durable and every message is persistent (delivery mode 2), and
tasks are acknowledged after they ran (acks_late), as reelq's jobs are.
"""

import os
import time

from celery import Celery, Task, signals
from kombu import Exchange, Queue

BROKER = os.environ.get("CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
MODE = os.environ.get("CELERY_BENCH_MODE", "none")
PG_URL = os.environ.get("CELERY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/celery_bench")
QUEUE = os.environ.get("CELERY_BENCH_QUEUE", "celery-bench")
QUEUE_TYPE = os.environ.get("CELERY_BENCH_QUEUE_TYPE", "classic")
CONFIRM = os.environ.get("CELERY_BENCH_CONFIRM", "0") == "1"
PREFETCH = int(os.environ.get("CELERY_BENCH_PREFETCH", "64"))
DONE_FILE = os.environ.get("CELERY_BENCH_DONE", "")
READY_FILE = os.environ.get("CELERY_BENCH_READY", "")

if MODE not in ("none", "postgres"):
    raise SystemExit(f"CELERY_BENCH_MODE must be none or postgres, not {MODE!r}")

app = Celery("celery_bench", broker=BROKER)

exchange = Exchange(QUEUE, type="direct", durable=True, delivery_mode="persistent")
queue_args = {"x-queue-type": "quorum"} if QUEUE_TYPE == "quorum" else None
queue = Queue(QUEUE, exchange, routing_key=QUEUE, durable=True, queue_arguments=queue_args)

app.conf.update(
    task_queues=[queue],
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    task_create_missing_queues=False,
    task_default_delivery_mode="persistent",
    task_serializer="json",
    accept_content=["json"],
    # Acknowledged only after the task ran, so a crashed worker's tasks are redelivered.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # Prefetch = multiplier x pool slots. A no-op task takes well under a millisecond, so the
    # worker needs a deep buffer to never wait for a round trip to the broker; 64 per slot keeps
    # it busy without one worker hoarding the queue.
    worker_prefetch_multiplier=PREFETCH,
    worker_disable_rate_limits=True,
    worker_hijack_root_logger=False,
    # Quorum queues do not support global QoS; Celery then switches to per-consumer QoS.
    worker_detect_quorum_queues=True,
    # Broadcast commands (inspect, ping) are not needed; readiness comes from worker_ready.
    worker_enable_remote_control=False,
    broker_connection_retry_on_startup=True,
    broker_pool_limit=int(os.environ.get("CELERY_BENCH_POOL_LIMIT", "64")),
    broker_transport_options={"confirm_publish": CONFIRM},
)

if MODE == "postgres":
    app.conf.update(
        # SQLAlchemy 2.1 picks psycopg 3 for a plain postgresql:// URL; this uses psycopg2.
        result_backend="db+" + PG_URL.replace("postgresql://", "postgresql+psycopg2://", 1).replace(
            "postgres://", "postgresql+psycopg2://", 1
        ),
        task_ignore_result=False,
        result_extended=False,
        # Results stay until the bench deletes its rows; no periodic cleanup task runs.
        result_expires=None,
    )
else:
    app.conf.update(result_backend=None, task_ignore_result=True)

_done_fd = None


def _record(line: bytes) -> None:
    """Appends one short line; O_APPEND writes this small are atomic, so processes may share the file."""
    global _done_fd
    if not DONE_FILE:
        return
    if _done_fd is None:
        _done_fd = os.open(DONE_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_done_fd, line)


class RecordingTask(Task):
    def on_success(self, retval, task_id, args, kwargs):
        # Called after the result is stored (postgres mode), so "done" includes that write.
        submitted = args[0] if args else 0.0
        _record(f"{submitted:.6f} {time.time():.6f}\n".encode())


@app.task(base=RecordingTask, name="bench.noop")
def noop(submitted: float) -> None:
    """Does nothing; `submitted` is the client's time.time() at apply_async, for latency."""
    return None


@signals.worker_ready.connect
def _ready(**_kwargs) -> None:
    if READY_FILE:
        with open(READY_FILE, "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
