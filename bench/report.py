"""Bench output: a markdown table on stdout, JSON and a PNG plot under bench/results/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from .metrics import Stats, added, capacity


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def markdown(stats: Sequence[Stats], machine: str) -> str:
    lines = [f"Machine: {machine}", ""]
    for scenario in dict.fromkeys(s.scenario for s in stats):
        rows = [s for s in stats if s.scenario == scenario]
        direct = {s.load: s for s in rows if s.arm == "direct"}
        lines += [f"### {scenario}", "",
                  "| arm | load | req | err | TTFT p50 ms | TTFT p99 ms | added TTFT p50/p99 ms | gap p50/p99 ms "
                  "| stalls | tok/s | vs direct | req/s | CPU µs/event | CPU ms/req | RSS MiB | KiB/stream | flags |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for s in rows:
            base = direct.get(s.load)
            extra, ratio = "-", "-"
            if base is not None and s.arm != "direct":
                extra = f"{_fmt(added(s, base, 'ttft_p50_ms'))} / {_fmt(added(s, base, 'ttft_p99_ms'))}"
                if base.tokens_per_s:
                    ratio = f"{s.tokens_per_s / base.tokens_per_s:.3f}"
            lines.append(
                f"| {s.arm} | {s.load}{'/s' if s.mode == 'open' else ''} | {s.requests} | {s.errors} "
                f"| {_fmt(s.ttft_p50_ms)} | {_fmt(s.ttft_p99_ms)} | {extra} "
                f"| {_fmt(s.gap_p50_ms)} / {_fmt(s.gap_p99_ms)} | {s.stalls} | {_fmt(s.tokens_per_s)} | {ratio} "
                f"| {_fmt(s.requests_per_s)} | {_fmt(s.cpu_us_per_event)} | {_fmt(s.cpu_ms_per_request)} "
                f"| {_fmt(s.rss_mib)} "
                f"| {_fmt(s.rss_kib_per_stream)} | {', '.join(s.flags) or '-'} |")
        caps = {arm: capacity([s for s in rows if s.arm == arm]) for arm in dict.fromkeys(s.arm for s in rows)}
        if scenario != "nonstream":
            lines += ["", "Stream capacity: " + ", ".join(f"{arm} {_fmt(c)}" for arm, c in caps.items())]
        lines.append("")
    return "\n".join(lines)


def write_json(stats: Sequence[Stats], meta: dict, path: Path) -> None:
    path.write_text(json.dumps({"meta": meta, "results": [s.as_dict() for s in stats]}, indent=2))


def write_plot(stats: Sequence[Stats], path: Path) -> bool:
    """TTFT p50 and tokens/s against concurrency, one line per arm, one row per scenario.
    Returns False (and writes nothing) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    scenarios = list(dict.fromkeys(s.scenario for s in stats if s.mode == "closed"))
    if not scenarios:
        return False
    fig, axes = plt.subplots(len(scenarios), 2, figsize=(11, 3.6 * len(scenarios)), squeeze=False)
    for row, scenario in zip(axes, scenarios):
        streaming = scenario != "nonstream"
        for arm in dict.fromkeys(s.arm for s in stats if s.scenario == scenario):
            points = sorted((s for s in stats if s.scenario == scenario and s.arm == arm and s.mode == "closed"),
                            key=lambda s: s.load)
            loads = [s.load for s in points]
            row[0].plot(loads, [s.ttft_p50_ms for s in points], marker="o", label=arm)
            rate = [s.tokens_per_s for s in points] if streaming else [s.requests_per_s for s in points]
            row[1].plot(loads, rate, marker="o", label=arm)
        for axis, title in zip(row, ("TTFT p50 (ms)", "output tokens/s" if streaming else "requests/s")):
            axis.set_xscale("log", base=2)
            axis.set_xlabel("concurrent streams")
            axis.set_title(f"{scenario}: {title}")
            axis.grid(True, alpha=0.3)
            axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
