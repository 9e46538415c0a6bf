"""The state store: one SQLite file (WAL mode) shared by the TUI, the runner and the watchdog.

Each process opens its own `StateStore`; each thread gets its own connection. Writes are
short transactions with a busy timeout, so separate processes interleave safely. The
schema is versioned (`console.state.schema`). Nothing secret is ever stored: every text
that enters goes through the redactor. Step state is written by the checklist engine
alone (`console.checklist.engine`); the rest of the console reads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from console.errors import StateError
from console.redact import redact
from console.state.errors import state_error
from console.state.records import (
    FINISHED,
    EventRecord,
    InstanceRecord,
    RunRecord,
    RunStatus,
    StepRecord,
    event_from_row,
    instance_from_row,
    run_from_row,
    step_from_row,
    to_json,
)
from console.state.schema import DB_NAME, MIGRATIONS, SCHEMA_VERSION

OUTPUTS_SUPERSEDED = "outputs.superseded"
"""The event kind of `StateStore.supersede_step_outputs` (not a ``step.*`` transition)."""


class StateStore:
    """Typed access to the state database. Safe to share between threads and processes."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_NAME
        self._local = threading.local()

    @classmethod
    def open(cls, state_dir: Path) -> "StateStore":
        """Open (creating and migrating if needed) the store in ``state_dir``."""
        state_dir = Path(state_dir).expanduser()
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(
                f"cannot create state dir {state_dir}: {exc.strerror}", hint="pass a writable --state-dir"
            ) from None
        if not os.access(state_dir, os.W_OK | os.X_OK):
            raise StateError(f"state dir {state_dir} is not writable", hint="pass a writable --state-dir")
        store = cls(state_dir)
        store._migrate()
        return store

    # -- connections -----------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA busy_timeout = 30000")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
            except sqlite3.DatabaseError as exc:
                raise self._corrupt(exc) from None
            self._local.conn = conn
        return conn

    def _corrupt(self, exc: BaseException) -> StateError:
        """The right error for what SQLite said: damaged, disk full, read-only or busy (`state_error`)."""
        return state_error(self.path, exc)

    def _tx(self) -> "_Transaction":
        return _Transaction(self._conn(), self)

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _migrate(self) -> None:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            if current > SCHEMA_VERSION:
                conn.execute("ROLLBACK")
                raise StateError(
                    f"state database {self.path} has schema {current}, newer than this console's {SCHEMA_VERSION}",
                    hint="upgrade retrain-console, or pass another --state-dir",
                )
            for version in range(current, SCHEMA_VERSION):
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
            if row is None:
                conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            else:
                conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._corrupt(exc) from None

    def schema_version(self) -> int:
        return int(self._query("SELECT version FROM schema_version")[0][0])

    # -- runs and steps ----------------------------------------------------------------

    def create_run(
        self,
        run_id: str,
        *,
        checklist: str,
        checklist_path: str,
        profile: str,
        params: dict[str, Any],
        steps: list[tuple[str, str, str]],
        policies: dict[str, dict[str, float]] | None = None,
    ) -> None:
        """Record a new run and its steps (name, registered step, plan), all PENDING, with each
        step's retry and timeout policy (``policies`` by step name), in one transaction."""
        now = time.time()
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO runs (id, checklist, checklist_path, profile, params, status, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
                (run_id, checklist, checklist_path, profile, to_json(params), now, now),
            )
            for idx, (name, step, plan) in enumerate(steps):
                conn.execute(
                    "INSERT INTO steps (run_id, idx, name, step, state, plan, policy)"
                    " VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                    (run_id, idx, name, step, redact(plan), to_json((policies or {}).get(name, {}))),
                )
            _insert_event(
                conn, run_id, None, "run.created", f"run {run_id} created ({checklist})", {"profile": profile}
            )

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return run_from_row(rows[0]) if rows else None

    def list_runs(self, limit: int = 20) -> list[RunRecord]:
        return [run_from_row(r) for r in self._query("SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", (limit,))]

    def latest_unfinished_run(self, checklist: str | None = None) -> RunRecord | None:
        """The newest run that did not succeed (what `console resume` picks); manual runs are never resumed."""
        sql = "SELECT * FROM runs WHERE status NOT IN (?, ?, ?)"
        args: tuple[Any, ...] = (RunStatus.SUCCEEDED.value, RunStatus.MANUAL.value, RunStatus.SUPERSEDED.value)
        if checklist:
            sql += " AND checklist = ?"
            args = (*args, checklist)
        rows = self._query(sql + " ORDER BY created_at DESC LIMIT 1", args)
        return run_from_row(rows[0]) if rows else None

    def set_run_status(
        self, run_id: str, status: RunStatus, *, summary: str | None = None, pid: int | None = None
    ) -> None:
        now = time.time()
        status = RunStatus(status)
        finished = now if status in FINISHED else None
        with self._tx() as conn:
            conn.execute(
                "UPDATE runs SET status = ?, updated_at = ?, finished_at = ?,"
                " summary = COALESCE(?, summary), driver_pid = COALESCE(?, driver_pid) WHERE id = ?",
                (status.value, now, finished, redact(summary) if summary is not None else None, pid, run_id),
            )
            _insert_event(conn, run_id, None, f"run.{status}", redact(summary or f"run {status}"), {})

    def heartbeat(self, run_id: str) -> None:
        """The console driving this run is alive (the watchdog reads this)."""
        with self._tx() as conn:
            conn.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (time.time(), run_id))

    def steps(self, run_id: str) -> list[StepRecord]:
        return [step_from_row(r) for r in self._query("SELECT * FROM steps WHERE run_id = ? ORDER BY idx", (run_id,))]

    def get_step(self, run_id: str, name: str) -> StepRecord | None:
        rows = self._query("SELECT * FROM steps WHERE run_id = ? AND name = ?", (run_id, name))
        return step_from_row(rows[0]) if rows else None

    def update_step(
        self,
        run_id: str,
        name: str,
        state: str,
        *,
        message: str,
        attempt: int | None = None,
        started_at: float | None = None,
        finished_at: float | None = None,
        clear_finished: bool = False,
        summary: str | None = None,
        details: dict[str, Any] | None = None,
        outputs: dict[str, Any] | None = None,
        policy: dict[str, float] | None = None,
    ) -> None:
        """Record a step transition and its event in one transaction (nothing happens before it is stored)."""
        sets = {
            "state": state,
            "attempt": attempt,
            "started_at": started_at,
            "finished_at": finished_at,
            "summary": summary,
            "details": details,
            "outputs": outputs,
            "policy": policy,
        }
        self._write_step(
            run_id,
            name,
            sets,
            clear_finished=clear_finished,
            event=f"step.{state}",
            message=message,
            data={"attempt": attempt} if attempt else {},
        )

    def supersede_step_outputs(
        self,
        run_id: str,
        name: str,
        *,
        outputs: dict[str, Any],
        message: str,
        summary: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Replace a finished step's outputs (and summary, details) without a new transition.

        For a later step that learned what the steps after it must use instead (a replacement
        instance): the step stays as it was, and one ``outputs.superseded`` event says why.
        The engine calls it (`Engine.supersede_outputs`); nothing else writes step state.
        """
        self._write_step(
            run_id,
            name,
            {"outputs": outputs, "summary": summary, "details": details},
            event=OUTPUTS_SUPERSEDED,
            message=message,
            data={},
        )

    def _write_step(
        self,
        run_id: str,
        name: str,
        values: dict[str, Any],
        *,
        event: str,
        message: str,
        data: dict[str, Any],
        clear_finished: bool = False,
    ) -> None:
        """Set the given step columns (None leaves one as it is) and log ``event``, in one transaction."""
        encode = {"summary": redact, "details": to_json, "outputs": to_json, "policy": to_json}
        given = {column: value for column, value in values.items() if value is not None}
        sets = [f"{column} = ?" for column in given]
        args = [encode.get(column, lambda v: v)(value) for column, value in given.items()]
        if clear_finished:
            sets.append("finished_at = NULL")
        with self._tx() as conn:
            if sets:
                conn.execute(f"UPDATE steps SET {', '.join(sets)} WHERE run_id = ? AND name = ?", (*args, run_id, name))
            conn.execute("UPDATE runs SET updated_at = ? WHERE id = ?", (time.time(), run_id))
            _insert_event(conn, run_id, name, event, message, data)

    def step_outputs(self, run_id: str, name: str) -> dict[str, Any]:
        rows = self._query("SELECT outputs FROM steps WHERE run_id = ? AND name = ?", (run_id, name))
        return json.loads(rows[0][0]) if rows else {}

    # -- events ------------------------------------------------------------------------

    def add_event(
        self, run_id: str | None, step: str | None, kind: str, message: str, data: dict[str, Any] | None = None
    ) -> int:
        with self._tx() as conn:
            return _insert_event(conn, run_id, step, kind, message, data or {})

    def events(self, run_id: str | None = None, *, after_id: int = 0, limit: int = 10_000) -> list[EventRecord]:
        if run_id is None:
            rows = self._query("SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
        else:
            rows = self._query(
                "SELECT * FROM events WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?", (run_id, after_id, limit)
            )
        return [event_from_row(r) for r in rows]

    # -- instances and costs -------------------------------------------------------------

    def upsert_instance(
        self,
        instance_id: str,
        *,
        run_id: str | None,
        provider: str,
        state: str,
        instance_type: str = "",
        zone: str = "",
        launched_at: float | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO instances (id, run_id, provider, instance_type, zone, state, launched_at, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET state = excluded.state,"
                " run_id = COALESCE(excluded.run_id, instances.run_id),"
                " data = CASE WHEN excluded.data = '{}' THEN instances.data ELSE excluded.data END",
                (
                    instance_id,
                    run_id,
                    provider,
                    instance_type,
                    zone,
                    state,
                    launched_at or time.time(),
                    to_json(data or {}),
                ),
            )

    def mark_instance_terminated(self, instance_id: str, reason: str) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE instances SET state = 'terminated', terminated_at = COALESCE(terminated_at, ?),"
                " terminate_reason = ? WHERE id = ?",
                (time.time(), redact(reason), instance_id),
            )
            row = conn.execute("SELECT run_id FROM instances WHERE id = ?", (instance_id,)).fetchone()
            _insert_event(
                conn,
                row[0] if row else None,
                None,
                "instance.terminated",
                f"{instance_id} terminated: {reason}",
                {"instance_id": instance_id},
            )

    def instances(self, *, run_id: str | None = None, active_only: bool = False) -> list[InstanceRecord]:
        sql = "SELECT * FROM instances WHERE 1 = 1"
        args: list[Any] = []
        if run_id is not None:
            sql += " AND run_id = ?"
            args.append(run_id)
        if active_only:
            sql += " AND state NOT IN ('terminated', 'shutting-down')"
        rows = self._query(sql + " ORDER BY launched_at", tuple(args))
        return [instance_from_row(r) for r in rows]

    def add_cost_sample(
        self,
        instance_id: str,
        run_id: str | None,
        spot_usd_per_h: float,
        on_demand_usd_per_h: float | None,
        source: str,
    ) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO costs (instance_id, run_id, ts, spot_usd_per_h, on_demand_usd_per_h, source)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (instance_id, run_id, time.time(), spot_usd_per_h, on_demand_usd_per_h, source),
            )

    def cost_samples(self, instance_id: str) -> list[sqlite3.Row]:
        return self._query("SELECT * FROM costs WHERE instance_id = ? ORDER BY ts", (instance_id,))

    # -- gates -------------------------------------------------------------------------

    def add_gate(
        self,
        *,
        passed: bool,
        expires_at: float,
        feature_hash: str,
        model_hashes: dict[str, str],
        record: dict[str, Any],
    ) -> int:
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO gates (created_at, expires_at, passed, feature_hash, model_hashes, record)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), expires_at, int(passed), feature_hash, to_json(model_hashes), to_json(record)),
            )
            return int(cur.lastrowid or 0)

    def latest_gate(self) -> sqlite3.Row | None:
        rows = self._query("SELECT * FROM gates ORDER BY id DESC LIMIT 1")
        return rows[0] if rows else None

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table (for tests that prove bad input changed nothing)."""
        tables = [r[0] for r in self._query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: [tuple(r) for r in self._query(f"SELECT * FROM {t}")] for t in tables}


class _Transaction:
    """``with store._tx() as conn``: BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error."""

    def __init__(self, conn: sqlite3.Connection, store: StateStore) -> None:
        self.conn = conn
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise self.store._corrupt(exc) from None
        return self.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.DatabaseError as err:
                raise self.store._corrupt(err) from None
        else:
            if self.conn.in_transaction:  # SQLite has already rolled back on a full disk
                with contextlib.suppress(sqlite3.DatabaseError):
                    self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError):
                raise self.store._corrupt(exc) from None


def _insert_event(
    conn: sqlite3.Connection, run_id: str | None, step: str | None, kind: str, message: str, data: dict[str, Any]
) -> int:
    cur = conn.execute(
        "INSERT INTO events (run_id, step, ts, kind, message, data) VALUES (?, ?, ?, ?, ?, ?)",
        (run_id, step, time.time(), kind, redact(message), to_json(data)),
    )
    return int(cur.lastrowid or 0)
