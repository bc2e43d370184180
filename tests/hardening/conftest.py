"""The hardening tests' tshark profile: one empty profile per module and Wireshark version of the matrix."""

from __future__ import annotations

import pytest
from hardening.adversarial import Profile
from wireshark import matrix


@pytest.fixture(scope="module", params=matrix.MATRIX, ids=[v.id for v in matrix.MATRIX])
def home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Profile:
    """An empty tshark profile and the Wireshark version it runs on; every Lua test runs on each version."""
    try:
        matrix.installed(request.param)
    except matrix.MatrixError as error:
        pytest.fail(str(error), pytrace=False)
    return Profile(tmp_path_factory.mktemp(f"tshark-home-{request.param.id}"), request.param)
