"""Child processes for the tests whose work must run in another process (a SIGKILL, a cluster's tasks), forked from
one that has already imported TensorFlow.

A fresh interpreter spends about 7 s of CPU importing TensorFlow before its work starts; the suite's kill and cluster
tests start about twenty children, which made a fifth of its CPU time on 2 cores. multiprocessing's forkserver
imports ``PRELOAD`` once per pytest worker and forks each child from that process. It has only imported: no op has
run there, so TensorFlow's runtime (its thread pools, devices, a cluster's servers) starts in each child, after the
fork, as it would in a fresh process.

A child runs ``-c CODE`` or ``-m MODULE`` with its own arguments and environment, and its exit code is Popen's
(``-signal.SIGKILL`` when killed). What differs from a fresh ``python``: what the preloaded modules read from the
environment at import (``TF_CPP_MIN_LOG_LEVEL``, ``TF_USE_LEGACY_KERAS``, ``TF_ENABLE_ONEDNN_OPTS``) is the pytest
worker's, not the child's ``env``; an uncaught exception (``KeyboardInterrupt`` too) exits 1; ``atexit``
handlers do not run. Tests about a fresh interpreter itself (what importing sets, a process with only TensorFlow,
a schema changed before import) use ``subprocess``."""
import multiprocessing
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# dropdown_rank.cli is left out: runpy warns when the module it runs as __main__ was imported already
PRELOAD = ["dropdown_rank", "tensorflow", "dropdown_rank.build", "dropdown_rank.train", "dropdown_rank.export",
           "dropdown_rank.cluster"]


def _context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _child_main(args: list, env: dict, stdout: str, stderr: str) -> None:
    os.environ.clear()
    os.environ.update(env)
    for path, fd in ((stdout, 1), (stderr, 2)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    option, program, *argv = args
    if option == "-c":
        sys.argv = ["-c", *argv]
        exec(compile(program, "<string>", "exec"), {"__name__": "__main__"})
    elif option == "-m":
        sys.argv = [program, *argv]
        runpy.run_module(program, run_name="__main__", alter_sys=True)
    else:
        raise ValueError(f"a child runs -c CODE or -m MODULE, not {option!r}")


class Child:
    """A started child: ``pid``, ``send_signal``, ``kill``, ``wait``, ``poll``, ``communicate`` and ``returncode``
    as ``subprocess.Popen`` has them (output as text)."""

    def __init__(self, args: list, env: dict | None = None):
        self._directory = Path(tempfile.mkdtemp(prefix="child-"))
        self._out, self._err = self._directory / "stdout", self._directory / "stderr"
        self._process = _context().Process(target=_child_main, daemon=True,
                                           args=(list(args), dict(os.environ if env is None else env), str(self._out), str(self._err)))
        self._process.start()
        self.pid = self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, signal_number: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signal_number)

    def kill(self) -> None:
        """SIGKILL, then reap the child and remove its output files (for a child the test gives up on)."""
        self._process.kill()
        self._process.join()
        shutil.rmtree(self._directory, ignore_errors=True)

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(f"child {self.pid}", timeout)
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        try:
            return (self._out.read_text(errors="replace") if self._out.exists() else "",
                    self._err.read_text(errors="replace") if self._err.exists() else "")
        finally:
            shutil.rmtree(self._directory, ignore_errors=True)


def run(args: list, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``subprocess.run(capture_output=True, text=True)`` for a forked child."""
    child = Child(args, env)
    try:
        out, err = child.communicate(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        raise
    return subprocess.CompletedProcess(args, child.returncode, out, err)
