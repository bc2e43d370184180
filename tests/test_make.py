"""The Makefile's set-up (and tools/devenv.py behind it): each way it cannot go on is one line saying what to do.

``make dissect`` / ``make test`` are run as a user runs them, with what is wrong made real: no
python3 on PATH, a PYTHON= that is no command or no Python, an active virtual environment that
is gone, and a package index that cannot be reached (pip pointed at a closed port on 127.0.0.1,
the machine's pip configuration switched off). The fresh-clone success path is
tests/test_first_contact.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO

MAKE = "/usr/bin/make"


def make(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MAKE, "--no-print-directory", "-C", str(REPO), *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", **extra}


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """One ``mproxy-scapy: error:`` line after any progress lines, then only make's ``make: *** [...] Error 1``."""
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("make: ***")]
    assert "Traceback" not in result.stderr
    assert all(line.startswith("mproxy-scapy: ") for line in lines), result.stderr
    errors = [line for line in lines if line.startswith("mproxy-scapy: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    return errors[0]


def test_no_python3_on_the_machine(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    line = one_error_line(make("dissect", env=bare_env(tmp_path, PATH=str(empty))))
    assert "no python3 on this machine: install it (apt-get install python3)" in line
    assert "make PYTHON=/path/to/python3" in line


def test_unknown_python_given(tmp_path):
    line = one_error_line(make("dissect", "PYTHON=no-such-python3", env=bare_env(tmp_path)))
    assert line == ("mproxy-scapy: error: PYTHON=no-such-python3 is not a command: name a Python 3.11 or newer, "
                    "e.g. make PYTHON=/usr/bin/python3")


def test_python_given_that_is_not_python(tmp_path):
    line = one_error_line(make("test", "PYTHON=/bin/true", env=bare_env(tmp_path)))
    assert line == ("mproxy-scapy: error: /bin/true is not a Python interpreter: name one with "
                    "make PYTHON=/path/to/python3")


def test_active_virtual_environment_that_is_gone(tmp_path):
    gone = tmp_path / "gone-venv"
    line = one_error_line(make("dissect", env=bare_env(tmp_path, VIRTUAL_ENV=str(gone))))
    assert f"the active virtual environment {gone} has no bin/python" in line


def test_an_active_virtual_environment_is_used_and_no_venv_is_made(tmp_path):
    if sys.prefix == sys.base_prefix:
        pytest.fail("run the suite from a virtual environment (make test does)")
    venv = tmp_path / "not-made"
    result = make("install", f"VENV={venv}", env=bare_env(tmp_path, VIRTUAL_ENV=sys.prefix))
    assert result.returncode == 0, result.stderr
    assert not venv.exists()
    assert "making the project environment" not in result.stderr


@pytest.mark.slow
def test_no_network_while_installing(tmp_path):
    venv = tmp_path / "venv"
    # PIP_RETRIES=0: pip then says only "from versions: none" (with its default 5 retries it names the refused
    # connection too, after about a minute; both are reported as no network)
    unreachable = {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple/", "PIP_RETRIES": "0"}
    python = os.path.realpath(sys._base_executable)  # type: ignore[attr-defined]
    result = make("dissect", f"PYTHON={python}", f"VENV={venv}", env=bare_env(tmp_path, **unreachable))
    line = one_error_line(result)
    assert "pip found no version at all of setuptools>=77, which mproxy-scapy needs (no network" in line, line
    assert "connect this machine, or set PIP_INDEX_URL to a mirror, then run make again" in line
    assert (venv / "mproxy-scapy-pip.log").exists()
