"""The Wireshark matrix: the tshark versions the Lua dissector is tested on, and how tshark is run.

| id    | tshark | Lua | where                                                   |
|-------|--------|-----|---------------------------------------------------------|
| ws4.0 | 4.0    | 5.2 | this machine's own tshark (Debian 12)                   |
| ws4.4 | 4.4    | 5.4 | a minimal Debian 13 (trixie) root made with debootstrap |
| ws4.6 | 4.6    | 5.4 | a minimal Debian unstable (sid) root                    |

The roots live under ``~/.cache/mproxy-scapy/wireshark-roots/<suite>`` (``XDG_CACHE_HOME``
is honoured), are built once per machine by ``python3 tests/wireshark/matrix.py build``
(``make wireshark-matrix``; needs root and debootstrap) from the Debian mirror apt is
configured with, and are reused afterwards: a build with a root already in place does nothing.

tshark always runs as an unprivileged user (``nobody``), as Wireshark's guidance says and
as people run it: Wireshark 4.2 and later silently ignore Lua plugins and ``-X lua_script:``
for root. Everything tshark reads (the captures, the Lua file, the profile) is first copied
into a world-readable staging folder in ``/tmp``. A run in a root happens in a private mount
namespace (``unshare --mount``): /proc, a tmpfs on the root's /tmp and the staging folder
(at the same path as outside, so arguments need no rewriting) are mounted there only, and
vanish with the process. Concurrent runs never see each other's mounts, and a killed run
leaves nothing mounted.

Command line::

    python3 tests/wireshark/matrix.py build        # build the missing roots (idempotent)
    python3 tests/wireshark/matrix.py status       # each version, its tshark and Lua, ready or not
    python3 tests/wireshark/matrix.py run ws4.4 -- -r capture.pcap -X lua_script:mproxy.lua
"""

from __future__ import annotations

import argparse
import atexit
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

NOBODY = 65534
"""uid and gid of nobody / nogroup on Debian, on the host and in every root."""

RECIPE = 1
"""Bumped when the way a root is built changes, so older roots are rebuilt."""

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mproxy-scapy"
ROOTS = Path(os.environ.get("MPROXY_WIRESHARK_ROOTS") or CACHE / "wireshark-roots")
STAMP = ".mproxy-matrix.json"
"""Written into a root as the last build step: a root without it is unfinished."""

BUILD_COMMAND = "make wireshark-matrix"
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class MatrixError(RuntimeError):
    """A matrix entry cannot run; the message says why and how to fix it."""


@dataclass(frozen=True)
class Version:
    id: str
    series: str
    lua: str
    suite: str | None
    """Debian suite of the root; None for this machine's own tshark."""
    distribution: str

    @property
    def root(self) -> Path | None:
        return ROOTS / self.suite if self.suite else None


MATRIX = (
    Version("ws4.0", "4.0", "5.2", None, "Debian 12 (bookworm), this machine's tshark"),
    Version("ws4.4", "4.4", "5.4", "trixie", "Debian 13 (trixie)"),
    Version("ws4.6", "4.6", "5.4", "sid", "Debian unstable (sid)"),
)
BY_ID = {v.id: v for v in MATRIX}
HOST = MATRIX[0]


def is_root() -> bool:
    return os.geteuid() == 0


# -- what a version is ------------------------------------------------------------------------------


def version_text(output: str) -> tuple[str, str]:
    """(tshark version, Lua version) from ``tshark --version``."""
    tshark = re.search(r"TShark \(Wireshark\) (\d+\.\d+\.\d+)", output)
    lua = re.search(r"Lua\s+(\d+\.\d+(?:\.\d+)?)", output)  # 4.0 may wrap the line after "Lua"
    if not tshark:
        raise MatrixError(f"no version in tshark's output: {output[:200]!r}")
    return tshark.group(1), lua.group(1) if lua else "none"


def _stamp(root: Path) -> dict | None:
    try:
        stamp = json.loads((root / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if stamp.get("recipe") == RECIPE else None


_host_versions: tuple[str, str] | None = None


def installed(version: Version) -> tuple[str, str]:
    """(tshark, Lua) versions of a matrix entry; MatrixError, saying how to fix it, when it cannot run."""
    global _host_versions
    if version.root is None:
        if shutil.which("tshark") is None:
            raise MatrixError(f"{version.id}: tshark is not installed (apt-get install tshark, or `make test`)")
        if _host_versions is None:
            out = subprocess.run(["tshark", "--version"], capture_output=True, text=True, timeout=60, check=False)
            _host_versions = version_text(out.stdout)
        found = _host_versions
    else:
        stamp = _stamp(version.root)
        if stamp is None:
            raise MatrixError(f"{version.id}: the {version.distribution} root with tshark {version.series} is not "
                              f"built ({version.root}); build it with `{BUILD_COMMAND}` (as root, needs debootstrap; "
                              "a few minutes, once per machine)")
        if not is_root():
            raise MatrixError(f"{version.id}: running tshark in the {version.distribution} root needs root "
                              "(chroot and mounts in a private namespace); run the tests as root")
        found = stamp["tshark"], stamp["lua"]
    if not found[0].startswith(version.series + ".") or not found[1].startswith(version.lua + "."):
        raise MatrixError(f"{version.id}: expected tshark {version.series}.x with Lua {version.lua}, found "
                          f"{found[0]} with Lua {found[1]} ({version.distribution}); the matrix in "
                          "tests/wireshark/matrix.py needs updating")
    return found


# -- staging: what tshark reads, where the unprivileged user can read it -----------------------------


def _stage_parent() -> Path:
    """A world-readable folder in /tmp for this process's stages (inherited by wrapper scripts)."""
    given = os.environ.get("MPROXY_TSHARK_STAGE")
    if given and Path(given).is_dir():
        return Path(given)
    global _own_parent
    if _own_parent is None:
        _own_parent = Path(tempfile.mkdtemp(prefix="mproxy-tshark-", dir="/tmp"))
        _own_parent.chmod(0o755)
        atexit.register(shutil.rmtree, _own_parent, True)
    return _own_parent


_own_parent: Path | None = None


class Stage:
    """A staging folder: files copied in world-readable, a HOME and profile tshark's user owns."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="run-", dir=_stage_parent()))
        self.dir.chmod(0o755)
        self.home = self.dir / "home"
        self.home.mkdir()
        self._files: dict[Path, Path] = {}
        self._outputs: list[tuple[Path, Path]] = []

    def file(self, path: Path) -> Path:
        """The staged copy of ``path`` (hard-linked when that keeps it readable, else copied)."""
        source = path.resolve()
        if source in self._files:
            return self._files[source]
        target = self.dir / f"{len(self._files)}-{source.name}"
        try:
            if source.stat().st_mode & 0o004 == 0:
                raise OSError("not world-readable")
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
            target.chmod(0o644)
        self._files[source] = target
        return target

    def profile(self, config_home: Path | None) -> dict[str, str]:
        """HOME (a copy of ``config_home``) and WIRESHARK_CONFIG_DIR (its ``config`` folder, if any)."""
        if config_home is not None and config_home.is_dir():
            shutil.copytree(config_home, self.home, symlinks=True, dirs_exist_ok=True)
        config = self.home / "config"
        config.mkdir(exist_ok=True)
        return {"HOME": str(self.home), "WIRESHARK_CONFIG_DIR": str(config)}

    def args(self, args: Sequence[str]) -> list[str]:
        """Arguments with every input file staged: ``-r path``, an absolute path, or ``key:path`` naming a file
        (lua_script:, tls.keylog_file:); ``-w path`` writes into the stage and is copied back afterwards."""
        out: list[str] = []
        write_next = False
        for previous, arg in zip(["", *args], args, strict=False):
            if write_next:
                target = self.dir / f"out-{len(self._outputs)}-{Path(arg).name}"
                self._outputs.append((target, Path(arg)))
                out.append(str(target))
                write_next = False
                continue
            write_next = arg == "-w"
            key, sep, value = arg.partition(":")
            if (previous == "-r" or arg.startswith("/")) and Path(arg).is_file():
                out.append(str(self.file(Path(arg))))
            elif sep and not arg.startswith("-") and Path(value).is_file():
                out.append(f"{key}:{self.file(Path(value))}")
            else:
                out.append(arg)
        return out

    def hand_over(self) -> None:
        """Give the stage folder and the profile to the unprivileged user: tshark may write its HOME
        and ``-w`` outputs. (Staged inputs stay as they are: readable, and maybe hard links.)"""
        if not is_root():
            return
        os.chown(self.dir, NOBODY, NOBODY)
        for folder, _dirs, files in os.walk(self.home):
            os.chown(folder, NOBODY, NOBODY)
            for name in files:
                os.chown(Path(folder) / name, NOBODY, NOBODY, follow_symlinks=False)

    def finish(self) -> None:
        for staged, wanted in self._outputs:
            if staged.exists():
                shutil.copyfile(staged, wanted)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def stage() -> Iterator[Stage]:
    staged = Stage()
    try:
        yield staged
    finally:
        staged.finish()


# -- the command that runs tshark ---------------------------------------------------------------------


_IN_ROOT = (
    'PATH="$PATH:/usr/sbin:/sbin"; root=$1; stage=$2; shift 2; '
    'mount -t proc proc "$root/proc"; '
    'mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"; '
    'mkdir -p "$root$stage"; '
    'mount --bind "$stage" "$root$stage"; '
    'exec chroot "$root" "$@"'
)
"""Runs in a private mount namespace: every mount here vanishes with the process."""


def command(version: Version, args: Sequence[str], stage_dir: Path, env: dict[str, str],
            program: str = "tshark") -> list[str]:
    """The command line running ``program`` (tshark, editcap...) of ``version`` as nobody with ``env`` only."""
    environment = ["env", "-i", f"PATH={PATH}", "LC_ALL=C.UTF-8", *(f"{k}={v}" for k, v in env.items())]
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if is_root() else []
    unprivileged = [*drop, *environment, program, *args]
    if version.root is None:
        return unprivileged
    return ["unshare", "--mount", "--propagation", "private", "sh", "-ec", _IN_ROOT, "sh", str(version.root),
            str(stage_dir), *unprivileged]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


_registered: set[tuple[str, str]] = set()


def lua_scripts(args: Sequence[str]) -> list[str]:
    """The files a command line loads with ``-X lua_script:``."""
    return [arg.split(":", 1)[1] for prev, arg in zip(["", *args], args, strict=False)
            if prev == "-X" and arg.startswith("lua_script:")]


def assert_registered(version: Version, lua: Path, protocol: str = "mproxy") -> None:
    """Fail unless tshark of ``version``, as the unprivileged user, registers ``protocol`` from ``lua``.

    Checked once per version and Lua file content per process: without it, "no Lua error"
    proves nothing (as root, Wireshark 4.2+ runs happily without the plugin).
    """
    key = (version.id, hashlib.sha256(lua.read_bytes()).hexdigest())
    if key in _registered:
        return
    result = _execute(version, ["-G", "protocols", "-X", f"lua_script:{lua}"], None, timeout=120)
    names = {line.split("\t")[2] for line in result.stdout.splitlines() if line.count("\t") >= 2}
    if result.returncode != 0 or protocol not in names:
        raise MatrixError(f"{version.id}: tshark did not register the {protocol!r} protocol from {lua} "
                          f"(exit {result.returncode}): {result.stderr.strip()[:1000]}")
    _registered.add(key)


def _execute(version: Version, args: Sequence[str], config_home: Path | None, *, timeout: float,
             program: str = "tshark") -> Result:
    installed(version)
    with stage() as staged:
        env = staged.profile(config_home)
        staged_args = staged.args(args)
        staged.hand_over()
        proc = subprocess.run(command(version, staged_args, staged.dir, env, program), capture_output=True,
                              encoding="utf-8", errors="replace", cwd=staged.dir, timeout=timeout, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run(version: Version, args: Sequence[str], config_home: Path | None = None, *, timeout: float = 300,
        check_registered: str | None = "mproxy") -> Result:
    """tshark of ``version`` as the unprivileged user, with a profile copied from ``config_home``.

    Before the first run of each Lua file loaded with ``-X lua_script:``, tshark must register
    ``check_registered`` from it (None: a run that loads no dissector of ours, e.g. a reference check).
    """
    if check_registered is not None:
        scripts = lua_scripts(args)
        if not scripts:
            raise MatrixError("a tshark run meant to test the dissector loads no -X lua_script:")
        assert_registered(version, Path(scripts[0]), check_registered)
    return _execute(version, args, config_home, timeout=timeout)


def reference(args: Sequence[str], *, timeout: float = 120) -> Result:
    """This machine's tshark without our dissector, as the unprivileged user with an empty profile:
    Wireshark as the reference for files we write (captures, detunnel output). A failure is an error."""
    result = run(HOST, args, timeout=timeout, check_registered=None)
    if result.returncode != 0:
        raise MatrixError(f"tshark {' '.join(args)} failed (exit {result.returncode}): {result.stderr.strip()}")
    return result


def tool(version: Version, program: str, args: Sequence[str], *, timeout: float = 120) -> Result:
    """Another Wireshark program of ``version`` (editcap, randpkt...), unprivileged like tshark."""
    return _execute(version, args, None, timeout=timeout, program=program)


def wrapper(version: Version, folder: Path, *, name: str | None = None, home_in_place: bool = False) -> Path:
    """An executable that behaves like tshark of ``version`` run by this module (for pyshark's
    ``tshark_path``, or as ``tshark`` on a user's PATH). The profile comes from WIRESHARK_CONFIG_DIR's
    parent, as the caller sets it; with ``home_in_place`` tshark gets the caller's HOME itself (it
    must be readable by the unprivileged user), so that the folders tshark names (``-G folders``)
    are the user's own. The roots' folder is fixed here, since the caller may point HOME elsewhere."""
    script = folder / (name or f"tshark-{version.id}")
    parent = _stage_parent()
    in_place = " MPROXY_TSHARK_HOME_IN_PLACE=1" if home_in_place else ""
    # the system PATH: a wrapper named tshark first on the caller's PATH must not find itself
    script.write_text(f'#!/bin/sh\nexec env PATH="{PATH}" MPROXY_TSHARK_STAGE="{parent}" '
                      f'MPROXY_WIRESHARK_ROOTS="{ROOTS}"{in_place} '
                      f'"{sys.executable}" "{__file__}" run {version.id} -- "$@"\n', encoding="utf-8")
    script.chmod(0o755)
    return script


def _stream(version: Version, args: Sequence[str]) -> int:
    """``run`` for a wrapper: output streams through (pyshark reads it as it comes)."""
    config = os.environ.get("WIRESHARK_CONFIG_DIR")
    scripts = lua_scripts(args)
    if scripts:
        assert_registered(version, Path(scripts[0]))
    installed(version)
    with stage() as staged:
        if os.environ.get("MPROXY_TSHARK_HOME_IN_PLACE") and "HOME" in os.environ:
            env = {"HOME": os.environ["HOME"]}
        else:
            env = staged.profile(Path(config).parent if config else None)
        staged_args = staged.args(args)
        staged.hand_over()
        return subprocess.run(command(version, staged_args, staged.dir, env), cwd=staged.dir, check=False).returncode


# -- building the roots -------------------------------------------------------------------------------


def apt_mirror() -> str:
    """The Debian mirror apt is configured with (for this machine's Debian release)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for uri in re.findall(r"^\s*URIs:\s*(\S+)", text, re.M) + re.findall(r"^\s*deb\s+(?:\[[^]]*]\s+)?(\S+)",
                                                                            text, re.M):
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    return "http://deb.debian.org/debian"


_INSTALL = (
    'PATH="$PATH:/usr/sbin:/sbin"; root=$1; debs=$2; '
    'mount -t proc proc "$root/proc"; '
    'mount --bind "$debs" "$root/var/cache/apt/archives"; '
    'echo "wireshark-common wireshark-common/install-setuid boolean false" | chroot "$root" debconf-set-selections; '
    'chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get update -qq; '
    'chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends '
    '-o APT::Keep-Downloaded-Packages=true tshark'
)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build(version: Version, log=sys.stderr) -> str:
    """Make the root of ``version`` unless it is there; returns what was done. Safe to run concurrently."""
    root = version.root
    if root is None:
        installed(version)
        return f"{version.id}: this machine's tshark"
    if _stamp(root) is not None:
        return f"{version.id}: ready ({root})"
    if not is_root():
        raise MatrixError(f"{version.id}: building the {version.distribution} root needs root")
    debootstrap = shutil.which("debootstrap", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if debootstrap is None:
        raise MatrixError("debootstrap is needed to build the Wireshark roots (apt-get install debootstrap)")
    with _locked(ROOTS / f".{version.suite}.lock"):
        if _stamp(root) is not None:
            return f"{version.id}: ready ({root})"
        partial = root.with_name(root.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        debs = ROOTS / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        mirror = apt_mirror()
        print(f"{version.id}: debootstrap --variant=minbase {version.suite} from {mirror}", file=log, flush=True)
        _checked([debootstrap, "--variant=minbase", f"--cache-dir={debs}", version.suite, str(partial), mirror])
        # A mirror snapshot's unstable Release file may have expired; the packages are still right.
        (partial / "etc/apt/apt.conf.d/99mproxy-matrix").write_text('Acquire::Check-Valid-Until "false";\n')
        print(f"{version.id}: installing tshark", file=log, flush=True)
        _checked(["unshare", "--mount", "--propagation", "private", "sh", "-ec", _INSTALL, "sh", str(partial),
                  str(debs)])
        out = subprocess.run(["/usr/sbin/chroot", str(partial), "tshark", "--version"], capture_output=True, text=True,
                             timeout=120, check=True).stdout
        tshark, lua = version_text(out)
        (partial / STAMP).write_text(json.dumps({"recipe": RECIPE, "suite": version.suite, "mirror": mirror,
                                                 "tshark": tshark, "lua": lua}) + "\n", encoding="utf-8")
        shutil.rmtree(root, ignore_errors=True)
        partial.rename(root)
    return f"{version.id}: built tshark {tshark} (Lua {lua}) in {root}"


def _checked(command_line: list[str]) -> None:
    proc = subprocess.run(command_line, capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        raise MatrixError(f"{' '.join(command_line[:3])}... failed (exit {proc.returncode}):\n"
                          f"{(proc.stdout + proc.stderr)[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="matrix.py", description="The Wireshark versions the tests run on.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the missing Debian roots (idempotent)")
    sub.add_parser("status", help="each version: tshark, Lua, ready or not")
    runner = sub.add_parser("run", help="tshark of one version as the unprivileged user")
    runner.add_argument("version", choices=sorted(BY_ID))
    runner.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    # a wrapper stopped with SIGTERM (a timeout) still removes its staging folder on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        if options.command == "build":
            for version in MATRIX:
                print(build(version), flush=True)
        elif options.command == "status":
            failed = 0
            for version in MATRIX:
                try:
                    tshark, lua = installed(version)
                    print(f"{version.id}: tshark {tshark}, Lua {lua}, {version.distribution}")
                except MatrixError as error:
                    failed = 1
                    print(error)
            return failed
        else:
            args = options.args[1:] if options.args[:1] == ["--"] else options.args
            return _stream(BY_ID[options.version], args)
    except MatrixError as error:
        print(f"matrix.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
