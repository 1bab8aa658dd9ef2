"""Pure protocol logic: imports no trio, quart or httpx (tests/test_layers.py enforces it)."""
