"""State a fleet of gateway processes shares through Redis (``redis_url``): the
connection (``client.py``) and the Redis implementations of the limiters, the channels'
health and the thinking memory. Chosen in ``runtime.py``; without ``redis_url`` none of
this is used and every process keeps its own state."""
