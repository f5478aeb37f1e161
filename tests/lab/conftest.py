from __future__ import annotations

import pytest

from tests.conftest import IN_CI
from tests.support import netlab


@pytest.fixture
def lab(tmp_path):
    reason = netlab.available()
    if reason:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    built = netlab.Lab(tmp_path / "lab")
    try:
        yield built
    finally:
        built.close()
