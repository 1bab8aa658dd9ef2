"""Upstream providers: the protocol (base), the httpx client (http), the simulator."""
