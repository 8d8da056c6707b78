"""One ``send()`` per small answer instead of two: an answer's head waits for its body.

uvicorn writes an answer's head and its body with two ``transport.write()`` calls, one
right after the other, and asyncio sends each at once: two ``send()`` system calls per
answer, and on loopback each delivers its segment to the receiver within the call.
:class:`CoalescingTransport` holds a small write back until the next write (both leave
in one ``send()``) or, at the latest, the loop's next turn (``call_soon``): an answer
whose body comes later (an event stream, a handler that awaits between head and body)
waits one turn of the loop, never longer.

At most one small write is held; any other write, a close and the end of the turn send
it first, so the bytes keep their order, and asyncio's buffer and flow control
(pause/resume) see every byte as soon as one more write or the turn's end comes.
"""

from __future__ import annotations

import asyncio
from typing import Any

#: writes up to this size may be held for the next one (an answer's head is ~150 bytes)
HOLD_MAX = 4096


class CoalescingTransport(asyncio.Transport):
    """A TCP transport whose small writes wait for the next write or the loop's next turn."""

    __slots__ = ("_inner", "_loop", "_held", "_flush_due")

    def __init__(self, inner: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._inner = inner
        self._loop = loop
        self._held: bytes | None = None
        self._flush_due = False

    # -- writing ---------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if self._held is not None:
            held, self._held = self._held, None
            self._inner.write(held + bytes(data))
        elif len(data) <= HOLD_MAX and not self._inner.is_closing():
            self._held = bytes(data)
            if not self._flush_due:
                self._flush_due = True
                self._loop.call_soon(self._flush)
        else:
            self._inner.write(data)

    def write_whole(self, data: bytes) -> None:
        """A whole answer (head and body): sent now, after what is held, never held itself."""
        self.flush()
        self._inner.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def _flush(self) -> None:
        self._flush_due = False
        self.flush()

    def flush(self) -> None:
        """Send what is held, now."""
        if self._held is not None:
            held, self._held = self._held, None
            self._inner.write(held)

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size() + (len(self._held) if self._held is not None else 0)

    # -- closing: what is held goes first (close), or is dropped with the rest (abort) --

    def close(self) -> None:
        self.flush()
        self._inner.close()

    def write_eof(self) -> None:
        self.flush()
        self._inner.write_eof()

    def abort(self) -> None:
        self._held = None
        self._inner.abort()

    # -- the rest is the inner transport's -------------------------------------------

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._inner.get_write_buffer_limits()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()
