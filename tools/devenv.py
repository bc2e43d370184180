"""Set up the Python environment the Makefile's commands run in, then run one command in it.

The Makefile calls ``PYTHON tools/devenv.py [--venv DIR] [--extras A,B] [--optional-extra C] -- COMMAND...``.
It exists because a distribution's own ``python3`` (Debian 12 and 13, Ubuntu 23.04 and later)
refuses ``pip install`` outside a virtual environment (PEP 668), and a first-time user should
not have to know that. Which environment:

- ``PYTHON`` runs inside a virtual environment (one that is active, or ``PYTHON=venv/bin/python``):
  that environment is used as it is;
- otherwise the project environment ``--venv`` (``.venv``) is made from ``PYTHON`` with
  ``python -m venv``, and made again when it was made from another interpreter. When the
  interpreter is Debian's and its ``venv`` cannot install pip (no ``python3.X-venv``), that
  package is installed with apt-get (as root, or through sudo).

The package is installed editable with the extras asked for; the ``--optional-extra`` ones
only from prebuilt wheels: where one has no build for this Python and platform (atheris, the
fuzzer), the rest is installed, and a note in the environment tells the tests why it is
missing (tests/hardening/test_fuzz.py reports it). A stamp in the environment skips pip when
nothing changed. Every failure is one line saying what to do, exit status 1. (The Makefile has
already checked that ``PYTHON`` runs and is 3.11 or newer.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAMP = "mproxy-scapy-setup.json"
PIP_LOG = "mproxy-scapy-pip.log"
UNAVAILABLE = "mproxy-scapy-unavailable-extras.json"
"""In the environment's prefix: optional extras that have no build here, with the reason (read by the tests)."""

NETWORK_TROUBLE = (
    "NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
    "Name or service not known", "Network is unreachable", "ConnectTimeoutError", "Read timed out",
    "ProxyError", "Connection refused", "Could not fetch URL", "No route to host", "SSLError",
)


class SetupError(Exception):
    """A problem the user can act on: the message says what to do."""


def say(message: str) -> None:
    print(f"mproxy-scapy: {message}", file=sys.stderr, flush=True)


def in_virtualenv() -> bool:
    return sys.prefix != sys.base_prefix


def shown(path: Path) -> str:
    """A path as the user typed it: relative to the current folder when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def env_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def describe(python: Path) -> list[str] | None:
    """The base prefix and version of an environment's interpreter, or None when it cannot run pip."""
    if not python.exists():
        return None
    probe = "import sys, pip; print(sys.base_prefix); print('.'.join(map(str, sys.version_info[:3])))"
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False)
    return result.stdout.split("\n")[:2] if result.returncode == 0 else None


def ensurepip_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("ensurepip") is None


def debian_package_of(path: str) -> str | None:
    """The Debian package that installed this file, if dpkg knows it."""
    if shutil.which("dpkg-query") is None:
        return None
    result = subprocess.run(["dpkg-query", "-S", path], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None
    return result.stdout.split(":")[0].strip() or None


def venv_packages() -> list[str]:
    """Debian's packages that give this interpreter a working ``venv`` (pip included)."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    packages = [f"python{version}-venv"]
    default = shutil.which("python3", path="/usr/bin")
    if default and os.path.realpath(default) == os.path.realpath(sys.executable):
        packages.insert(0, "python3-venv")
    return packages


def apt_install(packages: list[str], why: str) -> None:
    """``apt-get update`` and ``install`` as root, or through sudo; one line when that cannot be done."""
    names = " ".join(packages)
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo"):
        prefix = ["sudo"]
    else:
        raise SetupError(f"{why}: run `apt-get install {names}` as root, then run make again")
    say(f"{why}: installing {names} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log: list[str] = []
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        result = subprocess.run(prefix + step, capture_output=True, text=True, env=env, check=False)
        log.append(result.stdout + result.stderr)
        if result.returncode != 0:
            detail = last_error_line(result.stdout + result.stderr)
            raise SetupError(f"apt-get could not install {names} ({detail}); check the network and the apt "
                             f"sources, or install them yourself, then run make again")


def last_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("E:", "ERROR:", "error:"))]
    return (errors or lines or ["no output"])[-1]


def make_venv(venv: Path) -> None:
    """``python -m venv`` from this interpreter (again, when ``venv`` was made by another one or is broken)."""
    exists = venv.exists()
    if exists:
        say(f"{shown(venv)} was made by another Python or is incomplete: making it again with {sys.executable} "
            f"(Python {platform.python_version()})")
    else:
        say(f"making the project environment {shown(venv)} with {sys.executable} (Python {platform.python_version()})")
    if ensurepip_missing():
        package = debian_package_of(os.path.realpath(sys.executable))
        if package is None:
            raise SetupError(f"{sys.executable} has no ensurepip, so `python -m venv` cannot install pip: use a "
                             "Python built with ensurepip, or activate a virtual environment, then run make again")
        apt_install(venv_packages(), f"{sys.executable} cannot make virtual environments yet")
    result = subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        detail = last_error_line(result.stdout + result.stderr)
        raise SetupError(f"`{sys.executable} -m venv {shown(venv)}` failed: {detail}")


def fingerprint(extras: list[str]) -> dict[str, object]:
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    return {"project": str(ROOT), "pyproject_sha256": hashlib.sha256(pyproject).hexdigest(), "extras": extras}


def up_to_date(stamp: Path, wanted: dict[str, object]) -> bool:
    """The same checkout and pyproject.toml were installed before, with these extras or more."""
    try:
        done = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    same = all(done.get(key) == wanted[key] for key in ("project", "pyproject_sha256"))
    return same and set(wanted["extras"]) <= set(done.get("extras", []))  # type: ignore[arg-type]


def pip_install(python: Path, prefix: Path, extras: list[str], only_binary: list[str]) -> tuple[bool, str]:
    """``pip install -e .[extras]``; (ok, pip's output). Output goes to a log in the environment too."""
    target = f".[{','.join(extras)}]" if extras else "."
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    for name in only_binary:
        command += ["--only-binary", name]
    result = subprocess.run([*command, "-e", target], cwd=ROOT, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    with (prefix / PIP_LOG).open("a") as log:
        log.write(f"$ {' '.join(command)} -e {target}\n{output}\n")
    return result.returncode == 0, output


def optional_requirements(extra: str) -> list[str]:
    """Distribution names in an optional extra of pyproject.toml (to ask pip for wheels only)."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(rf"^{re.escape(extra)} = \[(.*?)^\]", text, re.M | re.S)
    if block is None:
        raise SetupError(f"pyproject.toml has no optional extra {extra!r}")
    lines = [line.split("#")[0] for line in block.group(1).splitlines()]
    return [re.split(r"[<>=!~;\[ ]", req.strip().strip('",'))[0] for req in lines if req.strip().strip('",')]


def pip_failure(output: str, what: str, log: Path) -> SetupError:
    if "CERTIFICATE_VERIFY_FAILED" in output:
        return SetupError(f"pip could not download {what}: the package index's TLS certificate did not verify "
                          "(a TLS-intercepting proxy? give its CA with PIP_CERT=/path/to/ca.pem), then run make "
                          f"again (log: {shown(log)})")
    if any(marker in output for marker in NETWORK_TROUBLE):
        return SetupError(f"pip could not download {what} (no network? the package index is not reachable): connect "
                          f"this machine, or set PIP_INDEX_URL to a mirror, then run make again (log: {shown(log)})")
    missing = re.search(r"No matching distribution found for (\S+)", output)
    if missing and "(from versions: none)" in output:
        return SetupError(f"pip found no version at all of {missing.group(1)}, which {what} needs (no network, or a "
                          "package index that lacks it?): connect this machine, or set PIP_INDEX_URL to a mirror, "
                          f"then run make again (log: {shown(log)})")
    return SetupError(f"pip could not install {what}: {last_error_line(output)} (log: {shown(log)})")


def install(python: Path, prefix: Path, extras: list[str], optional: list[str]) -> bool:
    """Install unless the stamp says it is done; True when pip ran."""
    stamp = prefix / STAMP
    wanted = fingerprint(sorted(set(extras) | set(optional)))
    if up_to_date(stamp, wanted) and (python.parent / "mproxy").exists():
        return False
    log = prefix / PIP_LOG
    names = ", ".join(extras + optional)
    say(f"installing mproxy-scapy{' with ' + names if names else ''} into {shown(prefix)} (pip's log: {shown(log)})")
    only_binary = [name for extra in optional for name in optional_requirements(extra)]
    ok, output = pip_install(python, prefix, extras + optional, only_binary)
    unavailable: dict[str, str] = {}
    if not ok and optional and not any(marker in output for marker in NETWORK_TROUBLE) \
            and any(f"No matching distribution found for {name}" in output for name in only_binary):
        for extra in optional:
            unavailable[extra] = (f"{', '.join(optional_requirements(extra))} (the {extra} extra) has no build for "
                                  f"Python {platform.python_version()} on {sys.platform}-{platform.machine()}")
        say(f"note: {'; '.join(unavailable.values())}: its tests say so; everything else is installed")
        ok, output = pip_install(python, prefix, extras, [])
    if not ok:
        raise pip_failure(output, f"mproxy-scapy{'[' + ','.join(extras) + ']' if extras else ''}", log)
    marker = prefix / UNAVAILABLE
    if unavailable:
        marker.write_text(json.dumps(unavailable, indent=1) + "\n")
    elif marker.exists():
        marker.unlink()
    stamp.write_text(json.dumps(wanted) + "\n")
    return True


def run(python: Path, command: list[str]) -> int:
    """The command with the environment's bin/ first on PATH (as if activated); its exit status."""
    bin_dir = python.parent
    env = dict(os.environ, VIRTUAL_ENV=str(bin_dir.parent), PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PYTHONHOME", None)
    executable = bin_dir / command[0] if (bin_dir / command[0]).exists() else shutil.which(command[0], path=env["PATH"])
    if executable is None:
        raise SetupError(f"{command[0]}: no such command in {shown(bin_dir)} or on PATH")
    sys.stdout.flush()
    try:
        return subprocess.run([str(executable), *command[1:]], env=env, check=False).returncode
    except KeyboardInterrupt:
        return 130


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tools/devenv.py", description=__doc__.split("\n")[0])
    parser.add_argument("--venv", default=".venv", help="the project environment (made when not in one)")
    parser.add_argument("--extras", default="", help="comma-separated extras to install (test)")
    parser.add_argument("--optional-extra", action="append", default=[],
                        help="an extra installed only where it has prebuilt wheels (fuzz)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...: run it in the environment")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        if in_virtualenv():
            python = Path(sys.executable)
            prefix = Path(sys.prefix)
        else:
            venv = (ROOT / args.venv) if not os.path.isabs(args.venv) else Path(args.venv)
            python = env_python(venv)
            here = [sys.base_prefix, platform.python_version()]
            if describe(python) != here:
                make_venv(venv)
                if describe(python) != here:
                    raise SetupError(f"{shown(venv)} was made but its Python does not run pip: remove "
                                     f"{shown(venv)} and run make again")
            prefix = venv
        installed = install(python, prefix, [e for e in args.extras.split(",") if e], args.optional_extra)
        status = run(python, command) if command else 0
        if installed and not in_virtualenv():
            say(f"mproxy is installed in {shown(prefix)}: run it as {shown(prefix / 'bin' / 'mproxy')}, or "
                f"`. {shown(prefix / 'bin' / 'activate')}` first")
        return status
    except SetupError as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
