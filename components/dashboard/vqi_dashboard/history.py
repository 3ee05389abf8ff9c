"""The bounded local history: results, the latest state of each alarm, and operator feedback.

One SQLite file in the work folder (WAL, so the web threads read while the writer commits). Only
the writer thread writes, in batches, so a burst of results costs one commit per batch, not one
per result. A result delivered again (same image id) replaces its row. Rows beyond
HistoryMaxRows or older than HistoryMaxAgeHours are deleted as new ones arrive; the file itself
is never deleted, so the history survives restarts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence, Tuple

from shared.messages import ALERT_CLEARED, ALERT_WARNING

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id TEXT NOT NULL UNIQUE,
    ts REAL NOT NULL,
    camera TEXT NOT NULL,
    verdict TEXT NOT NULL,
    top_score REAL NOT NULL,
    detections INTEGER NOT NULL,
    latency_ms REAL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_ts ON results (ts);
CREATE INDEX IF NOT EXISTS results_verdict_ts ON results (verdict, ts);
CREATE INDEX IF NOT EXISTS results_camera_ts ON results (camera, ts);
CREATE TABLE IF NOT EXISTS alerts (
    kind TEXT NOT NULL,
    component TEXT NOT NULL,
    state TEXT NOT NULL,
    ts REAL NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, component)
);
CREATE TABLE IF NOT EXISTS feedback (
    feedback_id TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    label TEXT NOT NULL,
    ts REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_image ON feedback (image_id);
"""
PRUNE_EVERY = 500  # inserted rows between two pruning passes (and once a minute when idle)


def epoch(value: str) -> float:
    """A message's ISO 8601 time as Unix seconds; now when missing or unreadable."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        return time.time()
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


@dataclass(frozen=True)
class Filters:
    """What the results table asks for; every field optional."""

    verdict: str = ""
    camera: str = ""
    since: Optional[float] = None
    until: Optional[float] = None

    def where(self) -> Tuple[str, List[Any]]:
        clauses, args = [], []
        if self.verdict:
            clauses.append("verdict = ?")
            args.append(self.verdict)
        if self.camera:
            clauses.append("camera = ?")
            args.append(self.camera)
        if self.since is not None:
            clauses.append("ts >= ?")
            args.append(self.since)
        if self.until is not None:
            clauses.append("ts < ?")
            args.append(self.until)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def summary_row(result: Dict[str, Any]) -> Dict[str, Any]:
    """What the table and the live stream show of a result (the full one is fetched on click)."""
    detections = result.get("detections") or []
    return {
        "image_id": result.get("image_id", ""),
        "time": result.get("time", ""),
        "camera_id": result.get("camera_id", ""),
        "verdict": result.get("verdict", ""),
        "top_score": round(max((float(d.get("score", 0.0)) for d in detections), default=0.0), 4),
        "detections": len(detections),
        "latency_ms": (result.get("timings_ms") or {}).get("total"),
        "error": result.get("error"),
    }


class History:
    """The SQLite file; `write_*` from the writer thread only, queries from any thread."""

    def __init__(self, path: str, max_rows: int, max_age_h: float) -> None:
        self.path = path
        self.max_rows = max_rows
        self.max_age_s = max_age_h * 3600.0
        self._local = threading.local()
        self._since_prune = 0
        db = self._db()
        db.executescript(SCHEMA)
        db.commit()

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # a power cut may lose the last batch only
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- writes (writer thread) ----------------------------------------------------------------
    def write(self, results: Sequence[Dict[str, Any]] = (), alerts: Sequence[Dict[str, Any]] = (),
              feedback: Sequence[Dict[str, Any]] = ()) -> None:
        """One transaction for a batch of messages (already checked by their dataclasses)."""
        db = self._db()
        db.execute("BEGIN")
        try:
            for r in results:
                row = summary_row(r)
                # REPLACE: a redelivered result takes a new seq, so the row limit drops the
                # oldest arrivals first (and needs no upsert syntax from a newer SQLite).
                db.execute(
                    "INSERT OR REPLACE INTO results (image_id, ts, camera, verdict, top_score, "
                    "detections, latency_ms, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (row["image_id"], epoch(row["time"]), row["camera_id"], row["verdict"],
                     row["top_score"], row["detections"], row["latency_ms"],
                     json.dumps(r, separators=(",", ":"))))
            for a in alerts:
                db.execute(
                    "INSERT OR REPLACE INTO alerts (kind, component, state, ts, body) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (a["kind"], a["component"], a["state"], epoch(a.get("time", "")),
                     json.dumps(a, separators=(",", ":"))))
            for f in feedback:
                db.execute(
                    "INSERT OR REPLACE INTO feedback (feedback_id, image_id, label, ts, body) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (f["feedback_id"], f["image_id"], f["label"], epoch(f.get("time", "")),
                     json.dumps(f, separators=(",", ":"))))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._since_prune += len(results)
        if self._since_prune >= PRUNE_EVERY:
            self.prune()

    def prune(self, now: Optional[float] = None) -> int:
        """Delete results beyond the row and age limits (and their feedback); rows deleted."""
        now = time.time() if now is None else now
        db = self._db()
        self._since_prune = 0
        cur = db.execute("DELETE FROM results WHERE ts < ?", (now - self.max_age_s,))
        deleted = cur.rowcount
        cur = db.execute(
            "DELETE FROM results WHERE seq <= (SELECT seq FROM results ORDER BY seq DESC "
            "LIMIT 1 OFFSET ?)", (self.max_rows,))
        deleted += cur.rowcount
        db.execute("DELETE FROM feedback WHERE image_id NOT IN (SELECT image_id FROM results)")
        db.execute("DELETE FROM alerts WHERE state != 'RAISED' AND ts < ?",
                   (now - self.max_age_s,))
        return deleted

    # -- queries (any thread) ------------------------------------------------------------------
    def page(self, filters: Filters, offset: int, limit: int) -> Tuple[int, List[Dict[str, Any]]]:
        """(rows matching, the page of them, newest first)."""
        where, args = filters.where()
        db = self._db()
        total = db.execute(f"SELECT COUNT(*) FROM results{where}", args).fetchone()[0]
        # each row with its latest feedback label, in the one query
        rows = db.execute(
            "SELECT body, (SELECT label FROM feedback WHERE feedback.image_id = "
            "results.image_id ORDER BY feedback.ts DESC LIMIT 1) AS feedback "
            f"FROM results{where} ORDER BY ts DESC, seq DESC LIMIT ? OFFSET ?",
            [*args, limit, offset]).fetchall()
        return total, [{**summary_row(json.loads(r["body"])), "feedback": r["feedback"]}
                       for r in rows]

    def result(self, image_id: str) -> Optional[Dict[str, Any]]:
        row = self._db().execute("SELECT body FROM results WHERE image_id = ?",
                                 (image_id,)).fetchone()
        return json.loads(row["body"]) if row else None

    def latest_defects(self, limit: int) -> List[Dict[str, Any]]:
        rows = self._db().execute(
            "SELECT body FROM results WHERE verdict = 'DEFECT' ORDER BY ts DESC, seq DESC "
            "LIMIT ?", (limit,)).fetchall()
        return [json.loads(r["body"]) for r in rows]

    def cameras(self) -> List[str]:
        return [r[0] for r in self._db().execute(
            "SELECT DISTINCT camera FROM results ORDER BY camera").fetchall()]

    def verdict_counts(self, since: float, until: float) -> Dict[str, int]:
        rows = self._db().execute(
            "SELECT verdict, COUNT(*) FROM results WHERE ts >= ? AND ts < ? GROUP BY verdict",
            (since, until)).fetchall()
        return {r[0]: r[1] for r in rows}

    def hourly(self, since: float) -> List[Tuple[int, str, int]]:
        """(hour start as Unix seconds, verdict, count) from `since` on."""
        rows = self._db().execute(
            "SELECT CAST(ts / 3600 AS INTEGER) * 3600, verdict, COUNT(*) FROM results "
            "WHERE ts >= ? GROUP BY 1, 2 ORDER BY 1", (since,)).fetchall()
        return [(int(r[0]), r[1], r[2]) for r in rows]

    def latencies(self, since: float, limit: int = 5000) -> List[float]:
        rows = self._db().execute(
            "SELECT latency_ms FROM results WHERE ts >= ? AND latency_ms IS NOT NULL "
            "ORDER BY ts DESC LIMIT ?", (since, limit)).fetchall()
        return [float(r[0]) for r in rows]

    def active_alarms(self) -> List[Dict[str, Any]]:
        """The latest state of each alarm, unless it was cleared; one-off warnings stay listed
        for an hour."""
        rows = self._db().execute(
            "SELECT state, ts, body FROM alerts WHERE state != ? ORDER BY ts DESC",
            (ALERT_CLEARED,)).fetchall()
        hour_ago = time.time() - 3600
        return [json.loads(r["body"]) for r in rows
                if r["state"] != ALERT_WARNING or r["ts"] >= hour_ago]

    def feedback_for(self, image_id: str) -> List[Dict[str, Any]]:
        rows = self._db().execute(
            "SELECT body FROM feedback WHERE image_id = ? ORDER BY ts DESC",
            (image_id,)).fetchall()
        return [json.loads(r["body"]) for r in rows]

    def count(self) -> int:
        return self._db().execute("SELECT COUNT(*) FROM results").fetchone()[0]

