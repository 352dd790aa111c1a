"""The memory database: SQLite (standard library), WAL with synchronous=FULL, versioned schema.

A turn is acknowledged when ``add_turn`` returns: it is then committed and on disk,
and survives ``kill -9`` or a power cut. Erase deletes the rows, purges the
full-text index, overwrites freed pages (``secure_delete``), checkpoints the WAL
and vacuums, so the erased words are nowhere in the database files afterwards.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from companion.errors import CompanionError

DB_NAME = "memory.sqlite3"

#: Migrations by version; each runs once, in order, inside a transaction.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE children (
               id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL)""",
        """CREATE TABLE sessions (
               id INTEGER PRIMARY KEY,
               child_id INTEGER NOT NULL REFERENCES children(id) ON DELETE CASCADE,
               started_at REAL NOT NULL, ended_at REAL, summary TEXT)""",
        """CREATE TABLE turns (
               id INTEGER PRIMARY KEY,
               session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
               child_id INTEGER NOT NULL REFERENCES children(id) ON DELETE CASCADE,
               at REAL NOT NULL, heard TEXT NOT NULL, said TEXT NOT NULL,
               interrupted INTEGER NOT NULL DEFAULT 0, meta TEXT NOT NULL DEFAULT '{}')""",
        "CREATE INDEX turns_child ON turns(child_id, id)",
        """CREATE TABLE facts (
               id INTEGER PRIMARY KEY,
               child_id INTEGER NOT NULL REFERENCES children(id) ON DELETE CASCADE,
               kind TEXT NOT NULL, value TEXT NOT NULL,
               source_turn_id INTEGER REFERENCES turns(id) ON DELETE SET NULL,
               at REAL NOT NULL, UNIQUE(child_id, kind, value))""",
        """CREATE TABLE alerts (
               id INTEGER PRIMARY KEY,
               child_id INTEGER NOT NULL REFERENCES children(id) ON DELETE CASCADE,
               at REAL NOT NULL, category TEXT NOT NULL, transcript TEXT NOT NULL,
               seen INTEGER NOT NULL DEFAULT 0)""",
        """CREATE VIRTUAL TABLE turns_fts USING fts5(
               heard, said, content='turns', content_rowid='id', tokenize='porter unicode61')""",
        """CREATE TRIGGER turns_ai AFTER INSERT ON turns BEGIN
               INSERT INTO turns_fts(rowid, heard, said) VALUES (new.id, new.heard, new.said); END""",
        """CREATE TRIGGER turns_ad AFTER DELETE ON turns BEGIN
               INSERT INTO turns_fts(turns_fts, rowid, heard, said) VALUES ('delete', old.id, old.heard, old.said);
           END""",
    ),
    # Parent settings (quiet hours, limits...) and the parent password's hash; not per child, never erased
    # with a child's memory.
    2: (
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    # Voiceprints (speaker/): biometric data about a child, one per child and encoder; erased with the child,
    # with the parents' consent withdrawn, or alone; exported only when asked.
    3: (
        """CREATE TABLE voiceprints (
               child_id INTEGER PRIMARY KEY REFERENCES children(id) ON DELETE CASCADE,
               model TEXT NOT NULL, vector BLOB NOT NULL, utterances INTEGER NOT NULL,
               speech_s REAL NOT NULL, enrolled_at REAL NOT NULL)""",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)


class MemoryError_(CompanionError):
    code = "MEMORY_ERROR"


@dataclass(frozen=True)
class StoredTurn:
    id: int
    session_id: int
    at: float
    heard: str
    said: str
    interrupted: bool


@dataclass(frozen=True)
class Fact:
    kind: str
    value: str
    source_turn_id: int | None
    at: float


class MemoryStore:
    """One database file for all children; every query is scoped to one child."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / DB_NAME
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "secure_delete=ON"):
                self._db.execute(f"PRAGMA {pragma}")
            self._migrate()
        except sqlite3.DatabaseError as err:
            raise MemoryError_(f"memory database {self.path} cannot be opened: {err}", code="MEMORY_DB_CORRUPT") from err
        except OSError as err:
            raise MemoryError_(f"cannot create the data folder {data_dir}: {err}", code="MEMORY_DB_UNAVAILABLE") from err
        self._lock = threading.Lock()

    # -- schema -------------------------------------------------------------------------
    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise MemoryError_(f"{self.path} has schema version {version}, newer than this program's "
                               f"{SCHEMA_VERSION}; update companion", code="MEMORY_SCHEMA_TOO_NEW")
        for v in range(version + 1, SCHEMA_VERSION + 1):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[v]:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {v}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _write(self, fn):
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(self._db)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                return result
            except sqlite3.OperationalError as err:
                if "disk" in str(err).lower() or "full" in str(err).lower():
                    raise MemoryError_(f"cannot write memory: {err}", code="DISK_FULL") from err
                raise

    # -- children and sessions ------------------------------------------------------------
    def child_id(self, name: str, *, create: bool = True) -> int | None:
        row = self._db.execute("SELECT id FROM children WHERE name = ?", (name,)).fetchone()
        if row or not create:
            return row[0] if row else None
        return self._write(lambda db: db.execute("INSERT INTO children(name, created_at) VALUES (?, ?)",
                                                 (name, time.time())).lastrowid)

    def children(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT name FROM children ORDER BY name")]

    def start_session(self, child: str) -> int:
        cid = self.child_id(child)
        return self._write(lambda db: db.execute("INSERT INTO sessions(child_id, started_at) VALUES (?, ?)",
                                                 (cid, time.time())).lastrowid)

    def end_session(self, session_id: int, summary: str | None) -> None:
        self._write(lambda db: db.execute("UPDATE sessions SET ended_at = ?, summary = ? WHERE id = ?",
                                          (time.time(), summary, session_id)))

    def summaries(self, child: str, limit: int = 3) -> list[str]:
        cid = self.child_id(child, create=False)
        rows = self._db.execute("SELECT summary FROM sessions WHERE child_id = ? AND summary IS NOT NULL "
                                "ORDER BY id DESC LIMIT ?", (cid, limit))
        return [r[0] for r in rows][::-1]

    # -- turns ---------------------------------------------------------------------------
    def add_turn(self, session_id: int, child: str, heard: str, said: str, *, interrupted: bool = False,
                 meta: dict | None = None) -> int:
        """Store a turn; when this returns the turn is durable (acknowledged)."""
        cid = self.child_id(child)
        return self._write(lambda db: db.execute(
            "INSERT INTO turns(session_id, child_id, at, heard, said, interrupted, meta) VALUES (?,?,?,?,?,?,?)",
            (session_id, cid, time.time(), heard, said, int(interrupted), json.dumps(meta or {}))).lastrowid)

    def recent_turns(self, child: str, limit: int) -> list[StoredTurn]:
        cid = self.child_id(child, create=False)
        if cid is None:
            return []
        rows = self._db.execute("SELECT id, session_id, at, heard, said, interrupted FROM turns WHERE child_id = ? "
                                "ORDER BY id DESC LIMIT ?", (cid, limit)).fetchall()
        return [StoredTurn(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in reversed(rows)]

    def search_turns(self, child: str, query: str, limit: int = 3, *, before_id: int | None = None) -> list[StoredTurn]:
        """Earlier turns of this child most relevant to ``query`` (FTS5, BM25)."""
        cid = self.child_id(child, create=False)
        terms = [t for t in _fts_terms(query)]
        if cid is None or not terms:
            return []
        match = " OR ".join(f'heard:"{t}"' for t in terms)  # the child's words; the robot's would echo itself
        rows = self._db.execute(
            "SELECT t.id, t.session_id, t.at, t.heard, t.said, t.interrupted FROM turns_fts f "
            "JOIN turns t ON t.id = f.rowid WHERE turns_fts MATCH ? AND t.child_id = ? AND t.id < ? "
            "ORDER BY bm25(turns_fts) LIMIT ?", (match, cid, before_id or 2**62, limit)).fetchall()
        return [StoredTurn(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def count_turns(self, child: str | None = None) -> int:
        if child is None:
            return self._db.execute("SELECT count(*) FROM turns").fetchone()[0]
        cid = self.child_id(child, create=False)
        return 0 if cid is None else self._db.execute("SELECT count(*) FROM turns WHERE child_id = ?",
                                                      (cid,)).fetchone()[0]

    def count_turns_since(self, child: str, since: float, *, safety_category: str) -> int:
        """A child's turns since ``since`` (epoch seconds) whose input check named ``safety_category``."""
        cid = self.child_id(child, create=False)
        if cid is None:
            return 0
        return self._db.execute("SELECT count(*) FROM turns WHERE child_id = ? AND at >= ? AND "
                                "json_extract(meta, '$.safety.category') = ?", (cid, since, safety_category)
                                ).fetchone()[0]

    # -- facts and alerts -------------------------------------------------------------------
    def add_fact(self, child: str, kind: str, value: str, source_turn_id: int | None) -> None:
        """Keep one value per single-valued kind (name, age...); many for likes, pets, friends."""
        cid = self.child_id(child)

        def write(db):
            if kind in SINGLE_VALUED:
                db.execute("DELETE FROM facts WHERE child_id = ? AND kind = ?", (cid, kind))
            db.execute("INSERT INTO facts(child_id, kind, value, source_turn_id, at) VALUES (?,?,?,?,?) "
                       "ON CONFLICT(child_id, kind, value) DO UPDATE SET at = excluded.at, "
                       "source_turn_id = excluded.source_turn_id", (cid, kind, value, source_turn_id, time.time()))

        self._write(write)

    def facts(self, child: str, limit: int = 30) -> list[Fact]:
        cid = self.child_id(child, create=False)
        if cid is None:
            return []
        rows = self._db.execute("SELECT kind, value, source_turn_id, at FROM facts WHERE child_id = ? "
                                "ORDER BY at DESC LIMIT ?", (cid, limit)).fetchall()
        return [Fact(*r) for r in rows]

    def add_alert(self, child: str, category: str, transcript: str) -> int:
        cid = self.child_id(child)
        return self._write(lambda db: db.execute("INSERT INTO alerts(child_id, at, category, transcript) "
                                                 "VALUES (?,?,?,?)", (cid, time.time(), category, transcript)).lastrowid)

    def alerts(self, child: str) -> list[dict]:
        cid = self.child_id(child, create=False)
        rows = self._db.execute("SELECT id, at, category, transcript, seen FROM alerts WHERE child_id = ? "
                                "ORDER BY id", (cid,)).fetchall()
        return [{"id": r[0], "at": r[1], "category": r[2], "transcript": r[3], "seen": bool(r[4])} for r in rows]

    def all_alerts(self) -> list[dict]:
        """Every child's alerts, unseen first, newest first."""
        rows = self._db.execute("SELECT a.id, c.name, a.at, a.category, a.transcript, a.seen FROM alerts a "
                                "JOIN children c ON c.id = a.child_id ORDER BY a.seen, a.id DESC").fetchall()
        return [{"id": r[0], "child": r[1], "at": r[2], "category": r[3], "transcript": r[4], "seen": bool(r[5])}
                for r in rows]

    def mark_alert_seen(self, alert_id: int) -> bool:
        return self._write(lambda db: db.execute("UPDATE alerts SET seen = 1 WHERE id = ?", (alert_id,)).rowcount) > 0

    def turns(self, child: str, *, query: str = "", limit: int = 200) -> list[StoredTurn]:
        """A child's transcript, newest first; ``query`` searches what was said by either side (FTS5)."""
        cid = self.child_id(child, create=False)
        if cid is None:
            return []
        if query.strip():
            terms = [t for t in re.findall(r"[a-z0-9']+", query.lower()) if len(t) > 1][:12]
            if not terms:
                return []
            match = " AND ".join(f'"{t}"' for t in terms)
            rows = self._db.execute(
                "SELECT t.id, t.session_id, t.at, t.heard, t.said, t.interrupted FROM turns_fts f "
                "JOIN turns t ON t.id = f.rowid WHERE turns_fts MATCH ? AND t.child_id = ? ORDER BY t.id DESC "
                "LIMIT ?", (match, cid, limit)).fetchall()
        else:
            rows = self._db.execute("SELECT id, session_id, at, heard, said, interrupted FROM turns "
                                    "WHERE child_id = ? ORDER BY id DESC LIMIT ?", (cid, limit)).fetchall()
        return [StoredTurn(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def delete_turn(self, child: str, turn_id: int) -> bool:
        """Delete one exchange (the full-text index and freed pages are scrubbed)."""
        cid = self.child_id(child, create=False)

        def write(db):
            db.execute("UPDATE facts SET source_turn_id = NULL WHERE source_turn_id = ?", (turn_id,))
            return db.execute("DELETE FROM turns WHERE id = ? AND child_id = ?", (turn_id, cid)).rowcount

        deleted = cid is not None and self._write(write) > 0
        if deleted:
            self._scrub()
        return deleted

    def talk_seconds(self, child: str, since: float) -> float:
        """How long the child talked with the robot since ``since`` (each turn's own measure, or an estimate)."""
        cid = self.child_id(child, create=False)
        if cid is None:
            return 0.0
        total = 0.0
        for heard, said, meta in self._db.execute("SELECT heard, said, meta FROM turns WHERE child_id = ? AND at >= ?",
                                                  (cid, since)):
            talk = json.loads(meta).get("talk_s")
            total += float(talk) if talk is not None else (len(heard.split()) + len(said.split())) / 2.5
        return total

    def fact_rows(self, child: str) -> list[dict]:
        cid = self.child_id(child, create=False)
        if cid is None:
            return []
        rows = self._db.execute("SELECT id, kind, value, at FROM facts WHERE child_id = ? ORDER BY kind, at DESC",
                                (cid,)).fetchall()
        return [{"id": r[0], "kind": r[1], "value": r[2], "at": r[3]} for r in rows]

    def update_fact(self, child: str, fact_id: int, value: str) -> bool:
        cid = self.child_id(child, create=False)
        value = value.strip()
        if cid is None or not value:
            return False
        try:
            return self._write(lambda db: db.execute("UPDATE facts SET value = ?, at = ? WHERE id = ? AND child_id = ?",
                                                     (value, time.time(), fact_id, cid)).rowcount) > 0
        except sqlite3.IntegrityError:  # the same fact already exists: the corrected one merges into it
            return self.delete_fact(child, fact_id)

    def delete_fact(self, child: str, fact_id: int) -> bool:
        cid = self.child_id(child, create=False)
        deleted = cid is not None and self._write(
            lambda db: db.execute("DELETE FROM facts WHERE id = ? AND child_id = ?", (fact_id, cid)).rowcount) > 0
        if deleted:
            self._scrub()
        return deleted

    # -- settings ------------------------------------------------------------------------------
    def setting(self, key: str, default=None):
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def put_setting(self, key: str, value) -> None:
        self._write(lambda db: db.execute("INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) "
                                          "DO UPDATE SET value = excluded.value", (key, json.dumps(value))))

    # -- retention, export, erase -----------------------------------------------------------
    def purge_expired(self, retention_days: float, *, now: float | None = None) -> int:
        """Delete transcripts older than the retention period (facts and alerts stay)."""
        cutoff = (now or time.time()) - retention_days * 86400

        def write(db):
            db.execute("UPDATE facts SET source_turn_id = NULL WHERE source_turn_id IN "
                       "(SELECT id FROM turns WHERE at < ?)", (cutoff,))
            return db.execute("DELETE FROM turns WHERE at < ?", (cutoff,)).rowcount

        n = self._write(write)
        if n:
            self._scrub()
        return n

    # -- voiceprints ------------------------------------------------------------------------
    def put_voiceprint(self, child: str, model: str, vector, *, utterances: int, speech_s: float) -> None:
        """Store (or replace) ``child``'s voiceprint: float32 unit vector from encoder ``model``."""
        blob = np.asarray(vector, dtype="<f4").tobytes()
        cid = self.child_id(child)
        self._write(lambda db: db.execute(
            "INSERT INTO voiceprints(child_id, model, vector, utterances, speech_s, enrolled_at) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT(child_id) DO UPDATE SET model=excluded.model, vector=excluded.vector, "
            "utterances=excluded.utterances, speech_s=excluded.speech_s, enrolled_at=excluded.enrolled_at",
            (cid, model, blob, utterances, float(speech_s), time.time())))
        self._scrub()  # the replaced vector's bytes go too

    def voiceprints(self, model: str) -> dict:
        """Every child's voiceprint made by encoder ``model``: name -> float32 vector."""
        rows = self._db.execute("SELECT c.name, v.vector FROM voiceprints v JOIN children c ON c.id = v.child_id "
                                "WHERE v.model = ? ORDER BY c.name", (model,)).fetchall()
        return {name: np.frombuffer(blob, dtype="<f4").astype(np.float32) for name, blob in rows}

    def voiceprint_info(self) -> list[dict]:
        """What a parent sees: whose voice is known, from how much speech, when, by which encoder."""
        rows = self._db.execute("SELECT c.name, v.model, v.utterances, v.speech_s, v.enrolled_at FROM voiceprints v "
                                "JOIN children c ON c.id = v.child_id ORDER BY c.name").fetchall()
        return [{"child": r[0], "model": r[1], "utterances": r[2], "speech_s": round(r[3], 1), "enrolled_at": r[4]}
                for r in rows]

    def delete_voiceprint(self, child: str | None = None) -> int:
        """Erase ``child``'s voiceprint (None: every child's); returns how many went."""
        if child is None:
            n = self._write(lambda db: db.execute("DELETE FROM voiceprints").rowcount)
        else:
            cid = self.child_id(child, create=False)
            if cid is None:
                return 0
            n = self._write(lambda db: db.execute("DELETE FROM voiceprints WHERE child_id = ?", (cid,)).rowcount)
        if n:
            self._scrub()
        return n

    def export_child(self, child: str, *, voiceprint: bool = False) -> dict:
        cid = self.child_id(child, create=False)
        if cid is None:
            raise MemoryError_(f"no memory of a child named {child!r}", code="MEMORY_CHILD_UNKNOWN")
        turns = self._db.execute("SELECT id, session_id, at, heard, said, interrupted, meta FROM turns "
                                 "WHERE child_id = ? ORDER BY id", (cid,)).fetchall()
        sessions = self._db.execute("SELECT id, started_at, ended_at, summary FROM sessions WHERE child_id = ? "
                                    "ORDER BY id", (cid,)).fetchall()
        return {
            "child": child,
            "sessions": [{"id": s[0], "started_at": s[1], "ended_at": s[2], "summary": s[3]} for s in sessions],
            "turns": [{"id": t[0], "session": t[1], "at": t[2], "heard": t[3], "said": t[4], "interrupted": bool(t[5]),
                       "meta": json.loads(t[6])} for t in turns],
            "facts": [{"kind": f.kind, "value": f.value, "source_turn": f.source_turn_id, "at": f.at}
                      for f in self.facts(child, limit=10_000)],
            "alerts": self.alerts(child),
            **({"voiceprint": self._voiceprint_json(cid)} if voiceprint else {}),
        }

    def _voiceprint_json(self, cid: int) -> dict | None:
        row = self._db.execute("SELECT model, vector, utterances, speech_s, enrolled_at FROM voiceprints "
                               "WHERE child_id = ?", (cid,)).fetchone()
        if row is None:
            return None
        return {"model": row[0], "vector": [round(float(x), 6) for x in np.frombuffer(row[1], dtype="<f4")],
                "utterances": row[2], "speech_s": row[3], "enrolled_at": row[4]}

    def erase_child(self, child: str) -> bool:
        cid = self.child_id(child, create=False)
        if cid is None:
            return False

        def write(db):
            db.execute("DELETE FROM voiceprints WHERE child_id = ?", (cid,))
            db.execute("DELETE FROM turns WHERE child_id = ?", (cid,))  # fires the FTS delete trigger
            db.execute("DELETE FROM facts WHERE child_id = ?", (cid,))
            db.execute("DELETE FROM alerts WHERE child_id = ?", (cid,))
            db.execute("DELETE FROM sessions WHERE child_id = ?", (cid,))
            db.execute("DELETE FROM children WHERE id = ?", (cid,))

        self._write(write)
        self._scrub()
        return True

    def erase_all(self) -> None:
        def write(db):
            for table in ("voiceprints", "turns", "facts", "alerts", "sessions", "children"):
                db.execute(f"DELETE FROM {table}")
            db.execute("INSERT INTO turns_fts(turns_fts) VALUES ('delete-all')")

        self._write(write)
        self._scrub()

    def _scrub(self) -> None:
        """Leave no trace of deleted rows: FTS segments merged, WAL emptied, file rebuilt."""
        with self._lock:
            self._db.execute("INSERT INTO turns_fts(turns_fts) VALUES ('optimize')")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def integrity_ok(self) -> bool:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        self._db.close()


#: Kinds that hold one value (a newer statement replaces the older one).
SINGLE_VALUED = frozenset({"name", "age", "birthday", "favourite_colour", "favourite_animal", "favourite_food"})


def _fts_terms(text: str) -> list[str]:
    import re

    stop = {"the", "a", "an", "is", "are", "i", "my", "me", "you", "your", "do", "what", "and", "to", "of", "it",
            "in", "that", "can", "was", "remember", "tell", "about", "did", "does", "have", "has", "know",
            "like", "how", "why", "who", "where", "when", "for", "with", "this", "will", "would", "could", "please",
            "okay", "yes", "not", "don't", "i'm", "let's", "today", "really", "very", "too", "all", "get", "got",
            "going", "want", "there", "they", "them", "some", "just", "now", "then", "our", "out", "one"}
    return [w for w in re.findall(r"[a-z0-9']+", text.lower()) if len(w) > 2 and w not in stop][:12]
