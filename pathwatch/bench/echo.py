"""The bed's UDP echo as a process of its own, like a real far end: its answers never
wait for the bench's event loop or interpreter lock.

`python -m pathwatch.bench.echo FD` serves the bound UDP socket FD it inherits,
echoing every datagram back to its sender, and counts what it answers that is
not the stream's 8-byte sequence numbers, by (source address, payload). A line
`counts` on its stdin is answered by one JSON line on its stdout:
`[[address, payload, count], ...]`. It ends at the end of its stdin.
`EchoProcess` starts it and reads the counts.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import subprocess
import sys
from collections import Counter

STREAM_DATAGRAM = 8


def serve(sock: socket.socket) -> None:
    """Echo on `sock` and answer `counts` on stdin until stdin ends."""
    counts: Counter[tuple[str, str]] = Counter()
    sock.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, "sock")
    selector.register(sys.stdin, selectors.EVENT_READ, "stdin")
    while True:
        for ready, _ in selector.select():
            if ready.data == "stdin":
                line = sys.stdin.readline()
                if not line:
                    return
                rows = [[address, payload, n] for (address, payload), n in counts.items()]
                sys.stdout.write(json.dumps(rows) + "\n")
                sys.stdout.flush()
                continue
            while True:
                try:
                    data, peer = sock.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    continue
                if len(data) != STREAM_DATAGRAM:
                    counts[(peer[0], data.decode(errors="replace"))] += 1
                with contextlib.suppress(OSError):
                    sock.sendto(data, peer)


class EchoProcess:
    """The echo process serving `sock` (bound, in its namespace); `close()` ends it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pathwatch.bench.echo", str(sock.fileno())],
            pass_fds=[sock.fileno()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def counts(self) -> Counter[tuple[str, str]]:
        """Datagrams answered so far by (source address, payload), the stream's left out."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("counts\n")
        self.proc.stdin.flush()
        rows = json.loads(self.proc.stdout.readline() or "[]")
        return Counter({(address, payload): n for address, payload, n in rows})

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
