"""Browser tests: Debian's Chromium (/usr/bin/chromium, never a downloaded browser) driven by Playwright
against a real `makima-tts serve` on loopback with a tiny random checkpoint.

The server requires a token (TOKEN), caps utterances at MAX_FRAMES frames so a whole utterance plays in a
few seconds, and has one built-in voice, `default`, made from a generated speech-like clip. Chromium's
microphone is a fake device that loops FAKE_MIC: silence, then a loud speech-like sound, then silence.
Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("MAKIMA_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = REPO / "artifacts" / "screenshots"
TOKEN = "browser-test-token"
MAX_FRAMES = 50  # 4 s of audio per utterance
SERVER_START_TIMEOUT_S = 180
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


def speech_like(seconds: float, sample_rate: int, amplitude: float = 0.3) -> np.ndarray:
    """A voiced, syllable-modulated harmonic tone (float32): loud and steady enough for any energy VAD."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 150 + 25 * np.sin(2 * np.pi * 1.3 * t)  # a gliding pitch
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    x = x / np.abs(x).max() * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))  # ~4 syllables a second
    return (amplitude * x).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def fake_mic_signal(sample_rate: int = 48000) -> np.ndarray:
    """0.3 s silence, 1.5 s of speech, 4 s silence (Chromium loops it)."""
    silence = lambda s: np.zeros(int(s * sample_rate), np.float32)  # noqa: E731
    return np.concatenate([silence(0.3), speech_like(1.5, sample_rate), silence(4.0)])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model_loaded(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/ready", timeout=2) as res:
            return json.load(res).get("modelState") == "loaded"
    except (urllib.error.URLError, OSError, ValueError):
        return False  # not up yet, or 503 while loading


def _answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=2) as res:
            return res.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass(frozen=True)
class Server:
    base: str  # http://127.0.0.1:PORT
    token: str
    max_frames: int  # frames per utterance at most


def _serve(root: Path, model_dir: Path, preload: bool):
    """Start `makima-tts serve` in `root`; yields the Server once it is up (preload: once its model is loaded)."""
    default_voice = root / "voices" / "default"
    default_voice.mkdir(parents=True)
    write_wav(default_voice / "reference.wav", speech_like(3.0, 24000), 24000)
    (default_voice / "voice.json").write_text(
        json.dumps(
            {
                "name": "Default",
                "language": "auto",
                "description": "generated test clip",
                "audio": "reference.wav",
            }
        )
    )
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
        "OMP_WAIT_POLICY": "PASSIVE",
        "TTS_AUTH_TOKENS": TOKEN,
        "TTS_PRELOAD": "true" if preload else "false",
        "TTS_MAX_FRAMES": str(MAX_FRAMES),
        "TTS_VOICES_DIR": str(root / "voices"),
        "TTS_DATA_DIR": str(root / "data"),
        "TTS_LOG_LEVEL": "warning",
    }
    log_path = root / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "makima_tts.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model",
        str(model_dir),
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not (_model_loaded(base) if preload else _answers(base)):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the server did not become ready; its log:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.25)  # polling a subprocess that has no event to wait on
    yield Server(base, TOKEN, MAX_FRAMES)
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory, tiny_base_dir) -> Server:
    """A real `makima-tts serve` with the tiny checkpoint (tests/conftest.py), once its model is loaded."""
    yield from _serve(tmp_path_factory.mktemp("browser-server"), tiny_base_dir, preload=True)


@pytest.fixture(scope="session")
def lazy_server(tmp_path_factory, tiny_base_dir) -> Server:
    """The same server without preloading: its model loads on the first utterance."""
    yield from _serve(tmp_path_factory.mktemp("browser-lazy-server"), tiny_base_dir, preload=False)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Chromium for one test module. Module scope, because Playwright's sync API keeps an event loop
    running while it is open, which would break asyncio.run() in the tests collected after these."""
    playwright_sync = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright (no browser download)"
    )
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    mic = write_wav(tmp_path_factory.mktemp("mic") / "fake_mic.wav", fake_mic_signal(), 48000)
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={mic}"]
        )
        yield b
        b.close()


@pytest.fixture
def voice_clip(tmp_path) -> Path:
    """A 3 s speech-like WAV at 16 kHz to create a voice from."""
    return write_wav(tmp_path / "my-voice.wav", speech_like(3.0, 16000), 16000)


@dataclass
class Tab:
    """One page in a fresh browser context, with what it logged."""

    page: object
    server: Server
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for

    def open(self, path: str, token: str | None = None) -> None:
        """Open a page of the server with the server's token (or `token`) in the #fragment, as a user would."""
        self.page.goto(f"{self.server.base}{path}#token={token or self.server.token}")

    def wait_ready(self) -> None:
        self.page.wait_for_function("window.makima?.client?.state === 'ready'", timeout=30_000)

    def status(self) -> str:
        return self.page.inner_text("#status")

    def record_status_texts(self) -> None:
        """From now on, every text the status line shows is appended to `window.statusTexts`."""
        self.page.evaluate(
            """() => {
                window.statusTexts = [];
                new MutationObserver(() => statusTexts.push(document.querySelector('#status').textContent))
                    .observe(document.querySelector('#status'), {childList: true, characterData: true, subtree: true});
            }"""
        )

    def wait_for(self, condition: str, timeout: float = 20_000) -> None:
        """Wait for a JS condition; on timeout, fail saying what the page showed, logged and asked for."""
        try:
            self.page.wait_for_function(condition, timeout=timeout)
        except Exception as exc:
            kind = self.page.evaluate("document.querySelector('#status')?.dataset.kind")
            state = self.page.evaluate("window.makima?.client?.state")
            raise AssertionError(
                f"waited {timeout / 1000:.0f} s for {condition}: status {self.status()!r} ({kind}), client {state}, "
                f"console errors {self.console_errors}, last requests {self.requests[-8:]}"
            ) from exc

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def _tab(browser, server: Server):
    context = browser.new_context(viewport={"width": 960, "height": 900})
    page = context.new_page()
    t = Tab(page, server)
    page.on("console", lambda m: t.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: t.console_errors.append(f"uncaught: {e}"))
    page.on("request", lambda r: t.requests.append(r.url))
    page.set_default_timeout(20_000)
    yield t
    context.close()


@pytest.fixture
def tab(browser, server):
    yield from _tab(browser, server)


@pytest.fixture
def lazy_tab(browser, lazy_server):
    """A tab on `lazy_server`."""
    yield from _tab(browser, lazy_server)
