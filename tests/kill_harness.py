"""Real processes to kill: ``alpaca-train`` (or ``alpaca-predict``) runs forked from a zygote that imported the
package once.

Python start-up (torch, Lightning, transformers) costs seconds per process; a kill test needs dozens of processes.
``python -m tests.kill_harness`` imports ``alpaca_lightning.train`` and then, for each JSON line on stdin
(``{"argv": [...], "env": {...}, "log": path}``), forks a child that runs the Hydra entry point exactly as
``python -m alpaca_lightning.train <argv>`` would, with its output in ``log``. It answers ``{"pid": ...}`` at once
and ``{"status": ...}`` when the child ends (``-9``: killed by SIGKILL). Nothing runs torch before the fork.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _child(job: dict) -> None:
    from alpaca_lightning import train
    from alpaca_lightning.inference import predict_files

    os.environ.update(job["env"])
    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = 0
    try:
        if job.get("entry") == "predict":
            code = predict_files.main(job["argv"])
        else:
            sys.argv = ["alpaca-train", *job["argv"]]
            train.main()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    for entry_point in ("alpaca_lightning.train", "alpaca_lightning.inference.predict_files"):
        importlib.import_module(entry_point)  # the import is the point: children start warm

    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(job)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"status": os.waitstatus_to_exitcode(status)}), flush=True)


class Zygote:
    """The test side: one zygote per test, ``run`` one ``alpaca-train`` at a time, optionally killed by wall time."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.kill_harness"], cwd=REPO, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, bufsize=1,
        )

    def _read(self, timeout: float | None = None) -> dict | None:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the kill-test zygote died (exit {self.process.poll()})")
        return json.loads(line)

    def run(self, argv: list[str], env: dict[str, str], log: Path, kill_after: float | None = None,
            timeout: float = 600, signal_at: tuple[str, int] | None = None, entry: str = "train") -> int:
        """Exit status of one run (negative: the signal that ended it). ``signal_at=(label, signum)``: send the
        signal from outside once the run's trace (``ALPACA_KILL_TRACE``) holds that label. ``entry="predict"`` runs
        ``alpaca-predict <argv>`` instead."""
        job = {"argv": argv, "env": env, "log": str(log), "entry": entry}
        self.process.stdin.write(json.dumps(job) + "\n")
        pid = self._read(timeout)["pid"]
        answer = None
        if signal_at is not None:
            answer = self._signal_at(pid, Path(env["ALPACA_KILL_TRACE"]), *signal_at, timeout)
        if answer is None:
            answer = self._read(kill_after if kill_after is not None else timeout)
        if answer is None and kill_after is not None:
            os.kill(pid, signal.SIGKILL)
            answer = self._read(timeout)
        if answer is None:
            os.kill(pid, signal.SIGKILL)
            raise TimeoutError(f"alpaca-train {argv} ran past {timeout} s (log: {log})")
        return answer["status"]

    def _signal_at(self, pid: int, trace: Path, label: str, signum: int, timeout: float) -> dict | None:
        """Signals ``pid`` once ``label`` is traced; the run's answer if it ended before that."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if trace.is_file() and label in trace.read_text().splitlines():
                os.kill(pid, signum)
                return None
            answer = self._read(0.02)
            if answer is not None:
                return answer
        raise TimeoutError(f"the run never reached '{label}'")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


if __name__ == "__main__":
    serve()
