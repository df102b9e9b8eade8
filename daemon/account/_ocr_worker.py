"""The OCR worker: a child process that holds the ddddocr model and reads the captcha images sent to it.

The daemon starts it for the morning's logins (`daemon.account._captcha.OcrWorkerSolver`) and ends it when no
login is pending, so the service process never imports ddddocr, onnxruntime or numpy and its event loop never
shares an interpreter with inference. It is run as a script (`python -P .../_ocr_worker.py`), not `-m`, so it
imports neither the daemon's packages nor their dependencies (about 1 s and 50 MB): the standard library and
the model only. The parent imports this module for the frame codec alone.

Frames on its stdin and stdout: a 4-byte big-endian length, then the payload. The first frame it writes says
whether the model loaded (READY, or FAILED and the exception's type name); then per image frame read, one
answer frame: OK and the text the model read, or FAILED and the exception's type name (never an answer). End of
input ends it. Whatever a library prints goes to stderr: stdout carries frames alone.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
from typing import BinaryIO

MAX_FRAME = 4 * 1024 * 1024
"""A captcha is a few kilobytes: a frame over this is refused by both sides (a desynchronised stream)."""
OK = b"\x00"
FAILED = b"\x01"
READY = OK + b"ready"
MISSING = "ModuleNotFoundError"
"""The type name a load failure carries when the ocr extra is not installed."""
_HEADER = struct.Struct(">I")


class FrameError(Exception):
    """The stream ended inside a frame or announced one larger than MAX_FRAME."""


def encode(payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME:
        raise FrameError(f"a frame of {len(payload)} bytes is over the {MAX_FRAME} a captcha can take")
    return _HEADER.pack(len(payload)) + payload


def frame_length(header: bytes) -> int:
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise FrameError(f"a frame of {length} bytes is announced, over the {MAX_FRAME} a captcha can take")
    return length


HEADER_SIZE = _HEADER.size


def _read_exactly(stream: BinaryIO, size: int, *, inside: bool) -> bytes | None:
    """`size` bytes; None at end of input before the first unless `inside` a frame, where it is a FrameError."""
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            if data or inside:
                raise FrameError("the input ended inside a frame")
            return None
        data += chunk
    return data


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next frame's payload, or None at end of input (between frames)."""
    header = _read_exactly(stream, HEADER_SIZE, inside=False)
    if header is None:
        return None
    return _read_exactly(stream, frame_length(header), inside=True)


def serve(requests: BinaryIO, answers: BinaryIO) -> int:
    """Load the model, then answer every image frame until the input ends; the exit status."""
    try:
        import ddddocr

        model = ddddocr.DdddOcr(show_ad=False)
    except Exception as exc:  # the parent turns the type into its sentence (missing extra, broken model)
        answers.write(encode(FAILED + type(exc).__name__.encode()))
        answers.flush()
        return 1
    answers.write(encode(READY))
    answers.flush()
    while (image := read_frame(requests)) is not None:
        try:
            reply = OK + str(model.classification(image)).encode("utf-8", "replace")
        except Exception as exc:  # an image the model cannot decode: the parent fetches another captcha
            reply = FAILED + type(exc).__name__.encode()
        answers.write(encode(reply))
        answers.flush()
    return 0


def main() -> int:
    # Terminal signals are the parent's to handle (it ends this process by closing its input); the worker runs at
    # normal priority even if started from a real-time thread (the parent's SCHED_RESET_ON_FORK sees to that).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = os.fdopen(os.dup(0), "rb", buffering=0)
    answers = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)  # a library's print() lands on stderr, never inside a frame
    sys.stdout = sys.stderr
    try:
        return serve(requests, answers)
    except (FrameError, BrokenPipeError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
