"""The state database's schema: versioned migrations applied in order.

A database written by a newer console (a higher version than `SCHEMA_VERSION`) is refused
rather than touched. A migration is a list of statements separated by ``;``.
"""

from __future__ import annotations

DB_NAME = "state.db"

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema.
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        checklist TEXT NOT NULL,
        checklist_path TEXT NOT NULL,
        profile TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL,
        heartbeat_at REAL,
        driver_pid INTEGER,
        summary TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE steps (
        run_id TEXT NOT NULL REFERENCES runs(id),
        idx INTEGER NOT NULL,
        name TEXT NOT NULL,
        step TEXT NOT NULL,
        state TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        plan TEXT NOT NULL DEFAULT '',
        started_at REAL,
        finished_at REAL,
        summary TEXT NOT NULL DEFAULT '',
        details TEXT NOT NULL DEFAULT '{}',
        outputs TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (run_id, name)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT,
        step TEXT,
        ts REAL NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        data TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_run ON events(run_id, id);
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        run_id TEXT,
        provider TEXT NOT NULL,
        instance_type TEXT NOT NULL DEFAULT '',
        zone TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        launched_at REAL,
        terminated_at REAL,
        terminate_reason TEXT NOT NULL DEFAULT '',
        data TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE costs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        instance_id TEXT NOT NULL,
        run_id TEXT,
        ts REAL NOT NULL,
        spot_usd_per_h REAL NOT NULL,
        on_demand_usd_per_h REAL,
        source TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX costs_instance ON costs(instance_id, ts);
    CREATE TABLE gates (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        passed INTEGER NOT NULL,
        feature_hash TEXT NOT NULL,
        model_hashes TEXT NOT NULL,
        record TEXT NOT NULL DEFAULT '{}'
    );
    """,
    # 2: each step's retry and timeout policy, recorded with the run when it is created (and
    # again when an attempt starts), so the cost projection never re-reads the checklist file.
    """
    ALTER TABLE steps ADD COLUMN policy TEXT NOT NULL DEFAULT '{}';
    """,
    # 3: managed training jobs (SageMaker), for the cost ledger and the watchdog: billed by the
    # service for their billable seconds, not by an instance of ours (console/training_jobs.py).
    """
    CREATE TABLE training_jobs (
        name TEXT PRIMARY KEY,
        run_id TEXT,
        backend TEXT NOT NULL,
        instance_type TEXT NOT NULL DEFAULT '',
        spot INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        secondary TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        ended_at REAL,
        training_s REAL,
        billable_s REAL,
        usd_per_h REAL,
        source TEXT NOT NULL DEFAULT '',
        stop_reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX training_jobs_run ON training_jobs (run_id);
    """,
    # 4: AWS Batch jobs, for the cost ledger: Batch bills the instances of its compute
    # environments, so a job's figure is an estimate, its children's vCPU-seconds at a spot
    # rate, recorded by the engine and by each watchdog pass that sees it (console/batch_ledger.py).
    """
    CREATE TABLE batch_jobs (
        job_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        run_id TEXT,
        status TEXT NOT NULL,
        vcpus REAL NOT NULL DEFAULT 1,
        children INTEGER NOT NULL DEFAULT 1,
        child_seconds REAL NOT NULL DEFAULT 0,
        usd_per_vcpu_h REAL NOT NULL,
        source TEXT NOT NULL DEFAULT '',
        seen_by TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        seen_at REAL NOT NULL,
        ended_at REAL
    );
    CREATE INDEX batch_jobs_run ON batch_jobs (run_id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
