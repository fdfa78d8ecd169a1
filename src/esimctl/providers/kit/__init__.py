"""The provider kit: what every API provider needs and none should write again.

The rule: **a provider module holds only what is specific to its API: endpoints, field
names, quirks.** Anything two providers would otherwise write twice lives here, once,
with its tests in ``tests/test_provider_kit.py``.

* ``http``: ``ApiClient`` (one ``httpx.AsyncClient`` per account): throttles
  (``Throttle``, ``KeyedThrottle``), retries of reads, purchases never retried blindly,
  the error shapes, the ``Scrubber`` that keeps secrets out of every message, the refusal
  of plain ``http://``, ``retry_after`` and ``shape_of``.
* ``values``: reading what an API sends, whatever type it arrives as: ``parse_time``
  (ISO 8601 in its variants, epoch seconds or milliseconds), ``to_decimal``, ``to_int``,
  ``to_str``, ``to_bool``, ``as_dict``, ``as_list``, ``records``. Nothing in it raises;
  what cannot be read is None (or empty), never a guess.
* ``units``: bytes from figures in KB/MB/GB/TB of 1000 or 1024 (``to_bytes``), money
  from major or minor units (``to_money``).
* ``oauth``: ``TokenSource``, an OAuth client-credentials token kept in the account's
  ``ctx.token_cache`` on the injected clock, with ``with_bearer`` (one new token and one
  resend after a 401).
* ``paging``: the pagination styles (``numbered_pages``, ``counted_pages``,
  ``cursor_pages``), each bounded: a page limit, and a stop at a repeated or empty page.
* ``concurrency``: ``bounded_map`` and the one ``DEFAULT_CONCURRENCY``.
* ``allowance``: a plan's shape from the seller's words: the speed after a daily
  allowance (``speed_in``: ``FUP1Mbps`` → ``1 Mbps``) and a daily amount (``daily_in``).

Import the submodules themselves (``from esimctl.providers.kit.values import
parse_time``); this package imports nothing, so importing one piece costs only that piece.
"""
