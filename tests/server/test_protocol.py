"""protocol.py: the close codes are one enum, mirrored once (same names and numbers) in static/wire.js."""

from __future__ import annotations

import re
from pathlib import Path

from makima_tts.server import protocol as p

WIRE_JS = Path(p.__file__).resolve().parents[1] / "static" / "wire.js"


def test_wire_js_mirrors_the_close_codes():
    table = re.search(r"const CLOSE_TABLE = \{(.*?)\};", WIRE_JS.read_text(), re.S).group(1)
    js = {int(num): name for num, name in re.findall(r'(\d{4}): \["([A-Z_]+)"', table)}
    js.pop(1006)  # only a browser reports it (no close frame at all); the server never sends it
    assert js == {code.value: code.name for code in p.CloseCode}


def test_error_codes_that_close_the_session_are_not_recoverable():
    for code, close in p.ERROR_CLOSE_CODES.items():
        assert isinstance(close, p.CloseCode)
        assert p.error_message(code, "x")["recoverable"] is False
    assert p.error_message("INVALID_TEXT", "x", "u1") == {
        "type": "error", "code": "INVALID_TEXT", "message": "x", "recoverable": True, "utteranceId": "u1"}
