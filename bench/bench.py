#!/usr/bin/env python3
"""svcwrap side by side with tini, dumb-init and no wrapper at all, each as a real PID 1.

    python bench/bench.py [--runs N] [--quick] [--only startup,signals,...]

Prints a markdown table and writes OUT/results.md, OUT/results.json and OUT/bench.png
(OUT = bench/out by default). Needs root (unshare --pid), gcc, tini, dumb-init, psutil and
matplotlib; the Consul figures need tests/consul_double. Nothing here asserts on time: a
missed target is a "NO" in the table, never a failing exit status.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import control  # noqa: E402
import dist  # noqa: E402
import measure  # noqa: E402
from measure import Double, Result  # noqa: E402
from util import (BENCH_DIR, DOUBLE_NOTES, UNSHARE, Unavailable, build_helper, check_unshare,  # noqa: E402
                  spawn, start_double, stop)

GROUPS = ["startup", "signals", "orphans", "idle", "heartbeats", "lifecycle", "scale", "massstop",
          "dist", "control"]
CONSUL_GROUPS = {"signals", "heartbeats", "lifecycle", "scale", "massstop"}  # idle runs without the double too


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run for CI: 3 runs, 5 s idle, 300 heartbeats, 5 services, "
                        "10 stops at once")
    p.add_argument("--runs", type=int, help="runs per timed figure [50; 3 with --quick]")
    p.add_argument("--idle-seconds", type=float, help="idle CPU window [60; 5 with --quick]")
    p.add_argument("--heartbeats", type=int, help="heartbeats for the RSS growth figure "
                                                   "[10000; 300 with --quick]")
    p.add_argument("--scale", help="numbers of wrapped services, comma-separated "
                                   "[50,200,500; 5 with --quick]")
    p.add_argument("--scale-seconds", type=float, help="observation window per size "
                                                       "[30; 3 with --quick]")
    p.add_argument("--massstop-n", type=int, help="svcwraps stopped at once by the massstop group "
                                                   "[300; 10 with --quick]")
    p.add_argument("--only", help=f"comma-separated subset of: {','.join(GROUPS)}")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "out", help="output directory [bench/out]")
    args = p.parse_args(argv)
    quick = args.quick
    args.runs = args.runs or (3 if quick else 50)
    args.idle_seconds = args.idle_seconds or (5.0 if quick else 60.0)
    args.heartbeats = args.heartbeats or (300 if quick else 10000)
    args.scale = [int(n) for n in (args.scale or ("5" if quick else "50,200,500")).split(",")]
    args.scale_seconds = args.scale_seconds or (3.0 if quick else 30.0)
    args.massstop_n = args.massstop_n or (10 if quick else 300)
    args.groups = args.only.split(",") if args.only else GROUPS
    unknown = set(args.groups) - set(GROUPS)
    if unknown:
        p.error(f"--only: unknown {', '.join(sorted(unknown))}")
    return args


# -- running the figures ------------------------------------------------------------------------------
def preflight_registration(helper: Path, double: Double, log) -> None:  # type: ignore[no-untyped-def]
    """Does this svcwrap register at all? Saves waiting out every Consul figure's timeout."""
    argv = UNSHARE + measure.registered_argv("bench-preflight", "bench-preflight-1", double,
                                             "none", "10s") + [str(helper), "signals"]
    proc, lines = spawn(argv, stderr=log)
    try:
        lines.expect("ready", 10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if double.passing("bench-preflight") >= 1:
                return
            if proc.poll() is not None:
                raise Unavailable(f"svcwrap exited with {proc.returncode} (see out/svcwrap.log)")
            time.sleep(0.05)
        raise Unavailable("svcwrap did not register a passing service with the double within 10 s")
    finally:
        stop(proc)


def guarded(group: str, figure: str, run: Callable[[], list[Result]]) -> list[Result]:
    """Run one group; an error becomes an n/a row instead of ending the whole bench."""
    started = time.monotonic()
    print(f"bench: {group} ...", file=sys.stderr, flush=True)
    try:
        rows = run()
    except Unavailable as err:
        rows = [Result(figure, "svcwrap", "", na=f"n/a: {err}")]
    except Exception as err:  # noqa: BLE001 - reported in the table, with the traceback on stderr
        traceback.print_exc()
        rows = [Result(figure, "svcwrap", "", na=f"n/a: {type(err).__name__}: {err}")]
    print(f"bench: {group} done in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return rows


def run_all(args: argparse.Namespace) -> tuple[list[Result], list[tuple[int, float]]]:
    helper = build_helper(args.out)
    results: list[Result] = []
    curve: list[tuple[int, float]] = []
    try:
        check_unshare()
    except Unavailable as err:
        return [Result("all figures", "all", "", na=f"n/a: {err}")], curve
    missing = [tool for tool in ("tini", "dumb-init") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"bench: not installed: {', '.join(missing)} (apt-get install tini dumb-init)")

    groups = args.groups
    log = open(args.out / "svcwrap.log", "wb")
    double: Optional[Double] = None
    consul_na = ""
    if CONSUL_GROUPS & set(groups) or {"idle", "dist"} & set(groups):
        try:
            double = Double(start_double())
            preflight_registration(helper, double, log)
        except Unavailable as err:
            consul_na = str(err)

    def consul(group: str, figure: str, run: Callable[[], list[Result]]) -> list[Result]:
        if consul_na:
            return [Result(figure, "svcwrap", "", na=f"n/a: {consul_na}")]
        return guarded(group, figure, run)

    if "startup" in groups:
        results += guarded("startup", "exec → child running", lambda: measure.startup(helper, args.runs))
    if "signals" in groups:
        results += guarded("signals", "kill(1, SIGUSR1) → child handler",
                           lambda: measure.signal_latency(helper, args.runs))
        results += consul("signals", "kill(1, SIGUSR1) → child handler, agent misbehaving [double]",
                          lambda: measure.signal_latency_misbehaving(helper, args.runs, double, log))  # type: ignore[arg-type]
    if "orphans" in groups:
        results += guarded("orphans", "orphans reaped /s (1,000)",
                           lambda: measure.orphans(helper, args.runs))
    if "idle" in groups:
        rows = guarded("idle", "CPU idle (% of a core)",
                       lambda: measure.idle(helper, args.idle_seconds,
                                            None if consul_na else double, log))
        if consul_na:
            rows.append(Result("CPU idle (% of a core)", "svcwrap registered (TTL 10s)", "%",
                               na=f"n/a: {consul_na}"))
        results += rows
    if "heartbeats" in groups:
        def heartbeats() -> list[Result]:
            assert double is not None
            rows, points = measure.heartbeat_growth(helper, args.heartbeats, double, log)
            curve.extend(points)
            return rows
        results += consul("heartbeats", "RSS registered, heartbeats", heartbeats)
    if "lifecycle" in groups:
        results += consul("lifecycle", "readiness → passing [double]",
                          lambda: measure.lifecycle(helper, args.runs, double, log))  # type: ignore[arg-type]
    if "scale" in groups:
        results += consul("scale", "services on one agent [double]",
                          lambda: measure.scale(helper, args.scale, args.scale_seconds, double, log))  # type: ignore[arg-type]
    if "massstop" in groups:
        results += consul("massstop", f"{args.massstop_n} stops at once [double]",
                          lambda: measure.massstop(helper, args.massstop_n, double, log))  # type: ignore[arg-type]
    if "dist" in groups:  # the self-contained /opt/svcwrap beside a venv install (bench/dist.py)
        results += guarded("dist", "svcwrap tree vs venv",
                           lambda: dist.dist(helper, args.runs, None if consul_na else double, log,
                                             layer=not args.quick))
    if "control" in groups:  # the control socket and --metrics (bench/control.py)
        results += guarded("control", "control socket and metrics",
                           lambda: control.control(helper, args.runs))
    if double is not None:
        double.handle.stop()  # type: ignore[attr-defined]
    log.close()
    return results, curve


# -- the report ----------------------------------------------------------------------------------------
def fmt(value: Optional[float], unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value:.3f} ms" if value < 1 else f"{value:.2f} ms"
    if unit == "µs":
        return f"{value:.0f} µs" if value >= 100 else f"{value:.1f} µs"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "%":
        return f"{value:.3f} %"
    if unit == "req/s":
        return f"{value:.1f} req/s"
    return f"{value:g}"


def ratio(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.2f}×"


def table(results: list[Result]) -> str:
    lines = ["| figure | wrapper | median | p90 | n | × tini | × python | target (svcwrap) | met | notes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        met = "—" if r.met is None else ("yes" if r.met else "**NO**")
        if r.na:
            lines.append(f"| {r.figure} | {r.wrapper} | {r.na} | | | | | {r.target or ''} | — | {r.note} |")
            continue
        lines.append(f"| {r.figure} | {r.wrapper} | {fmt(r.median, r.unit)} | {fmt(r.p90, r.unit)} "
                     f"| {r.n} | {ratio(r.vs_tini)} | {ratio(r.vs_python)} | {r.target or '—'} "
                     f"| {met} | {r.note} |")
    return "\n".join(lines)


def machine() -> str:
    def out(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (done.stdout or done.stderr).strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    cpu = next((line.split(":", 1)[1].strip() for line in out(["lscpu"]).splitlines()
                if line.startswith("Model name")), "?")
    return "\n".join([
        f"- CPU: {cpu}, {os.cpu_count()} CPUs (lscpu)",
        f"- kernel: {platform.release()}",
        f"- python: {platform.python_version()} ({sys.executable})",
        f"- tini: {out(['tini', '--version'])}; dumb-init: {out(['dumb-init', '--version'])}",
        f"- svcwrap: {out([measure.SVCWRAP, '--version'])}",
    ])


def chart(results: list[Result], curve: list[tuple[int, float]], path: Path) -> None:
    """One panel per figure: bars at the median, a tick at p90."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: dict[str, list[Result]] = {}
    for r in results:
        if r.median is not None and not r.figure.startswith("RSS registered"):  # the curve shows it
            key = "Consul lifecycle [double]" if r.figure.endswith("[double]") and "services" not in r.figure \
                else ("services on one agent [double]" if "services" in r.figure else r.figure)
            if " stops at once: " in r.figure:  # one panel per figure, a bar per wrapper
                key = r.figure
            figures.setdefault(key, []).append(r)
    panels = list(figures.items()) + ([("RSS of registered svcwrap vs heartbeats", [])] if curve else [])
    if not panels:
        return
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4 * rows), squeeze=False)
    for ax, (title, group) in zip(axes.flat, panels):
        if not group:  # the RSS curve
            ax.plot([c[0] for c in curve], [c[1] for c in curve], marker=".")
            ax.set_xlabel("heartbeats")
            ax.set_ylabel("RSS (MB)")
        else:
            labels = [r.wrapper if "lifecycle" not in title and "services" not in title
                      else r.figure.replace(" [double]", "") for r in group]
            medians = [r.median for r in group]
            colors = ["tab:red" if "svcwrap" in r.wrapper else "tab:gray" for r in group]
            ax.barh(range(len(group)), medians, color=colors)
            for y, r in enumerate(group):
                if r.p90 is not None:
                    ax.plot([r.p90], [y], marker="|", markersize=14, color="black")
            ax.set_yticks(range(len(group)), labels, fontsize=8)
            ax.invert_yaxis()
            ax.set_xlabel(group[0].unit + " (bar: median, tick: p90)")
        ax.set_title(title, fontsize=10)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("svcwrap vs tini vs dumb-init vs no wrapper (PID 1 in a new PID namespace)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_before = os.getloadavg()
    results, curve = run_all(args)
    duration = time.monotonic() - started
    load = (f"load average (1 min) {load_before[0]:.1f} at the start, {os.getloadavg()[0]:.1f} "
            f"at the end, on {os.cpu_count()} CPUs")
    mode = "quick" if args.quick else "full"
    header = (f"svcwrap bench ({mode}: {args.runs} runs per timed figure, idle {args.idle_seconds:g} s, "
              f"{args.heartbeats} heartbeats, services {','.join(map(str, args.scale))}, "
              f"{args.massstop_n} stops at once; "
              f"took {duration:.0f} s; {load}). Figures marked [double] ran against tests/consul_double, "
              "a Consul agent stand-in, not a real Consul; tini and dumb-init have no Consul figures."
              + "".join(f" Note: {note}." for note in DOUBLE_NOTES))
    body = table(results)
    print(header + "\n\n" + body)
    (args.out / "results.md").write_text(f"{header}\n\n{body}\n\nMachine:\n\n{machine()}\n")
    (args.out / "results.json").write_text(json.dumps(
        {"mode": mode, "seconds": duration, "results": [asdict(r) for r in results],
         "rss_curve": curve}, indent=1))
    try:
        chart(results, curve, args.out / "bench.png")
    except ImportError:
        print("bench: matplotlib missing, no chart (pip install -r bench/requirements.txt)",
              file=sys.stderr)
    print(f"\nbench: wrote {args.out}/results.md, results.json, bench.png in {duration:.0f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
