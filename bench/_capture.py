"""When each request left, from the kernel: a packet socket on the loopback interface, read after the window.

Why a capture and not transmit timestamps on the client's own sockets (SO_TIMESTAMPING): a timestamp waits on
its socket's error queue, and while that queue is not empty epoll reports EPOLLERR, which asyncio's selector
hands to the transport's reader as "readable"; its recv finds nothing and the loop spins at 100 % CPU until
someone reads the queue (measured: 0.3 s of CPU in 0.3 s idle after one stamped send). Reading the daemon's
queues in time would need a hook in its follower path, and the spin would land exactly in the window we
measure. A packet socket is none of the measured process's sockets: the loopback device stamps each segment
(CLOCK_REALTIME) where it hands it on (`netif_rx`, inside the sender's own send call while
`net.core.netdev_tstamp_prequeue` is 1, the default), the kernel queues a copy on our socket, and nothing reads
it until the answers are in. That is the moment the bytes left the client's TCP stack, for the daemon and the
raw loop alike, with no change to either (the loopback shows each segment once). It needs CAP_NET_RAW (root here); without it `WireCapture.open` says so in one sentence and the
wire columns stay empty.

A classic BPF filter keeps only IPv4 TCP segments with a payload to the given destination ports, cut
to their headers, so other work on the loopback (other tests) does not fill the buffer.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ETH_P_IP = 0x0800
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = SCM_TIMESTAMPNS = 35  # the _OLD values: a 64-bit timespec on 64-bit Linux
SO_RCVBUFFORCE = 33
SNAP_BYTES = 96  # IPv4 and TCP headers with options: the ports and sequence number are all we read
RCVBUF_BYTES = 64 << 20
MAX_SEGMENTS = 200_000  # a bounded read, whatever else the loopback carried

_TIMESPEC = struct.Struct("qq")


class CaptureUnavailable(RuntimeError):
    """No packet socket here (not Linux, or no CAP_NET_RAW)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One TCP segment with a payload to a captured port, as the loopback device passed it on."""

    time_ns: int  # CLOCK_REALTIME, the kernel's stamp as the segment left the sender's stack
    src_port: int
    dst_port: int
    seq: int
    payload: int  # bytes of TCP payload


def bpf_program(ports: Iterable[int]) -> list[tuple[int, int, int, int]]:
    """(code, jt, jf, k) per instruction: TCP, not a fragment, to one of `ports`, with a payload."""
    ports = sorted(set(ports))
    if not ports or len(ports) > 16 or not all(0 < p < 65536 for p in ports):
        raise ValueError("capture 1 to 16 destination ports between 1 and 65535")
    # offsets are from the IPv4 header (a SOCK_DGRAM packet socket); jumps are counted from the next instruction
    head = [
        (0x30, 0, 0, 9),  # ldb [9]: protocol
        ("jeq", 6),
        (0x28, 0, 0, 6),  # ldh [6]: flags and fragment offset
        ("jset_drop", 0x1FFF),
        (0xB1, 0, 0, 0),  # ldxb 4*([0]&0xf): IP header length
        (0x48, 0, 0, 2),  # ldh [x+2]: TCP destination port
    ]
    tail = [
        (0x50, 0, 0, 12),  # ldb [x+12]: TCP data offset
        (0x74, 0, 0, 2),  # rsh #2
        (0x54, 0, 0, 0x3C),  # and #0x3c: TCP header length
        (0x0C, 0, 0, 0),  # add x: both headers
        (0x02, 0, 0, 0),  # st M[0]
        (0x28, 0, 0, 2),  # ldh [2]: IP total length
        (0x61, 0, 0, 0),  # ldx M[0]
        ("jgt_x",),
        (0x06, 0, 0, SNAP_BYTES),  # accept, cut
        (0x06, 0, 0, 0),  # drop
    ]
    body = head + [("port", p, i == len(ports) - 1) for i, p in enumerate(ports)] + tail
    drop, accept = len(body) - 1, len(body) - 2
    port_ok = len(head) + len(ports)
    out = []
    for i, ins in enumerate(body):
        op = ins[0]
        if op == "jeq":
            out.append((0x15, 0, drop - i - 1, ins[1]))
        elif op == "jset_drop":
            out.append((0x45, drop - i - 1, 0, ins[1]))
        elif op == "port":
            out.append((0x15, port_ok - i - 1, drop - i - 1 if ins[2] else 0, ins[1]))
        elif op == "jgt_x":
            out.append((0x2D, accept - i - 1, drop - i - 1, 0))
        else:
            out.append(ins)
    return out


def parse_segment(data: bytes, time_ns: int) -> Segment | None:
    """A Segment from an IPv4 packet's first bytes (as the filter cut them); None if it is not one."""
    if len(data) < 20 or data[0] >> 4 != 4 or data[9] != 6:
        return None
    ihl = (data[0] & 0x0F) * 4
    if len(data) < ihl + 13:
        return None
    total = struct.unpack_from("!H", data, 2)[0]
    src, dst, seq = struct.unpack_from("!HHI", data, ihl)
    payload = total - ihl - (data[ihl + 12] >> 4) * 4
    return Segment(time_ns, src, dst, seq, payload) if payload > 0 else None


class WireCapture:
    """TCP segments to `ports` on the loopback, stamped by the kernel; use as a context manager.

    Open it after the connections' warming requests were answered and before the instant: the first segment per
    client port it holds is then that connection's first request.
    """

    def __init__(self, ports: Iterable[int], interface: str = "lo") -> None:
        self.ports = tuple(sorted(set(ports)))
        self.interface = interface
        self._sock: socket.socket | None = None
        self._program: Any = None  # the filter's memory must outlive the setsockopt
        self.dropped = 0

    def open(self) -> WireCapture:
        program = bpf_program(self.ports)
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        except (AttributeError, PermissionError, OSError) as exc:
            raise CaptureUnavailable(
                "on the wire is not measured: a packet socket needs Linux and CAP_NET_RAW "
                f"({getattr(exc, 'strerror', None) or type(exc).__name__}); run as root or "
                "`setcap cap_net_raw+ep` on the interpreter"
            ) from None
        try:
            array = (ctypes.c_ubyte * (8 * len(program)))()
            for i, (code, jt, jf, k) in enumerate(program):
                struct.pack_into("HBBI", array, 8 * i, code, jt, jf, k)
            self._program = array
            sock.setsockopt(
                socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", len(program), ctypes.addressof(array))
            )
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
            sock.bind((self.interface, ETH_P_IP))
            sock.setblocking(False)
            self._drain(sock, keep=False)  # anything queued between the socket and its filter
            self._stats(sock)  # the counters restart on each read
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        return self

    def __enter__(self) -> WireCapture:
        return self.open() if self._sock is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def collect(self) -> list[Segment]:
        """Every segment queued since the last call; `dropped` counts what the full buffer lost (0 or the figures
        miss requests)."""
        if self._sock is None:
            return []
        got = self._drain(self._sock, keep=True)
        self.dropped += self._stats(self._sock)[1]
        return got

    def _drain(self, sock: socket.socket, keep: bool) -> list[Segment]:
        out: list[Segment] = []
        for _ in range(MAX_SEGMENTS):
            try:
                data, ancdata, _flags, address = sock.recvmsg(SNAP_BYTES, 64)
            except BlockingIOError:
                break
            if not keep:
                continue
            stamp = next(
                (d for level, kind, d in ancdata if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS), None
            )
            if stamp is None or len(stamp) < _TIMESPEC.size:
                continue
            sec, nsec = _TIMESPEC.unpack_from(stamp)
            segment = parse_segment(data, sec * 1_000_000_000 + nsec)
            if segment is not None and segment.dst_port in self.ports:
                out.append(segment)
        return out

    @staticmethod
    def _stats(sock: socket.socket) -> tuple[int, int]:
        packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        return packets, drops


def first_sends(segments: Iterable[Segment], owner_of_port: Mapping[int, str]) -> dict[str, int]:
    """Per owner (an account), the kernel's stamp of the earliest segment on any of its ports."""
    out: dict[str, int] = {}
    for segment in segments:
        owner = owner_of_port.get(segment.src_port)
        if owner is not None and segment.time_ns < out.get(owner, segment.time_ns + 1):
            out[owner] = segment.time_ns
    return out


def local_port(transport: Any) -> int | None:
    """The local port of an asyncio transport's socket (None once it is closed)."""
    if transport is None or transport.is_closing():
        return None
    name = transport.get_extra_info("sockname")
    return name[1] if name else None
