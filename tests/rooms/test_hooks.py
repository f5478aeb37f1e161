"""The forwarding sits on aiortc private internals: fail loudly if they change."""

from __future__ import annotations

import aiortc
import pytest
from aiortc import RTCRtpReceiver

from rooms import HookError
from rooms import aiortc_hooks as hooks


@pytest.fixture
def recheck(monkeypatch):
    monkeypatch.setattr(hooks, "_checked", False)


def test_hooks_match_the_installed_aiortc():
    assert aiortc.__version__ == hooks.REQUIRED_AIORTC_VERSION
    hooks.check_hooks()
    assert hooks.current_fingerprints() == hooks.FINGERPRINTS


async def test_hooks_probe_on_real_aiortc_objects():
    await hooks.probe_hooks()


def test_changed_private_function_fails_loudly(recheck, monkeypatch):
    async def _send_rtcp_pli(self, media_ssrc):  # a "new aiortc" with different code
        pass

    monkeypatch.setitem(hooks._FINGERPRINTED, "aiortc.rtcrtpreceiver.RTCRtpReceiver._send_rtcp_pli", _send_rtcp_pli)
    with pytest.raises(HookError, match="_send_rtcp_pli changed"):
        hooks.check_hooks()


def test_missing_private_method_fails_loudly(recheck, monkeypatch):
    monkeypatch.delattr(RTCRtpReceiver, "_send_rtcp_pli")
    with pytest.raises(HookError, match="_send_rtcp_pli is missing"):
        hooks.check_hooks()


def test_other_aiortc_version_fails_loudly(recheck, monkeypatch):
    monkeypatch.setattr(aiortc, "__version__", "1.17.0")
    with pytest.raises(HookError, match="requires exactly 1.16.0"):
        hooks.check_hooks()
