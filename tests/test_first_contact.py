"""The README's first command the way a newcomer runs it: a fresh clone, the distribution's python3.

Debian 12 and 13 (and Ubuntu 23.04+) mark their ``python3`` externally managed (PEP 668), so a
plain ``pip install`` is refused; ``make dissect`` must make and use its own environment. This
clones the commit checked out (so commit before running it locally), runs ``make dissect`` with
``PATH=/usr/bin:/bin``, no virtual environment and an empty ``HOME``, and expects the bundled
capture's frames.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO

SYSTEM_PYTHON = Path("/usr/bin/python3")


def newcomer_env(home: Path) -> dict[str, str]:
    """A login shell's bare environment: no VIRTUAL_ENV, no pyenv, no PIP_* settings from this session."""
    home.mkdir(exist_ok=True)
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "TERM": "dumb"}


def externally_managed(python: Path) -> bool:
    stdlib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    return (Path(stdlib) / "EXTERNALLY-MANAGED").exists()


@pytest.mark.slow
def test_make_dissect_in_a_fresh_clone_with_the_distributions_python(tmp_path):
    if not SYSTEM_PYTHON.exists():
        pytest.fail("this test needs the distribution's /usr/bin/python3 (apt-get install python3)")
    assert externally_managed(SYSTEM_PYTHON), "/usr/bin/python3 is not externally managed: not the case under test"
    clone = tmp_path / "mproxy-scapy"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=300)
    env = newcomer_env(tmp_path / "home")

    first = subprocess.run(["make", "dissect"], cwd=clone, env=env, capture_output=True, text=True, timeout=1800,
                           check=False)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    expected = subprocess.run([sys.executable, "-m", "mproxy_scapy.cli", "dissect", "captures/websocket.pcap"],
                              cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
    assert first.stdout == expected.stdout
    assert first.stdout.count("\n") == 57 and "control [1, \"hello\"" in first.stdout.splitlines()[0]
    assert "making the project environment .venv with /usr/bin/python3" in first.stderr, first.stderr
    assert "run it as .venv/bin/mproxy, or `. .venv/bin/activate` first" in first.stderr, first.stderr
    venv_python = clone / ".venv" / "bin" / "python"
    base = subprocess.run([str(venv_python), "-c", "import sys; print(sys.base_prefix)"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert base == "/usr", base

    again = subprocess.run(["make", "dissect"], cwd=clone, env=env, capture_output=True, text=True, timeout=600,
                           check=False)
    assert again.returncode == 0, again.stderr
    assert again.stdout == expected.stdout
    assert again.stderr == expected.stderr, "the second run installs nothing and says nothing more"
    mproxy_again = subprocess.run([str(clone / ".venv" / "bin" / "mproxy"), "--version"], env=env,
                                  capture_output=True, text=True, timeout=120, check=True)
    assert mproxy_again.stdout.startswith("mproxy ")
