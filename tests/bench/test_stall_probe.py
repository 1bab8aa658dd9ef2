"""The SQLite stall probe (a measurement of the store, kept with the benchmarks)."""


def test_the_stall_probe_runs(tmp_path, capsys):
    """python -m bench.stall_probe (the figures in storage/sqlite/reader.py), in miniature."""
    from bench import stall_probe

    stall_probe.main(["--dir", str(tmp_path), "--wal-mb", "2", "--writer-seconds", "0.1", "--idle-seconds", "0.1",
                      "--after-seconds", "0.1", "--roundtrips", "5"])
    out = capsys.readouterr().out
    assert "| idle | find_key, inline |" in out and "| after | loop lag" in out
    assert "place_hold, inline" not in out and "settle, inline" not in out  # writes never on the loop
