"""Fixtures shared by the whole suite: the reference vectors, the real proxy-packer, the Wireshark matrix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from wireshark import matrix

from support import REFERENCE

PROXY_PACKER = "proxy-packer@2.0.4"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE


@pytest.fixture(scope="session")
def vectors() -> list[dict]:
    return json.loads((REFERENCE / "vectors.json").read_text())


@pytest.fixture(scope="session")
def proxy_packer_dir() -> Path:
    """The real proxy-packer 2.0.4 from the npm registry, unpacked once into a cache folder."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mproxy-scapy"
    package = cache / "proxy-packer-2.0.4" / "package"
    if (package / "index.js").exists():
        return package
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.fail("Node.js and npm are needed for the interoperability tests (apt-get install nodejs npm)")
    target = package.parent
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["npm", "pack", PROXY_PACKER, "--silent", "--pack-destination", str(target)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"npm pack {PROXY_PACKER} failed: {result.stderr.strip()}")
    tarball = target / result.stdout.strip().splitlines()[-1]
    with tarfile.open(tarball) as archive:
        archive.extractall(target, filter="data")
    return package


@pytest.fixture(params=matrix.MATRIX, ids=[v.id for v in matrix.MATRIX])
def wireshark(request: pytest.FixtureRequest) -> matrix.Version:
    """Each Wireshark version of the matrix in turn (tests/wireshark/matrix.py).

    A version that cannot run (root not built, tshark missing) fails the test with how to fix it.
    """
    try:
        matrix.installed(request.param)
    except matrix.MatrixError as error:
        pytest.fail(str(error), pytrace=False)
    return request.param
