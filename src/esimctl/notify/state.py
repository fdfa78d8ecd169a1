"""De-duplication of notifications, kept in the ledger (tables of migration ``m004_notify``).

- ``notify_conditions``: the standing conditions seen now (low data, an account failing...),
  by key, with the subject they are about (an account, or an account's eSIM) and since when.
  A condition of a subject this run looked at that no longer holds is cleared: when it comes
  back it is news again.
- ``notify_sent``: what was delivered to which target, when. A standing condition is sent
  again after ``renotify``; a one-off (a top-up bought) never again. A delivery that failed
  is not recorded, so the next run tries it again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from esimctl.ledger import Ledger
from esimctl.serialize import iso, parse_iso


class NotifyState:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def seen(self, key: str, subject: str, now: datetime) -> datetime:
        """Record that condition ``key`` holds now; return since when it has held."""
        with self.ledger.tx() as db:
            row = db.execute(
                "SELECT first_seen FROM notify_conditions WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO notify_conditions (key, subject, first_seen, last_seen) "
                    "VALUES (?,?,?,?)",
                    (key, subject, iso(now), iso(now)),
                )
                return now
            db.execute("UPDATE notify_conditions SET last_seen = ? WHERE key = ?", (iso(now), key))
        return parse_iso(row["first_seen"]) or now

    def clear_others(self, subjects: Iterable[str], holding: set[str]) -> None:
        """Conditions of ``subjects`` (looked at by this run) not in ``holding`` are over:
        forgotten, with what was sent about them."""
        with self.ledger.tx() as db:
            for subject in subjects:
                rows = db.execute(
                    "SELECT key FROM notify_conditions WHERE subject = ?", (subject,)
                ).fetchall()
                for r in rows:
                    if r["key"] not in holding:
                        db.execute("DELETE FROM notify_conditions WHERE key = ?", (r["key"],))
                        db.execute("DELETE FROM notify_sent WHERE key = ?", (r["key"],))

    def due(self, key: str, target: str, now: datetime, *, renotify: timedelta | None) -> bool:
        """Should ``key`` go to ``target`` now? Never sent: yes. Sent: only a standing
        condition (``renotify`` given) once that much time has passed."""
        row = self.ledger.db.execute(
            "SELECT sent_at FROM notify_sent WHERE key = ? AND target = ?", (key, target)
        ).fetchone()
        if row is None:
            return True
        if renotify is None:
            return False
        sent = parse_iso(row["sent_at"])
        return sent is None or now - sent >= renotify

    def sent(self, key: str, target: str, now: datetime) -> None:
        with self.ledger.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO notify_sent (key, target, sent_at) VALUES (?,?,?)",
                (key, target, iso(now)),
            )
