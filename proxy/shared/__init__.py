"""State a fleet of gateway processes shares: through Redis (``redis_url``), the
connection (``client.py``) and the Redis implementations of the limiters, the channels'
health and the thinking memory (``thinking.py``), chosen in ``runtime.py`` (without
``redis_url`` every process keeps its own state); and through the ledger, the change
feed every running gateway follows (``changes.py``: keys, accounts and channels changed
by any process)."""
