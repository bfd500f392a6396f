"""Run the real programs as separate processes: server, admin CLI, kiosk agent.

The demo, the end-to-end tests and the benchmarks drive the system exactly as an operator would,
through ``ecard`` sub-processes, so they exercise the same code paths as production.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

ECARD = [sys.executable, "-m", "ecard_cli"]


class StackError(RuntimeError):
    """A child process failed or did not become ready."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_env(database_url: str, data_dir: Path, secret_key: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ECARD_DATABASE_URL=database_url,
        ECARD_DATA_DIR=str(data_dir),
        ECARD_SECRET_KEY=secret_key,
        PYTHONUNBUFFERED="1",
    )
    return env


def admin(env: Mapping[str, str], *args: str) -> dict[str, Any]:
    """Run ``ecard admin ARGS --json`` and return its JSON output."""
    proc = subprocess.run(
        [*ECARD, "admin", *args, "--json"], env=dict(env), capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise StackError(
            f"ecard admin {' '.join(args)} failed ({proc.returncode}): {proc.stderr or proc.stdout}"
        )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _pump(stream: TextIO, sink: queue.Queue[str], log: list[str]) -> None:
    for line in stream:
        log.append(line)
        sink.put(line.rstrip("\n"))


@dataclass
class Child:
    """A child process whose output lines are collected by a thread."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path | None = None
    process: subprocess.Popen[str] | None = None
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    output: list[str] = field(default_factory=list)

    def start(self) -> Child:
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        threading.Thread(
            target=_pump, args=(self.process.stdout, self.lines, self.output), daemon=True
        ).start()
        return self

    def next_line(self, timeout: float) -> str | None:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        if self.log_path is not None:
            self.log_path.write_text("".join(self.output))
        return self.process.returncode

    def transcript(self) -> str:
        return "".join(self.output[-80:])


def start_server(
    env: dict[str, str], port: int, *, log_path: Path | None = None, ready_timeout: float = 60
) -> Child:
    """Start ``ecard server run`` and wait until it answers HTTP."""
    child = Child(
        "server", [*ECARD, "server", "run", "--host", "127.0.0.1", "--port", str(port)], env, log_path
    ).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise StackError(f"server exited early:\n{child.transcript()}")
        try:
            if httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200:
                return child
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    child.stop()
    raise StackError(f"server not ready within {ready_timeout} s:\n{child.transcript()}")


def enroll_agent(server_url: str, code: str, state_dir: Path) -> str:
    proc = subprocess.run(
        [*ECARD, "agent", "enroll", "--server", server_url, "--code", code, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise StackError(f"agent enroll failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return proc.stdout


@dataclass
class AgentProcess:
    child: Child

    def feedback(self, timeout: float) -> dict[str, Any]:
        """The next JSON feedback line about a card (other lines are kept in the transcript)."""
        line = self._next_json(timeout, lambda parsed: "seq" in parsed)
        if line is None:
            raise StackError(f"no feedback line within {timeout} s:\n{self.child.transcript()}")
        return line

    def wait_ready(self, timeout: float) -> None:
        """Wait for the line saying the agent has its reader open and waits for cards."""
        if self._next_json(timeout, lambda parsed: parsed.get("status") == "ready") is None:
            raise StackError(
                f"the agent's reader was not ready within {timeout} s:\n{self.child.transcript()}"
            )

    def _next_json(self, timeout: float, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            line = self.child.next_line(remaining)
            if line is None:
                break
            if line.startswith("{"):
                try:
                    parsed: dict[str, Any] = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if wanted(parsed):
                    return parsed
        return None

    def stop(self) -> int | None:
        return self.child.stop()


def start_agent(
    reader_spec: str,
    state_dir: Path,
    *,
    log_path: Path | None = None,
    mode: str | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 60,
) -> AgentProcess:
    """Start ``ecard agent run --json`` (with *extra_args*; in *env*, by default this process's)
    and wait until its reader is open.

    A card presented before that would meet an agent still importing its libraries, and on a busy
    machine the member's 0.8 s tap could be over before the first read began.
    """
    environment = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    argv = [*ECARD, "agent", "run", "--reader", reader_spec, "--state-dir", str(state_dir), "--json"]
    if mode is not None:
        argv += ["--mode", mode]
    agent = AgentProcess(Child("agent", [*argv, *extra_args], environment, log_path).start())
    try:
        agent.wait_ready(ready_timeout)
    except StackError:
        agent.stop()
        raise
    return agent
