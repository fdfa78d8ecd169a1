"""Money: the only package that knows order states, limits and how a purchase is made.

- ``book``: the order book, the one reader and writer of order states in the ledger;
- ``limits``: price caps, a count per day, monthly budgets, and what a charge counts;
- ``pipeline``: ``buy_once``, the one pipeline of every purchase (``renew``,
  ``renew --auto``), with reconciliation after a crash and verification after the buy;
- ``journal``: what a provider records about the requests it sent (``ctx.journal``), kept
  in the ledger beside the orders.

Commands decide and present; they call into this package and never touch order states.
"""
