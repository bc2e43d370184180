"""MProxy in a real Scapy interpreter, loaded the way a user loads an extension."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

from scapy.config import ExtsManager

from support import REFERENCE

CONTROL_HELLO = next(v for v in json.loads((REFERENCE / "vectors.json").read_text())
                     if v["name"] == "pack control hello")["wire_hex"]


def clean_env(home: Path) -> dict[str, str]:
    """A fresh HOME, so no user's Scapy start-up files change what the shell does."""
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"), TERM="dumb", PYTHONIOENCODING="utf-8")
    env.pop("PYTHONSTARTUP", None)
    return env


def run_scapy_shell(commands: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    """The real Scapy console (``python -m scapy -H``) reading the commands on stdin."""
    return subprocess.run([sys.executable, "-m", "scapy", "-H"], input="\n".join(commands) + "\n",
                          capture_output=True, text=True, timeout=120, env=clean_env(home), check=False)


def test_installed_metadata_is_what_scapys_extension_loader_reads():
    dist = importlib.metadata.distribution("mproxy-scapy")
    license_ = dist.metadata.get("License-Expression") or dist.metadata.get("License")
    assert license_ in ExtsManager.GPLV2_LICENCES
    assert "mproxy_scapy" in (dist.read_text("top_level.txt") or "").split()


def test_extension_loads_in_a_scapy_shell_and_dissects_a_frame(tmp_path):
    result = run_scapy_shell([
        'conf.exts.load("mproxy-scapy")',
        'load_contrib("mproxy")',
        f'p = MProxy(bytes.fromhex("{CONTROL_HELLO}"))',
        'print("RESULT", p.service, p.datalen, p[MProxyControl].control_command, p[MProxyControl].args)',
        'print("EXTS", [s for e in conf.exts.exts for s in e.specs])',
        'bind(7443); print("BOUND", MProxy in IP(bytes(IP()/TCP(dport=7443)/Raw(p.original))))',
    ], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "RESULT control 44 hello [254, ['add_token', 'delete_token']]" in result.stdout, output
    assert "EXTS ['scapy.contrib.mproxy']" in result.stdout, output
    assert "BOUND True" in result.stdout, output
    for bad in ("Traceback", "Error", "not loaded", "cannot be loaded", "not found"):
        assert bad not in output, output


def test_load_contrib_without_the_extension_fails_as_scapy_reports_it(tmp_path):
    result = run_scapy_shell(['load_contrib("mproxy")', 'print("HAS", "MProxy" in dir())'], tmp_path)
    assert "HAS False" in result.stdout, result.stdout + result.stderr
    assert "No module named 'scapy.layers.mproxy'" in result.stdout + result.stderr


def test_star_import_gives_the_layers(tmp_path):
    script = (
        "from mproxy_scapy import *\n"
        f"p = MProxy(bytes.fromhex('{CONTROL_HELLO}'))\n"
        "print(type(p).__name__, p[MProxyControl].control_command, pack_header is not None)\n"
        "from scapy.layers.inet import IP, TCP\n"
        "bind(7443); print(MProxy in IP(bytes(IP()/TCP(dport=7443)/p)))\n"
        "unbind(7443); print(MProxy in IP(bytes(IP()/TCP(dport=7443)/p)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env=clean_env(tmp_path), check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["MProxy", "hello", "True", "True", "False"]


def test_bind_and_unbind_are_attributes_of_the_package():
    import mproxy_scapy
    from mproxy_scapy import layer

    assert mproxy_scapy.bind is layer.bind and mproxy_scapy.unbind is layer.unbind
    assert {"bind", "unbind", "MProxy"} <= set(mproxy_scapy.__all__)


def test_importing_the_package_does_not_import_scapy(tmp_path):
    script = "import sys, mproxy_scapy; print('scapy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env=clean_env(tmp_path), check=False)
    assert result.stdout.strip() == "False", result.stderr
