"""The benchmark harness: one command, every tool on the same generated capture, a markdown table.

For each carrier (raw TCP, WebSocket) it generates a capture with ``gen_capture.py`` into a
temporary folder, then times whole processes, several runs each, interleaved so a noisy
neighbour hurts all tools alike:

1. ``mproxy dissect --json FILE > /dev/null``
1b. the same with ``--jobs 2`` (two worker processes, connections split between them)
1c. the same capture cut into ``ROTATED_FILES`` files as ``tcpdump -C`` cuts (``--jobs 1``, the folder as input)
2. tshark with the generated Lua dissector, extracting the M-PROXY fields
2b. plain tshark on the same file, extracting as many TCP fields (what the Lua adds); with
   ``--wireshark ws4.0,ws4.4,ws4.6`` both rows again for each version of the Wireshark matrix
   (tests/wireshark/matrix.py: tshark run as nobody, 4.4 and 4.6 in their Debian roots)
3. Scapy's ``sniff(offline=..., session=TCPSession)`` with the MProxy layer bound, on a
   smaller capture from the same generator and seed (Scapy is too slow for the full size);
   compared by throughput
4. the floor: ``floor.py``, a pcap walk that only locates each TCP payload
5. ``mproxy export FILE -o DIR`` (Parquet tables) on one core, and 5b. the same with
   ``--scheduler`` on a ``distributed.LocalCluster`` of 2 worker processes (1 thread each),
   started once per carrier and kept for its runs; the workers' peak RSS is read from them

Peak RSS is each child's own ``ru_maxrss`` from ``os.wait4`` (in ``measure_child.py``, so that
it is not the harness's): with ``--jobs`` that is the largest
of the parent and its workers (Linux folds reaped children into it), so it is the RSS per worker;
CPU time includes the workers'. Throughput is capture file
bytes (10^6 per MB) over the median wall time. The targets of issue 6 are checked on the
ratios of this one run. Generated captures are deleted at the end unless ``--keep``.

    python benchmarks/run.py                                 # 200 MB, 3 runs, both carriers
    python benchmarks/run.py --size-mb 1000 --runs 1 --tools dissect   # the RSS check
    python benchmarks/run.py --tools tshark_lua,tshark --wireshark ws4.0,ws4.4,ws4.6 --runs 1   # the Lua, per version
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
LUA = REPO / "dissectors" / "mproxy.lua"
sys.path.insert(0, str(BENCH_DIR))

from gen_capture import RAW_PORT, WS_PORT  # noqa: E402

LUA_FIELDS = ("frame.number", "mproxy.kind", "mproxy.service", "mproxy.client_id", "mproxy.datalen",
              "mproxy.name", "mproxy.serviceport")
PLAIN_FIELDS = ("frame.number", "tcp.stream", "tcp.srcport", "tcp.dstport", "tcp.seq", "tcp.len", "tcp.flags")
TOOLS = ("dissect", "dissect_jobs2", "dissect_rotated", "tshark_lua", "tshark", "scapy", "floor", "export",
         "export_dask")
LABELS = {
    "dissect": "(1) `mproxy dissect --json`",
    "dissect_jobs2": "(1b) `mproxy dissect --json --jobs 2`",
    "dissect_rotated": "(1c) `mproxy dissect --json DIR`",
    "tshark_lua": "(2) tshark + mproxy.lua",
    "tshark": "(2b) tshark alone",
    "scapy": "(3) Scapy TCPSession + MProxy",
    "floor": "(4) floor (pcap walk)",
    "export": "(5) `mproxy export` (Parquet), 1 process",
    "export_dask": "(5b) `mproxy export --scheduler`, LocalCluster of 2 worker processes",
}
DASK_EXPORT_SPEEDUP = 1.4
ROTATED_FILES = 20
JOBS_SPEEDUP = 1.6
ROTATED_SLOWDOWN = 0.10
RSS_LIMIT_MB = 150.0


@dataclass
class Measure:
    """The runs of one tool on one file."""

    tool: str
    file_bytes: int
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    note: str = ""
    critical_cpu: list[float] = field(default_factory=list)
    """Sharded runs: the client's CPU plus the busiest worker's, what the wall time would be on idle cores."""

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def mb_per_s(self) -> float:
        return self.file_bytes / 1e6 / self.median

    @property
    def cpu_mb_per_s(self) -> float:
        """Throughput per CPU second: steadier than wall time when other work shares the cores."""
        return self.file_bytes / 1e6 / statistics.median(self.cpu_times)

    @property
    def peak_rss_mb(self) -> float:
        return max(self.rss_kb) / 1024


def run_child(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int, int, str]:
    """(wall seconds, CPU seconds, peak RSS KB, exit code, stderr tail) of one process, stdout to /dev/null.

    Measured by ``measure_child.py``, which forks the command, so its peak RSS is not the harness's.
    """
    read_end, write_end = os.pipe()
    with os.fdopen(read_end) as results, open(os.devnull, "wb") as devnull, tempfile.TemporaryFile() as err:
        try:
            subprocess.run([sys.executable, "-S", str(BENCH_DIR / "measure_child.py"), str(write_end), *argv],
                           stdout=devnull, stderr=err, env=env, pass_fds=(write_end,), check=False)
        finally:
            os.close(write_end)  # ours closed, the result reads to its end
        line = results.read().split()
        err.seek(0)
        tail = err.read()[-400:].decode("utf-8", "replace")
    if len(line) != 4:
        raise SystemExit(f"benchmark: could not measure {argv[0]}: {tail.strip()}")
    elapsed, cpu, rss, code = line
    return float(elapsed), float(cpu), int(rss), int(code), tail


def mproxy_command() -> str:
    """The ``mproxy`` of the interpreter running this: its virtual environment need not be on PATH."""
    return shutil.which("mproxy", path=str(Path(sys.executable).parent)) or shutil.which("mproxy") or "mproxy"


def tshark_env(config_dir: Path) -> dict[str, str]:
    """An empty profile, so a user's Wireshark settings cannot change the work done."""
    env = dict(os.environ)
    env["WIRESHARK_CONFIG_DIR"] = str(config_dir)
    env["HOME"] = str(config_dir)
    return env


def plain_decode_as(carrier: str) -> list[str]:
    """Plain tshark's raw-TCP tunnel port decoded as ``data``.

    Left to itself, tshark offers each segment of an unknown port to its heuristic
    dissectors, and on tunnel bodies (TLS, random bytes) thrift and HTTP match by accident
    and ask TCP to reassemble ever longer spans: over two minutes for 200 MB instead of
    seconds. That is a cost of the capture, not of the Lua dissector, whose heuristic claims
    the connection first; so the baseline for "what the Lua adds" is tshark with the port
    as plain data. The WebSocket variant needs no help: HTTP and WebSocket claim port 80.
    """
    return ["-d", f"tcp.port=={RAW_PORT},data"] if carrier == "tcp" else []


def commands(capture: Path, slice_capture: Path, rotated: Path, carrier: str, config_dir: Path,
             scheduler: str | None = None, versions: tuple[str, ...] = ()) -> dict[str, tuple[list[str], dict]]:
    py = sys.executable
    env = tshark_env(config_dir)
    port = RAW_PORT if carrier == "tcp" else WS_PORT

    def fields(names: tuple[str, ...]) -> list[str]:
        return [arg for name in names for arg in ("-e", name)]

    mproxy = mproxy_command()
    lua_args = ["-X", f"lua_script:{LUA}", "-r", str(capture), "-T", "fields", *fields(LUA_FIELDS)]
    plain_args = ["-r", str(capture), *plain_decode_as(carrier), "-T", "fields", *fields(PLAIN_FIELDS)]
    per_version = {}
    for version_id in versions:
        per_version[f"tshark_lua@{version_id}"] = (["matrix", version_id, *lua_args], {"config_dir": config_dir})
        per_version[f"tshark@{version_id}"] = (["matrix", version_id, *plain_args], {"config_dir": config_dir})
    return {
        **per_version,
        "dissect": ([mproxy, "dissect", "--json", str(capture)], {}),
        "dissect_jobs2": ([mproxy, "dissect", "--json", "--jobs", "2", str(capture)], {}),
        "dissect_rotated": ([mproxy, "dissect", "--json", str(rotated)], {}),
        "tshark_lua": (["tshark", "-X", f"lua_script:{LUA}", "-r", str(capture), "-T", "fields",
                        *fields(LUA_FIELDS)], {"env": env}),
        "tshark": (["tshark", "-r", str(capture), *plain_decode_as(carrier), "-T", "fields", *fields(PLAIN_FIELDS)],
                   {"env": env}),
        "scapy": ([py, str(BENCH_DIR / "scapy_path.py"), str(slice_capture), "--port", str(port)], {}),
        "floor": ([py, str(BENCH_DIR / "floor.py"), str(capture)], {}),
        "export": ([mproxy, "export", str(capture), "-o", str(capture.with_suffix(".export"))], {}),
        "export_dask": ([mproxy, "export", str(capture), "-o", str(capture.with_suffix(".export-dask")),
                         "--scheduler", scheduler or ""], {}),
    }


def matrix_module() -> Any:
    """tests/wireshark/matrix.py: the Wireshark versions the Lua dissector is tested on, and how tshark runs."""
    sys.path.insert(0, str(REPO / "tests"))
    from wireshark import matrix

    return matrix


def matrix_label(tool: str) -> str:
    """``tshark_lua@ws4.4`` -> "(2) tshark 4.4 + mproxy.lua (Lua 5.4)"."""
    base, version_id = tool.split("@")
    version = next(v for v in matrix_module().MATRIX if v.id == version_id)
    if base == "tshark_lua":
        return f"(2) tshark {version.series} + mproxy.lua (Lua {version.lua})"
    return f"(2b) tshark {version.series} alone"


def run_matrix_child(version_id: str, args: list[str], config_dir: Path) -> tuple[float, float, int, int, str]:
    """``run_child`` for tshark of one matrix version, run as the matrix runs it (as nobody, in its root),
    after checking that this tshark registers the dissector when it is loaded."""
    matrix = matrix_module()
    version = next(v for v in matrix.MATRIX if v.id == version_id)
    if "-X" in args:
        matrix.assert_registered(version, LUA)
    with matrix.stage() as staged:
        env = staged.profile(config_dir)
        argv = staged.args(args)
        staged.hand_over()
        return run_child(matrix.command(version, argv, staged.dir, env))


def compile_package() -> None:
    """Byte-compile mproxy_scapy before any timed run, as ``pip install`` does for an installed package.

    An editable install compiles its modules on first import and keeps the
    ``.pyc`` files, unless ``PYTHONDONTWRITEBYTECODE`` is set (as it is on some
    CI and container machines): then every timed ``mproxy`` process compiled
    every module again, 0.07 s of CPU that no installed copy spends.
    """
    import compileall

    import mproxy_scapy

    compileall.compile_dir(Path(mproxy_scapy.__file__).parent, quiet=1)


def generate(path: Path, size_mb: float, carrier: str) -> None:
    subprocess.run([sys.executable, str(BENCH_DIR / "gen_capture.py"), str(path), "--size-mb", str(size_mb),
                    "--carrier", carrier], check=True, stderr=subprocess.DEVNULL)


def rotate(capture: Path, directory: Path, files: int) -> None:
    """``capture`` cut at record boundaries into ``files`` pieces of about equal size, named as ``tcpdump -C``
    names them (``NAME``, ``NAME1``, ``NAME2``, ...): the same packets and bytes, read as one capture."""
    directory.mkdir(parents=True, exist_ok=True)
    total = capture.stat().st_size
    with capture.open("rb") as source:
        header = source.read(24)
        order = "<" if header[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        record = struct.Struct(order + "IIII")
        for number in range(files):
            limit = (number + 1) * total // files
            with (directory / (capture.name + (str(number) if number else ""))).open("wb") as piece:
                piece.write(header)
                while source.tell() < limit or number == files - 1:
                    head = source.read(16)
                    if len(head) < 16:
                        break
                    piece.write(head + source.read(record.unpack(head)[2]))


def frames_seen(slice_capture: Path, carrier: str, config_dir: Path) -> dict[str, int]:
    """How many M-PROXY frames each tool reports on the small capture: proof that each did the work."""
    counts: dict[str, int] = {}
    out = subprocess.run([mproxy_command(), "dissect", "--json", str(slice_capture)], capture_output=True, check=False)
    counts["dissect"] = sum(1 for line in out.stdout.splitlines() if b'"kind"' in line)
    out = subprocess.run(["tshark", "-X", f"lua_script:{LUA}", "-r", str(slice_capture), "-T", "fields",
                          "-e", "mproxy.kind"], capture_output=True, env=tshark_env(config_dir), check=False)
    counts["tshark_lua"] = sum(len(line.split(b",")) for line in out.stdout.splitlines() if line.strip())
    if carrier == "tcp":
        port = str(RAW_PORT)
        out = subprocess.run([sys.executable, str(BENCH_DIR / "scapy_path.py"), str(slice_capture), "--port", port],
                             capture_output=True, check=False)
        counts["scapy"] = int(out.stdout.strip() or 0)
    return counts


def bench_carrier(carrier: str, args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Measure], dict[str, int]]:
    capture = workdir / f"bench-{carrier}.pcap"
    slice_capture = workdir / f"bench-{carrier}-slice.pcap"
    config_dir = workdir / "wireshark-profile"
    config_dir.mkdir(exist_ok=True)
    generate(capture, args.size_mb, carrier)
    tools = [t for t in args.tools if not (t == "scapy" and carrier == "websocket")]
    if "scapy" in tools or args.check_frames:
        generate(slice_capture, min(args.scapy_mb, args.size_mb), carrier)
    rotated = workdir / f"rotated-{carrier}"
    if "dissect_rotated" in tools:
        rotate(capture, rotated, ROTATED_FILES)
    cluster = local_cluster() if "export_dask" in tools else None
    try:
        measures = _timed_runs(carrier, args, tools, capture, slice_capture, rotated, config_dir, cluster)
    finally:
        if cluster is not None:
            cluster.close()
    counts = frames_seen(slice_capture, carrier, config_dir) if args.check_frames else {}
    if not args.keep:
        capture.unlink()
        slice_capture.unlink(missing_ok=True)
        shutil.rmtree(rotated, ignore_errors=True)
        for output in capture.parent.glob("*.export*"):
            shutil.rmtree(output)
    return measures, counts


def local_cluster() -> Any:
    """Two worker processes with one thread each (decoding is pure Python: threads would share one core)."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1")


def worker_usage(cluster: Any) -> dict[str, tuple[float, int]]:
    """Each worker process's (CPU seconds so far, peak RSS KB), from its own ``getrusage``."""
    from distributed import Client

    with Client(cluster) as client:
        return client.run(_own_usage)


def _own_usage() -> tuple[float, int]:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def _timed_runs(carrier: str, args: argparse.Namespace, tools: list[str], capture: Path, slice_capture: Path,
                rotated: Path, config_dir: Path, cluster: Any) -> dict[str, Measure]:
    cmds = commands(capture, slice_capture, rotated, carrier, config_dir,
                    cluster.scheduler_address if cluster else None, tuple(args.wireshark))
    tools = [*tools, *(f"{tool}@{v}" for v in args.wireshark for tool in ("tshark_lua", "tshark"))]
    measures = {t: Measure(t, (slice_capture if t == "scapy" else capture).stat().st_size) for t in tools}
    if "dissect_rotated" in measures:
        measures["dissect_rotated"].note = f"the same capture as {ROTATED_FILES} rotated files"
    for tool in measures:
        if tool.split("@")[0] == "tshark" and carrier == "tcp":
            measures[tool].note = "tunnel port decoded as data"
    if "scapy" in measures:
        measures["scapy"].note = f"on a {measures['scapy'].file_bytes / 1e6:.0f} MB capture (same generator, seed)"
    for _ in range(args.runs):
        for tool in tools:
            argv, kwargs = cmds[tool]
            before = worker_usage(cluster) if tool == "export_dask" else {}
            if argv[0] == "matrix":
                elapsed, cpu, rss, code, tail = run_matrix_child(argv[1], argv[2:], kwargs["config_dir"])
            else:
                elapsed, cpu, rss, code, tail = run_child(argv, **kwargs)
            measure = measures[tool]
            if before:
                after = worker_usage(cluster)
                spent = [after[w][0] - before[w][0] for w in after if w in before]
                measure.critical_cpu.append(cpu + max(spent))
                cpu += sum(spent)
            if code != 0:
                measure.failures.append(f"exit {code}: {tail.strip()[-200:]}")
            measure.times.append(elapsed)
            measure.cpu_times.append(cpu)
            measure.rss_kb.append(rss)
            print(f"  {carrier} {tool}: {elapsed:.2f} s ({cpu:.2f} s CPU), {rss / 1024:.0f} MB", file=sys.stderr)
    if cluster is not None:
        peak = max(rss for _, rss in worker_usage(cluster).values()) / 1024
        measures["export_dask"].note = (f"CPU of the client and both workers; RSS of the client, workers' peak RSS "
                                        f"{peak:.0f} MB")
    return measures


def table(carrier: str, measures: dict[str, Measure], runs: int) -> list[str]:
    base = measures.get("dissect")
    lines = [
        f"| {carrier} | MB/s (median) | time s, median (min-max) of {runs} | CPU s (median) | peak RSS MB "
        "| dissect MB/s ÷ this (by CPU) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for tool in [*TOOLS, *(t for t in measures if "@" in t)]:
        measure = measures.get(tool)
        if measure is None:
            continue
        ratio = "" if base is None or tool.startswith("dissect") else (
            f"{base.mb_per_s / measure.mb_per_s:.2f} ({base.cpu_mb_per_s / measure.cpu_mb_per_s:.2f})")
        label = (matrix_label(tool) if "@" in tool else LABELS[tool]) + (f" ({measure.note})" if measure.note else "")
        failed = f" FAILED {measure.failures[0]!r}" if measure.failures else ""
        lines.append(
            f"| {label}{failed} | {measure.mb_per_s:.1f} | {measure.median:.2f} ({min(measure.times):.2f}-"
            f"{max(measure.times):.2f}) | {statistics.median(measure.cpu_times):.2f} | {measure.peak_rss_mb:.0f} "
            f"| {ratio} |"
        )
    return lines


def targets(carrier: str, measures: dict[str, Measure], size_mb: float) -> list[str]:
    """Each target of issue 6 that this run can judge: met or not, with the measured ratio."""
    out: list[str] = []
    dissect = measures.get("dissect")

    def line(ok: bool, text: str) -> None:
        out.append(f"- {'MET' if ok else 'NOT MET'}: {text}")

    if dissect is None:
        for tool in (t for t in measures if t.startswith("tshark_lua@")):
            plain_v = measures.get(f"tshark@{tool.split('@')[1]}")
            if plain_v:
                cpu_added = statistics.median(measures[tool].cpu_times) / statistics.median(plain_v.cpu_times) - 1
                line(cpu_added <= 1.0, f"{matrix_label(tool)}: the Lua dissector adds {cpu_added:.0%} to plain "
                                       f"tshark's CPU time on this {size_mb:g} MB capture (target <= 100% on 200 MB, "
                                       "long-term 50%)")
        return out

    floor = measures.get("floor")
    if floor:
        goal = 0.30 if carrier == "tcp" else 0.20
        share = dissect.mb_per_s / floor.mb_per_s
        cpu_share = dissect.cpu_mb_per_s / floor.cpu_mb_per_s
        line(share >= goal, f"dissect at {share:.0%} of the floor's throughput ({cpu_share:.0%} by CPU time; "
                            f"target >= {goal:.0%})")
    lua = measures.get("tshark_lua")
    if lua:
        speedup = dissect.mb_per_s / lua.mb_per_s
        cpu_speedup = dissect.cpu_mb_per_s / lua.cpu_mb_per_s
        line(speedup >= 4, f"dissect {speedup:.1f}x faster than tshark + Lua ({cpu_speedup:.1f}x by CPU time; "
                           "target >= 4x)")
    scapy = measures.get("scapy")
    if scapy:
        speedup = dissect.mb_per_s / scapy.mb_per_s
        cpu_speedup = dissect.cpu_mb_per_s / scapy.cpu_mb_per_s
        line(speedup >= 20, f"dissect {speedup:.1f}x faster than Scapy TCPSession ({cpu_speedup:.1f}x by CPU time; "
                            "target >= 20x)")
    plain = measures.get("tshark")
    if lua and plain:
        added = lua.median / plain.median - 1
        cpu_added = statistics.median(lua.cpu_times) / statistics.median(plain.cpu_times) - 1
        line(added <= 0.5, f"the Lua dissector adds {added:.0%} to plain tshark's time ({cpu_added:.0%} by CPU time; "
                           "target <= 50%)")
    for tool in (t for t in measures if t.startswith("tshark_lua@")):
        version_id = tool.split("@")[1]
        lua_v, plain_v = measures[tool], measures.get(f"tshark@{version_id}")
        if plain_v:
            added = lua_v.median / plain_v.median - 1
            cpu_added = statistics.median(lua_v.cpu_times) / statistics.median(plain_v.cpu_times) - 1
            line(cpu_added <= 1.0, f"{matrix_label(tool)}: the Lua dissector adds {cpu_added:.0%} to plain tshark's "
                                   f"CPU time ({added:.0%} by wall time) on this {size_mb:g} MB capture "
                                   "(target <= 100% on 200 MB, long-term 50%)")
    jobs = measures.get("dissect_jobs2")
    if jobs:
        speedup = dissect.median / jobs.median
        cpu_cost = statistics.median(jobs.cpu_times) / statistics.median(dissect.cpu_times)
        line(speedup >= JOBS_SPEEDUP, f"--jobs 2 {speedup:.2f}x the throughput of --jobs 1 by wall time (it spends "
                                      f"{cpu_cost:.2f}x the CPU time; target >= {JOBS_SPEEDUP}x); peak RSS of the "
                                      f"largest process {jobs.peak_rss_mb:.0f} MB (target < {RSS_LIMIT_MB:.0f} MB)")
    rotated = measures.get("dissect_rotated")
    if rotated:
        slower = rotated.median / dissect.median - 1
        cpu_slower = statistics.median(rotated.cpu_times) / statistics.median(dissect.cpu_times) - 1
        line(slower <= ROTATED_SLOWDOWN, f"{ROTATED_FILES} rotated files take {slower:+.0%} of the single file's time "
                                         f"({cpu_slower:+.0%} by CPU time; target within "
                                         f"{ROTATED_SLOWDOWN:.0%})")
    export, export_dask = measures.get("export"), measures.get("export_dask")
    if export and export_dask:
        speedup = export.median / export_dask.median
        critical = statistics.median(export.cpu_times) / statistics.median(export_dask.critical_cpu)
        line(speedup >= DASK_EXPORT_SPEEDUP, f"export on a LocalCluster of 2 worker processes {speedup:.2f}x the "
                                             f"serial export's throughput by wall time; {critical:.2f}x by CPU on the "
                                             "critical path (client + busiest worker, the wall time on idle cores); "
                                             f"target >= {DASK_EXPORT_SPEEDUP}x")
    if export:
        line(export.peak_rss_mb < RSS_LIMIT_MB, f"export peak RSS {export.peak_rss_mb:.0f} MB on this {size_mb:g} MB "
                                                f"capture (target < {RSS_LIMIT_MB:.0f} MB, flat with capture size)")
    rss = dissect.peak_rss_mb
    scope = f"on this {size_mb:g} MB capture" + ("" if size_mb >= 1000 else " (the target is judged at 1 GB)")
    line(rss < RSS_LIMIT_MB, f"dissect peak RSS {rss:.0f} MB {scope} (target < {RSS_LIMIT_MB:.0f} MB)")
    return out


def report(results: dict[str, tuple[dict[str, Measure], dict[str, int]]], args: argparse.Namespace) -> str:
    lines = [f"Capture size {args.size_mb:g} MB per carrier, {args.runs} runs per tool, "
             f"MB = 10^6 bytes of pcap file.", ""]
    for carrier, (measures, counts) in results.items():
        lines += table(carrier, measures, args.runs)
        lines.append("")
        lines += targets(carrier, measures, args.size_mb)
        if counts:
            seen = ", ".join(f"{tool} {count}" for tool, count in counts.items())
            lines.append(f"- frames reported on the small capture: {seen}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=200.0, help="capture size per carrier (default 200)")
    parser.add_argument("--scapy-mb", type=float, default=20.0, help="size of Scapy's smaller capture (default 20)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--carriers", default="tcp,websocket", help="comma list of tcp, websocket")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"comma list of {', '.join(TOOLS)}")
    parser.add_argument("--no-check-frames", dest="check_frames", action="store_false",
                        help="skip counting each tool's frames on the small capture")
    parser.add_argument("--workdir", type=Path, help="where captures go (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated captures")
    parser.add_argument("--output", type=Path, help="also write the markdown report here")
    parser.add_argument("--wireshark", default="", help="comma list of Wireshark matrix versions (ws4.0, ws4.4, "
                        "ws4.6) to time tshark + Lua and plain tshark on, as the Lua tests run them")
    args = parser.parse_args(argv)
    args.tools = [t for t in args.tools.split(",") if t]
    args.wireshark = [v for v in args.wireshark.split(",") if v]
    known = {v.id for v in matrix_module().MATRIX} if args.wireshark else set()
    if set(args.wireshark) - known:
        parser.error(f"unknown Wireshark versions {sorted(set(args.wireshark) - known)}; known: {sorted(known)}")
    unknown = set(args.tools) - set(TOOLS)
    if unknown:
        parser.error(f"unknown tools {sorted(unknown)}")
    carriers = [c for c in args.carriers.split(",") if c]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mproxy-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    compile_package()
    try:
        results = {carrier: bench_carrier(carrier, args, workdir) for carrier in carriers}
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    text = report(results, args)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    failed = any(m.failures for measures, _ in results.values() for m in measures.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
