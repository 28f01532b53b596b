"""ExaBGP's API process: joins ExaBGP (this process's stdin and stdout) to the daemon's Unix
socket (argv[1]). Standard library only; exits when either side closes, so ExaBGP restarts it
(``exabgp.api.respawn``) and the daemon sees a new connection."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

CONNECT_FOR_S = 5.0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m pathsteer.bgp.relay SOCKET", file=sys.stderr)
        return 2
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + CONNECT_FOR_S
    while True:
        try:
            sock.connect(argv[0])
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                print(f"pathsteer relay: cannot reach {argv[0]}: {exc.strerror}", file=sys.stderr)
                return 1
            time.sleep(0.1)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()

    def up() -> None:  # ExaBGP -> daemon
        try:
            while True:
                data = os.read(stdin, 65536)
                if not data:
                    break
                sock.sendall(data)
        except OSError:
            pass
        os._exit(0)

    threading.Thread(target=up, daemon=True).start()
    try:
        while True:  # daemon -> ExaBGP
            data = sock.recv(1 << 20)
            if not data:
                break
            view = memoryview(data)
            while view:
                n = os.write(stdout, view)
                view = view[n:]
    except OSError:
        pass
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
