"""An adversarial record corpus: payloads built to break parsers and checks rather than to carry data.

Each entry is raw bytes as a producer might send them. The tests write them as JSON lines, CSV
rows, image files and Kafka message values, and check that every one ends in bronze or in
quarantine with a reason while the run succeeds.
"""

from __future__ import annotations

TEN_MB = 10 * 1024 * 1024
DEEP = 100_000


def hostile_corpus() -> dict[str, bytes]:
    """Name -> payload. None holds a newline or a carriage return (each stays one line of a file)."""
    return {
        "deep-arrays-unclosed": b"[" * DEEP,
        "deep-arrays": b"[" * DEEP + b"]" * DEEP,
        "deep-objects": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
        "deep-inside-a-record": b'{"id": 1, "v": ' + b"[" * DEEP + b"]" * DEEP + b"}",
        "brackets-inside-a-string": b'{"id": 2, "v": "' + b"[" * DEEP + b'"}',
        "huge-integer": b'{"id": ' + b"9" * DEEP + b"}",
        "huge-exponent": b'{"id": 3, "v": 1e999999999}',
        "lone-surrogate-escaped": b'{"id": 4, "v": "\\ud800"}',
        "lone-surrogate-bytes": b'{"id": 5, "v": "\xed\xa0\x80"}',
        "nul-bytes": b'{"id": 6, "v": "a\x00b"}',
        "overlong-utf8": b'{"id": 7, "v": "\xc0\xaf\xe0\x80\xaf"}',
        "ten-mb-line": b'{"id": 8, "v": "' + b"x" * TEN_MB + b'"}',
        "ten-mb-of-brackets": b"{" * TEN_MB,
        "every-byte": bytes(b for b in range(256) if b not in (0x0A, 0x0D)),
        "only-a-bom": b"\xef\xbb\xbf",
        "control-characters": bytes(range(1, 32)).replace(b"\n", b"").replace(b"\r", b""),
    }
