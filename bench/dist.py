"""The self-contained /opt/svcwrap (docker/svcwrap-dist, issue 12) beside a venv install.

Three figures: the layer each approach adds to an image (raw and gzip -9 compressed) beside
tini's static binary; exec → child running from the tree vs from a venv of the same Debian
python3.11 with the same wheels pip-installed, interleaved in one run; RSS of both, plain and
registered at the double. The tree must exist: docker/svcwrap-dist/build-local.sh makes its
tarball, which is extracted to /opt/svcwrap here (as root) when that is missing or older.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import IO, Optional

from measure import Double, Result, registered_argv
from util import REPO, UNSHARE, Unavailable, median, pid1_of, rss_mb, spawn, stop

TREE = Path("/opt/svcwrap")
TARBALL = REPO / "docker" / "svcwrap-dist" / "out" / "svcwrap-dist.tar.gz"
WHEELHOUSE = REPO / "docker" / "svcwrap-dist" / "wheelhouse"
DEBIAN_PYTHON = "/usr/bin/python3.11"  # the interpreter the tree is made from
VENV_IMAGE = "svcwrap-bench-venv:local"
SIZE = "layer size (raw / gzip -9)"


def ensure_tree() -> Path:
    """/opt/svcwrap/bin/svcwrap, extracted from the tarball when missing or stale."""
    if not TARBALL.exists():
        raise Unavailable("no tree: run docker/svcwrap-dist/build-local.sh")
    stamp = TREE / ".from-tarball"
    if not stamp.exists() or stamp.stat().st_mtime < TARBALL.stat().st_mtime:
        if os.geteuid() != 0:
            raise Unavailable("extracting the tree to /opt/svcwrap needs root")
        shutil.rmtree(TREE, ignore_errors=True)
        with tarfile.open(TARBALL) as tar:
            tar.extractall("/", members=[m for m in tar if m.name.startswith("opt/svcwrap")])
        stamp.touch()
    return TREE / "bin" / "svcwrap"


def venv_install(out_dir: Path) -> Path:
    """A venv of Debian's python3.11 with svcwrap's wheels installed by pip (the old image's way)."""
    if not Path(DEBIAN_PYTHON).exists():
        raise Unavailable(f"{DEBIAN_PYTHON} (Debian's python3.11) is not installed")
    venv = out_dir / "venv-wheels"
    script = venv / "bin" / "svcwrap"
    if not (venv / "bin" / "pip").exists():
        subprocess.run([DEBIAN_PYTHON, "-m", "venv", str(venv)], check=True, capture_output=True)
    # every time: the wheelhouse holds the svcwrap the tree was built from
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                    "--no-index", "--find-links", str(WHEELHOUSE), "--force-reinstall", "svcwrap"],
                   check=True, capture_output=True)
    return script


def gz_size(data: bytes) -> int:
    return len(gzip.compress(data, 9))


def venv_layer() -> tuple[int, int]:
    """Raw and compressed size of the layers the venv approach added to the redis image:
    apt-get install python3 python3-venv, python3 -m venv, pip install the wheels (built once
    as VENV_IMAGE from the stand-in base, with the host's network for apt)."""
    if shutil.which("docker") is None:
        raise Unavailable("no docker")
    if subprocess.run(["docker", "image", "inspect", VENV_IMAGE], capture_output=True).returncode:
        base = "svcwrap-base:bookworm"
        script = ("set -e; apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                  "--no-install-recommends python3 python3-venv >/dev/null; rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; "
                  "python3 -m venv /opt/svcwrap; /opt/svcwrap/bin/pip install -q --no-cache-dir "
                  "--no-index --find-links /wheels svcwrap")
        name = f"svcwrap-bench-venv-{os.getpid()}"
        done = subprocess.run(["docker", "run", "--name", name, "--network", "host", "-v",
                               f"{WHEELHOUSE}:/wheels:ro", base, "sh", "-c", script],
                              capture_output=True, text=True, timeout=600)
        try:
            if done.returncode:
                raise Unavailable(f"venv image: {done.stderr.strip()[-200:]}")
            subprocess.run(["docker", "commit", name, VENV_IMAGE], check=True, capture_output=True)
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    saved = subprocess.run(["docker", "save", VENV_IMAGE], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(saved)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        top = tar.extractfile(manifest[0]["Layers"][-1]).read()  # type: ignore[union-attr]
    with tarfile.open(fileobj=io.BytesIO(top)) as layer:
        raw = sum(m.size for m in layer.getmembers() if m.isfile())
    return raw, gz_size(top)


def sizes(layer: bool) -> list[Result]:
    tree_raw = sum(p.stat().st_size for p in TREE.rglob("*") if p.is_file() and not p.is_symlink())
    rows = [Result(SIZE, "svcwrap tree (/opt/svcwrap)", "MB", tree_raw / 1e6, TARBALL.stat().st_size / 1e6, 1,
                   note="p90 column: compressed (the tarball)", target="≤ 40 MB raw",
                   met=tree_raw <= 40e6)]
    tini = Path(shutil.which("tini-static") or "/usr/bin/tini-static")
    if tini.exists():
        data = tini.read_bytes()
        rows.append(Result(SIZE, "tini-static", "MB", len(data) / 1e6, gz_size(data) / 1e6, 1,
                           note="p90 column: compressed"))
    if not layer:
        return rows + [Result(SIZE, "Debian python3 + venv + wheels", "MB", na="n/a: not with --quick")]
    try:
        raw, packed = venv_layer()
        rows.append(Result(SIZE, "Debian python3 + venv + wheels", "MB", raw / 1e6, packed / 1e6, 1,
                           note="p90 column: compressed; the layer the example image used to add"))
    except (Unavailable, subprocess.SubprocessError, OSError, KeyError) as err:
        rows.append(Result(SIZE, "Debian python3 + venv + wheels", "MB", na=f"n/a: {err}"))
    return rows


def startup(helper: Path, runs: int, tree: Path, venv: Path) -> list[Result]:
    h = str(helper)
    variants = {"none": UNSHARE + [h, "stamp"],
                "svcwrap, tree": UNSHARE + [str(tree), "--no-register", "--", h, "stamp"],
                "svcwrap, venv + pip": UNSHARE + [str(venv), "--no-register", "--", h, "stamp"]}
    # the venv as in an image: pip's own .pyc files, nothing redirected
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for run in range(runs + 1):  # interleaved; run 0 warms the page cache
        for name, argv in variants.items():
            proc, lines = spawn([h, "launch"] + argv, env=env)
            launched = int(lines.expect("launch", 10)[1])
            running = int(lines.expect("child", 10)[1])
            proc.wait()
            if run > 0:
                samples[name].append((running - launched) / 1e6)
    base = median(samples["none"])
    overhead = {name: median(vals) - base for name, vals in samples.items()}
    figure = "exec → child running: tree vs venv"
    rows = []
    for name, vals in samples.items():
        r = Result.of(figure, name, "ms", vals, note=f"+{overhead[name]:.2f} ms over none"
                      if name != "none" else "unshare → child")
        if name == "svcwrap, tree":
            ratio = overhead[name] / overhead["svcwrap, venv + pip"]
            r.note += f"; {ratio:.3f} × the venv's overhead"
            r.target, r.met = "≤ 1.05 × venv", ratio <= 1.05
        rows.append(r)
    return rows


def rss(helper: Path, tree: Path, venv: Path, double: Optional[Double], log: IO[bytes]) -> list[Result]:
    h = str(helper)
    commands = {"svcwrap, tree": UNSHARE + [str(tree), "--no-register", "--", h, "signals"],
                "svcwrap, venv + pip": UNSHARE + [str(venv), "--no-register", "--", h, "signals"]}
    if double is not None:
        for label, exe in (("tree", tree), ("venv + pip", venv)):
            argv = registered_argv(f"bench-dist-{label[:4]}", f"bench-dist-{label[:4]}-1", double,
                                   "none", "10s")
            commands[f"svcwrap, {label}, registered"] = UNSHARE + [str(exe)] + argv[1:] + [h, "signals"]
    procs = {name: spawn(argv, stderr=log) for name, argv in commands.items()}
    rows = []
    try:
        pids = {}
        for name, (proc, lines) in procs.items():
            lines.expect("ready", 10)
            pids[name] = pid1_of(proc.pid)
        if double is not None:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and (double.passing("bench-dist-tree") < 1
                                                   or double.passing("bench-dist-venv") < 1):
                time.sleep(0.05)
        time.sleep(1.0)  # start-up work (imports, registration) done
        samples: dict[str, list[float]] = {name: [] for name in pids}
        for _ in range(5):
            for name, pid in pids.items():
                samples[name].append(rss_mb(pid))
            time.sleep(0.2)
        for name, vals in samples.items():
            r = Result.of("RSS: tree vs venv", name, "MB", vals, note="5 samples, 1 s after start")
            if name == "svcwrap, tree, registered":  # the target is the tree's; the venv is the peer
                r.target, r.met = "≤ 30 MB", median(vals) <= 30
            rows.append(r)
    finally:
        for proc, _ in procs.values():
            stop(proc)
    return rows


def dist(helper: Path, runs: int, double: Optional[Double], log: IO[bytes],
         layer: bool = True) -> list[Result]:
    """All three figures; `layer` False skips building the venv image (a minute, for --quick)."""
    tree = ensure_tree()
    venv = venv_install(helper.parent)
    return sizes(layer) + startup(helper, runs, tree, venv) + rss(helper, tree, venv, double, log)
