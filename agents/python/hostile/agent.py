"""`hostile-py` (hostile): what a Python guest must not get away with, by
`attack`: `loop` spins forever, `allocate` grows memory without end, `snoop`
looks for the host's environment, files and network (sockets and its own HTTP
requests) and returns what it saw,
`raise` fails with an exception of its own."""

import os
import socket

import warden


def snoop():
    opened = []
    for path in ["/etc/passwd", "/", ".", "..", "../../Cargo.toml", "secret.txt", "/proc/self/environ"]:
        try:
            if os.path.isdir(path):
                os.listdir(path)
            else:
                open(path, "rb").read()
            opened.append(path)
        except OSError:
            pass
    created = False
    for path in ["/tmp/snoop", "snoop"]:
        try:
            open(path, "wb").write(b"x")
            created = True
        except OSError:
            pass
    sockets = False
    for attempt in (
        lambda: socket.create_connection(("127.0.0.1", 80), timeout=1),
        lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind(("0.0.0.0", 0)),
        lambda: socket.socket().bind(("127.0.0.1", 0)),
    ):
        try:
            attempt()
            sockets = True
        except Exception:  # noqa: BLE001 - any failure is the sandbox saying no
            pass
    # Its own HTTP requests: cloud metadata, the host's own API, the web (no
    # host is on its manifest's allowlist).
    fetched = []
    for url in ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:8080/admin/health", "https://example.com/"]:
        try:
            warden.http.fetch(url, timeout_ms=1000)
            fetched.append(url)
        except warden.AgentError:
            pass
    return {"env": sorted(os.environ), "opened": opened, "created": created, "socket": sockets, "fetched": fetched}


@warden.agent
def run(input: dict) -> dict:
    attack = input.get("attack")
    if attack == "loop":
        warden.log.info("spinning forever")
        n = 0
        while True:
            n += 1
    if attack == "allocate":
        hoard = []
        while True:
            hoard.append(bytearray(1 << 20))
    if attack == "snoop":
        return snoop()
    if attack == "raise":
        raise ValueError("the agent broke on purpose")
    raise warden.AgentError.invalid_input(f"unknown attack {attack!r}")
