"""Outgoing webhooks: an outbox of events written with the changes they report, delivered
at least once, in order per endpoint, signed, retried, visible.

* ``catalog`` (pure): the event types;
* ``outbox``: ``record_event`` - the one function every change calls, in its transaction;
* ``signing``, ``targets``, ``retries``, ``payloads`` (pure): signatures, URL and address
  rules, the retry schedule, what each payload carries;
* ``resolver`` and ``sender`` (I/O): DNS with the private-address rule, the HTTP client;
* ``queue``: the per-endpoint claim and the outcomes; ``delivery``: the ``webhooks`` job;
* ``service``: the use cases behind ``newsletter webhook`` (and an API layer).
"""
