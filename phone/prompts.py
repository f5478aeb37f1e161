"""The IVR's spoken prompts: Simplified Chinese, then English, synthesized once with espeak-ng into
the data folder (one 8 kHz 16-bit file per text, named by its hash) and played from memory."""
from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np

log = logging.getLogger("mediation.phone")

TEXTS = {
    "welcome": ("欢迎参加在线调解。请输入会议号，以井号键结束。",
                "Welcome to the online mediation. Enter the session number, then the hash key."),
    "pin": ("请输入您的个人密码，以井号键结束。", "Enter your personal PIN, then the hash key."),
    "wrong": ("会议号或密码不正确，请重新输入。", "The session number or PIN is not correct. Please try again."),
    "wrong_final": ("密码错误次数过多，再见。", "Too many wrong attempts. Goodbye."),
    "throttled": ("尝试次数过多，请稍后再拨。", "Too many attempts. Please call again later."),
    "ended": ("本次调解会议已经结束，再见。", "This mediation session has ended. Goodbye."),
    "consent": ("您是否同意通过在线方式进行调解？同意请按一，不同意请按二。",
                "Do you agree to mediate online? Press 1 to agree, 2 to decline."),
    "declined": ("您选择了线下调解，调解机构将与您联系。再见。",
                 "You chose mediation in person; the institution will contact you. Goodbye."),
    "notice_ack": ("已听清请按一。", "Press 1 to confirm you have heard this notice."),
    "waiting": ("请稍候，调解员将让您进入会议。", "Please wait; the mediator will let you in."),
    "admitted": ("您已进入会议。", "You are now in the session."),
    "removed": ("您已离开会议，再见。", "You have left the session. Goodbye."),
    "unavailable": ("系统暂时无法接通，请稍后再拨。", "The service is unavailable. Please call again later."),
}
VOICES = ("cmn", "en")
RATE = 8000


def _synth(text: str, voice: str, out: Path) -> None:
    wav = out.with_suffix(".wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text], check=True,
                   capture_output=True, timeout=60)
    samples = []
    with av.open(str(wav)) as f:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        for frame in f.decode(audio=0):
            for r in resampler.resample(frame):
                samples.append(r.to_ndarray().reshape(-1))
        for r in resampler.resample(None):
            samples.append(r.to_ndarray().reshape(-1))
    wav.unlink()
    tmp = out.with_suffix(".tmp")
    np.concatenate(samples).astype(np.int16).tofile(tmp)
    tmp.replace(out)


class Prompts:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.cache: dict[tuple[str, str], np.ndarray] = {}
        self.available = shutil.which("espeak-ng") is not None
        if not self.available:
            log.error("espeak-ng is not installed: the telephone prompts are silent")

    def _load(self, text: str, voice: str) -> np.ndarray:
        key = (voice, text)
        if key not in self.cache:
            path = self.folder / (hashlib.sha256(f"{voice}\n{text}".encode()).hexdigest()[:24] + ".pcm")
            if not path.exists() and self.available:
                self.folder.mkdir(parents=True, exist_ok=True)
                _synth(text, voice, path)
            data = np.fromfile(path, dtype=np.int16) if path.exists() else np.zeros(RATE // 2, np.int16)
            self.cache[key] = data
        return self.cache[key]

    def both(self, zh: str, en: str) -> np.ndarray:
        pause = np.zeros(RATE * 3 // 10, np.int16)
        return np.concatenate([self._load(zh, "cmn"), pause, self._load(en, "en"), pause])

    def speech(self, name: str) -> np.ndarray:
        return self.both(*TEXTS[name])

    async def text(self, zh: str, en: str = "") -> np.ndarray:
        """Any text (a notice), synthesized off the event loop."""
        return await asyncio.to_thread(self.both, zh, en) if en else \
            await asyncio.to_thread(lambda: self._load(zh, "cmn"))

    async def prepare(self) -> None:
        """Synthesize the fixed prompts before the first call (a few seconds, once per data folder)."""
        for name in TEXTS:
            await asyncio.to_thread(self.speech, name)
