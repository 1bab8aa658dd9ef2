"""Pure protocol logic: imports no trio, quart or httpx (tests/test_purity.py enforces it)."""
