"""Notifications: what ``status --notify`` and ``renew --auto`` tell the user, and where.

- ``events``: the ``Event`` (one thing worth a message: its kind, the eSIM and figures, one
  suggested action) and how the runs of ``status`` and ``renew --auto`` produce them;
- ``state``: de-duplication kept in the ledger: a standing condition is sent once until it
  clears or ``[notify] renotify`` passes; a one-off (a top-up bought) once ever;
- ``targets``: where events go — Apprise URLs kept in the keyring (``esimctl notify add``),
  or a ``command`` that gets the event as JSON on stdin — and delivery bounded in time, so a
  target that hangs or refuses never fails or delays a renewal.

Apprise is imported only when an event is actually sent to an Apprise target.
"""
