"""``mproxy wireshark install | uninstall | status`` with the real tshark, as root and as an unprivileged user.

Each run gets a temporary HOME, so the personal plugin folder is a temporary one and the
user's own Wireshark setup is never touched. The unprivileged runs use ``setpriv`` to become
``nobody`` (when the tests run as root) with a world-readable copy of the package and the
base interpreter, since the test environment's own files may not be readable by nobody.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mproxy_scapy.wireshark.generator import generate_lua
from mproxy_scapy.wireshark.probe import ROOT_SKIPS_PERSONAL_LUA, find_tshark

from support import REPO

pytestmark = pytest.mark.tshark

TSHARK = find_tshark()


def tshark_or_fail():
    if TSHARK is None:
        pytest.fail("these tests need tshark (apt-get install tshark)")
    return TSHARK


def as_user(home: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


def mproxy(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``mproxy ARGS`` as this (root) user, with HOME set to ``home``."""
    return subprocess.run([sys.executable, "-m", "mproxy_scapy.cli", *args], env=as_user(home), cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)


def _python_for_nobody(prefix: list[str]) -> str:
    """An interpreter (3.11+) that nobody may run: this one's base, or the system's."""
    for candidate in (os.path.realpath(sys._base_executable), "/usr/bin/python3"):  # type: ignore[attr-defined]
        probe = subprocess.run([*prefix, candidate, "-c", "import sys; sys.exit(sys.version_info < (3, 11))"],
                               capture_output=True, check=False)
        if probe.returncode == 0:
            return candidate
    pytest.fail("no Python 3.11+ that the unprivileged user can run (this one's base or /usr/bin/python3)")


@pytest.fixture
def unprivileged() -> Iterator[tuple[Path, object]]:
    """(home, run): ``run(*args)`` is ``mproxy ARGS`` as nobody (or as this user when it is not root)."""
    folder = Path(tempfile.mkdtemp(prefix="mproxy-unprivileged-"))
    try:
        folder.chmod(0o755)
        shutil.copytree(REPO / "mproxy_scapy", folder / "mproxy_scapy",
                        ignore=shutil.ignore_patterns("__pycache__"))
        home = folder / "home"
        home.mkdir()
        prefix: list[str] = []
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(home, nobody.pw_uid, nobody.pw_gid)
            prefix = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        python = _python_for_nobody(prefix)

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*prefix, python, "-m", "mproxy_scapy.cli", *args], env=as_user(home),
                                  cwd=folder, capture_output=True, text=True, timeout=300, check=False)

        yield home, run
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def personal_folder(home: Path) -> Path:
    return home / ".local" / "lib" / "wireshark" / "plugins"


def test_install_as_root_says_whether_tshark_loads_it(tmp_path):
    tshark = tshark_or_fail()
    result = mproxy(tmp_path, "wireshark", "install")
    plugin = personal_folder(tmp_path) / "mproxy.lua"
    assert plugin.read_text(encoding="utf-8") == generate_lua()
    assert f"installed {plugin}" in result.stdout
    skipped = os.geteuid() == 0 and tshark.version >= ROOT_SKIPS_PERSONAL_LUA
    if skipped:
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Wireshark 4.2 and later ignore Lua plugins in the personal folder" in result.stderr
        assert "mproxy wireshark install --global" in result.stderr
    else:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "loads it: `tshark -G protocols` lists M-PROXY tunnel protocol (mproxy)" in result.stdout

    status = mproxy(tmp_path, "wireshark", "status")
    assert status.returncode == (1 if skipped else 0), status.stdout
    assert f"plugin:    {plugin} (personal Lua plugins folder; as this mproxy generates it)" in status.stdout
    assert ("loads:     no: " if skipped else "loads:     yes") in status.stdout


def test_status_names_the_wireshark_and_lua_versions(tmp_path):
    tshark = tshark_or_fail()
    about = " ".join(subprocess.run(["tshark", "-v"], capture_output=True, text=True, check=True).stdout.split())
    lua = re.search(r"with Lua (\d[\d.]*)", about)
    status = mproxy(tmp_path, "wireshark", "status")
    version = ".".join(map(str, tshark.version))
    assert status.stdout.splitlines()[0].startswith(f"Wireshark: TShark (Wireshark) {version}")
    assert f"Lua:       {lua.group(1) if lua else 'none'}" in status.stdout
    assert "loads:     no, it is not installed: mproxy wireshark install" in status.stdout
    assert status.returncode == 1


def test_uninstall_then_status_says_not_installed(tmp_path):
    tshark_or_fail()
    mproxy(tmp_path, "wireshark", "install")
    removed = mproxy(tmp_path, "wireshark", "uninstall")
    assert removed.returncode == 0 and "removed" in removed.stdout
    assert not (personal_folder(tmp_path) / "mproxy.lua").exists()
    again = mproxy(tmp_path, "wireshark", "install", "--uninstall")
    assert again.returncode == 0 and "nothing to remove" in again.stdout


def test_install_as_an_unprivileged_user_loads(unprivileged):
    tshark_or_fail()
    home, run = unprivileged
    result = run("wireshark", "install")
    assert result.returncode == 0, result.stdout + result.stderr
    plugin = personal_folder(home) / "mproxy.lua"
    assert f"installed {plugin}" in result.stdout
    assert "loads it: `tshark -G protocols` lists M-PROXY tunnel protocol (mproxy)" in result.stdout
    status = run("wireshark", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "loads:     yes" in status.stdout


def test_global_needs_root_and_names_tshark_s_global_folder(unprivileged):
    tshark = tshark_or_fail()
    if os.geteuid() != 0:
        pytest.fail("run the suite as root: this test needs an unprivileged user distinct from the one running it")
    _, run = unprivileged
    result = run("wireshark", "install", "--global")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"mproxy: error: cannot write {tshark.global_lua / 'mproxy.lua'}: "
                                    "the global folder needs root"), result.stderr


def test_a_folder_tshark_does_not_read_is_reported(tmp_path):
    tshark_or_fail()
    result = mproxy(tmp_path, "wireshark", "install", "--folder", str(tmp_path / "elsewhere"))
    assert result.returncode == 1
    assert f"does not look for Lua plugins in {tmp_path / 'elsewhere'}" in result.stderr
    assert "install without --folder" in result.stderr


def test_a_plugin_that_does_not_load_is_reported_with_tshark_s_own_words(unprivileged):
    """A broken mproxy.lua in the personal folder: status shows what tshark said when loading it."""
    tshark_or_fail()
    home, run = unprivileged
    assert run("wireshark", "install").returncode == 0
    plugin = personal_folder(home) / "mproxy.lua"
    plugin.write_text("this is not Lua (\n", encoding="utf-8")
    status = run("wireshark", "status")
    assert status.returncode == 1
    assert "differs from this mproxy: reinstall" in status.stdout
    line = next(line for line in status.stdout.splitlines() if line.startswith("loads:"))
    assert "could not load it:" in line and "mproxy.lua" in line, status.stdout
