"""JupyterLab as the learner opens it: `make jupyter` serves the lessons on loopback with the lab's own
kernel, and lesson 00's parameters cell runs on that kernel through the server's API (real server,
real kernel, real websocket)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.lab.check import KERNEL_DISPLAY_NAME, KERNEL_NAME, cell_source
from labkit.settings import PROJECT_ROOT
from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.integration


class Server:
    def __init__(self, port: int, token: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}"
        self.token = token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"{self.base}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def ready(self) -> bool:
        try:
            self.call("GET", "/api/status")
        except (urllib.error.URLError, ConnectionError):
            return False
        return True


@pytest.fixture()
def jupyter(tmp_path: Path) -> Iterator[Server]:
    """`make jupyter` on a free loopback port, no browser, its own token; stopped afterwards."""
    port, token = free_port(), secrets.token_hex(16)
    args = f"--no-browser --port={port} --ServerApp.port_retries=0 --IdentityProvider.token={token}"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log = (tmp_path / "jupyter.log").open("wb")
    process = subprocess.Popen(
        ["make", "--no-print-directory", "jupyter", f"JUPYTER_ARGS={args}"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: make, then JupyterLab under it
    )
    server = Server(port, token)
    try:
        wait_for("JupyterLab to answer", lambda: server.ready() or process.poll() is not None, timeout_s=90)
        assert process.poll() is None, (tmp_path / "jupyter.log").read_text()[-3000:]
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # JupyterLab shuts its kernels down on SIGTERM
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        # pytest shows a test's captured output only when it fails: then the server's log says why.
        print((tmp_path / "jupyter.log").read_text()[-4000:])


class KernelSocket:
    """One websocket on a kernel's channels, as JupyterLab's notebook panel holds one."""

    def __init__(self, server: Server, kernel_id: str) -> None:
        import websocket

        self.socket = websocket.create_connection(
            f"{server.ws}/api/kernels/{kernel_id}/channels",
            header=[f"Authorization: token {server.token}"],
            timeout=60,
        )
        self.session = uuid.uuid4().hex

    def send(self, msg_type: str, content: dict[str, Any]) -> str:
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": msg_type, "username": "test", "session": self.session,
                  "version": "5.3"}  # fmt: skip
        message = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
        self.socket.send(json.dumps({**message, "channel": "shell"}))
        return msg_id

    def replies(self, msg_id: str) -> Iterator[dict[str, Any]]:
        """The messages answering ``msg_id``, on any channel, as they come."""
        while True:
            message = json.loads(self.socket.recv())
            if message.get("parent_header", {}).get("msg_id") == msg_id:
                yield message

    def wait_until_iopub_listens(self) -> None:
        """Outputs published before the server's iopub subscription is connected are lost (ZeroMQ's
        slow joiner), so ask for kernel_info until its busy/idle status arrives on iopub."""
        for message in self.replies(self.send("kernel_info_request", {})):
            if message["channel"] == "iopub" and message["msg_type"] == "status":
                return

    def execute(self, code: str) -> tuple[str, str]:
        """Run ``code``: (status, stdout). The reply comes on the shell channel and the output on
        iopub, in no set order with each other: only iopub's idle says every output has arrived."""
        content = {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": True}  # fmt: skip
        stdout, status, idle = "", "", False
        for message in self.replies(self.send("execute_request", content)):
            kind, body = message["msg_type"], message["content"]
            if kind == "stream" and body["name"] == "stdout":
                stdout += body["text"]
            elif kind == "error":
                stdout += "\n".join(body["traceback"])
            elif kind == "execute_reply":
                status = body["status"]
            elif kind == "status" and body["execution_state"] == "idle":
                idle = True
            if status and idle:
                break
        return status, stdout

    def close(self) -> None:
        self.socket.close()


def test_make_jupyter_serves_the_lessons_on_the_labs_kernel(jupyter: Server) -> None:
    specs = jupyter.call("GET", "/api/kernelspecs")["kernelspecs"]
    assert KERNEL_NAME in specs, f"kernels JupyterLab offers: {sorted(specs)}"
    spec = specs[KERNEL_NAME]["spec"]
    assert spec["display_name"] == KERNEL_DISPLAY_NAME
    assert Path(spec["argv"][0]).resolve() == Path(sys.executable).resolve()

    lesson = json.loads((PROJECT_ROOT / "notebooks" / "00-welcome-and-setup.ipynb").read_text())
    assert lesson["metadata"]["kernelspec"]["name"] == KERNEL_NAME
    parameters = next(c for c in lesson["cells"] if "parameters" in c["metadata"].get("tags", []))

    kernel = jupyter.call("POST", "/api/kernels", {"name": KERNEL_NAME})
    channels = KernelSocket(jupyter, kernel["id"])
    try:
        channels.wait_until_iopub_listens()
        assert channels.execute(cell_source(parameters)) == ("ok", "")
        status, out = channels.execute("import sys, labkit\nprint(target, sys.prefix)")
        assert status == "ok", out
        assert out.split() == ["sandbox", sys.prefix]
    finally:
        channels.close()
        jupyter.call("DELETE", f"/api/kernels/{kernel['id']}")
