"""Methods run in their own process, the method worker (docs/isolation.md).

The harness never imports method code. :class:`MethodClient` starts
``python -m benchmark.worker`` (inside a bubblewrap sandbox when asked, see
``benchmark.sandbox``), and stands in for the method: it has the attributes and calls of a
``benchmark.api.DeIdMethod`` and forwards each call to the worker, which builds the method and
answers. Messages are length-prefixed ``torch.save`` payloads read back with
``weights_only=True`` on both sides, so neither side can make the other run code: a reply
holds tensors and plain values only.

A worker that crashes, exits, or does not answer within the timeout is a :class:`WorkerError`
naming the method; an exception raised inside the method (``SystemExit`` included) comes back
as a :class:`~benchmark.validation.MethodOutputError` naming the method and the call.
"""
from __future__ import annotations

import io
import os
import select
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from benchmark.sandbox import python_path
from benchmark.validation import MethodOutputError

_HEADER = struct.Struct("<Q")
#: seconds a worker may take to start and build the method (imports can be slow), whatever
#: the per-call timeout
STARTUP_TIMEOUT = 300.0
#: seconds a politely closed worker may take to exit (interpreter teardown is slow on a loaded
#: machine) before it is killed
CLOSE_TIMEOUT = 60.0


class WorkerError(MethodOutputError):
    """The method's worker process crashed, exited, hung or sent something unreadable."""


# -- the wire --------------------------------------------------------------------------------
def encode(message: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(message, buffer)
    return _HEADER.pack(buffer.tell()) + buffer.getvalue()


def decode(payload: bytes) -> Any:
    """A message, without executing anything (``weights_only=True``)."""
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)


def _read_exactly(fd: int, n: int, deadline: float | None) -> bytes | None:
    """``n`` bytes from ``fd``; None at end of file; TimeoutError past ``deadline``."""
    chunks, left = [], n
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(left, 1 << 24))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int, deadline: float | None = None) -> Any:
    header = _read_exactly(fd, _HEADER.size, deadline)
    if header is None:
        raise EOFError
    payload = _read_exactly(fd, _HEADER.unpack(header)[0], deadline)
    if payload is None:
        raise EOFError
    return decode(payload)


def _cpu(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    return value


# -- the harness side ------------------------------------------------------------------------
class MethodClient:
    """A method running in a worker process, usable wherever a ``DeIdMethod`` is.

    Args:
        name: the method's registry name (its row name).
        target: ``package.module:Class`` the worker imports.
        options: keyword options of the constructor (``profile``, ``seed``,
            ``trainer_kwargs``); ``work_dir`` is set here.
        work_dir: the method's own folder (the only writable one under ``--isolate``).
        sandbox: ``(argv, work_dir) -> argv`` wrapping the worker's command line in a sandbox
            (``benchmark.sandbox.bwrap_command``), or None for a plain process.
        timeout: seconds a call other than ``fit`` may take; ``fit_timeout`` for ``fit``
            (None: unlimited).
    """

    def __init__(self, name: str, target: str, options: dict, *, work_dir: Path,
                 sandbox=None, timeout: float | None = 600.0,
                 fit_timeout: float | None = None, quiet: bool = False) -> None:
        self.name, self.target = name, target
        self.timeout, self.fit_timeout = timeout, fit_timeout
        self.device = torch.device("cpu")
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "benchmark.worker"]
        env = {k: v for k, v in os.environ.items() if k != "MEMA_BENCH_CACHE"}
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in python_path())
        env["MPLCONFIGDIR"] = str(work_dir / ".matplotlib")  # home may be read-only
        command = sandbox(argv, work_dir) if sandbox else argv
        # the worker's stdout carries replies; it points its own prints at stderr
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, cwd=work_dir, env=env)
        # "open" is sent now and answered later (:meth:`_describe`): the worker imports and
        # builds the method while the harness loads data, instead of after it
        self._open_sent = self._send("open", dict(
            target=target, options={**options, "work_dir": str(work_dir)},
            threads=torch.get_num_threads(),
            deterministic=torch.are_deterministic_algorithms_enabled(), quiet=quiet))
        self._info: dict | MethodOutputError | None = None
        #: the worker's CPU seconds and peak memory, read when it is closed politely
        self.usage: dict[str, float] = {}

    # -- the DeIdMethod surface ---------------------------------------------------------------
    def _describe(self) -> dict:
        """What the worker built (the answer to the "open" sent at start-up), read on first
        use; a failed open fails every later call alike."""
        if self._info is None:
            try:
                self._info = self._reply("open", sent=self._open_sent,
                                         timeout=max(STARTUP_TIMEOUT, self.timeout or 0))
            except MethodOutputError as err:  # answered once: later calls fail alike
                self._info = err
        if isinstance(self._info, MethodOutputError):
            raise self._info
        return self._info

    description = property(lambda self: self._describe()["description"])
    reversible = property(lambda self: bool(self._describe()["reversible"]))
    key_bits = property(lambda self: int(self._describe()["key_bits"]))
    declared_name = property(lambda self: self._describe()["declared_name"])
    class_path = property(lambda self: self._describe()["class"])

    def config(self) -> dict:
        return dict(self._describe()["config"])

    def to(self, device) -> "MethodClient":
        self.device = torch.device(device)
        self.call("to", str(self.device))
        return self

    def fit_state(self, payload: dict) -> dict:
        """Fit on the training view ``payload`` (``benchmark.training_view``); returns the
        fitted ``state_dict``."""
        return self.call("fit", payload, timeout=self.fit_timeout)

    def load_state_dict(self, state: dict) -> None:
        self.call("load_state_dict", state)

    def anonymize(self, batch: dict[str, Tensor], keys: Tensor | None) -> Tensor:
        return self.call("anonymize", batch, keys).to(self.device)

    def recover(self, images: Tensor, keys: Tensor) -> Tensor:
        return self.call("recover", images, keys).to(self.device)

    # -- calls --------------------------------------------------------------------------------
    def call(self, name: str, *args: Any, timeout: float | None | str = "default") -> Any:
        self._describe()
        timeout = self.timeout if timeout == "default" else timeout
        return self._reply(name, timeout=timeout, sent=self._send(name, *args))

    def _send(self, name: str, *args: Any) -> bool:
        """Write one request; False when the worker is gone (:meth:`_reply` says why)."""
        process = self._process
        if process.poll() is not None or process.stdin.closed:
            return False
        try:
            process.stdin.write(encode({"call": name, "args": _cpu(list(args))}))
            process.stdin.flush()
        except BrokenPipeError:
            return False
        return True

    def _reply(self, name: str, *, timeout: float | None, sent: bool) -> Any:
        """Read the worker's answer to the request ``name``; every failure names the method."""
        process = self._process
        if not sent and process.poll() is not None:
            raise WorkerError(f"method {self.name!r}: the worker is not running "
                              f"(exit code {process.returncode}); cannot call {name}()")
        try:
            if not sent:
                raise BrokenPipeError
            deadline = None if timeout is None else time.monotonic() + timeout
            reply = read_message(process.stdout.fileno(), deadline)
        except TimeoutError:
            self.close(kill=True)
            flag = "--fit-timeout" if name == "fit" else "--method-timeout"
            raise WorkerError(f"method {self.name!r}: {name}() did not answer within "
                              f"{timeout:g} s ({flag}); the worker was stopped") from None
        except (EOFError, BrokenPipeError):
            code = self.close(kill=True)
            raise WorkerError(f"method {self.name!r}: the worker process ended (exit code "
                              f"{code}) during {name}()") from None
        except Exception as err:  # a reply that is not tensors and plain values
            self.close(kill=True)
            raise WorkerError(f"method {self.name!r}: {name}() sent an unreadable reply "
                              f"({type(err).__name__}: {err})") from None
        if not isinstance(reply, dict) or "ok" not in reply:
            raise WorkerError(f"method {self.name!r}: {name}() sent a malformed reply")
        if not reply["ok"]:
            raise MethodOutputError(f"method {self.name!r}: {name}() {reply['error']}")
        return reply["value"]

    def close(self, kill: bool = False) -> int | None:
        """Stop the worker (politely unless ``kill``, after reading its resource use into
        :attr:`usage`); returns its exit code."""
        process = self._process
        if process.poll() is None and not kill:
            try:
                self.usage = self.call("usage")
            except MethodOutputError:
                pass
            try:
                process.stdin.write(encode({"call": "close", "args": []}))
                process.stdin.flush()
                process.wait(timeout=CLOSE_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if process.poll() is None:
            process.kill()
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        return process.wait()

    def __enter__(self) -> "MethodClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close(kill=exc[0] is not None)


# -- the worker side -------------------------------------------------------------------------
class _Worker:
    """Builds the method and answers the harness' calls."""

    def __init__(self) -> None:
        self.method = None
        self.seed = 0

    def open(self, request: dict) -> dict:
        from benchmark.registry import import_method_class, method_description

        torch.set_num_threads(int(request["threads"]))
        torch.use_deterministic_algorithms(bool(request["deterministic"]))
        cls = import_method_class(request["target"])
        if request["quiet"]:  # after the method's imports: importing Lightning resets its loggers
            silence_lightning()
        options = dict(request["options"])
        self.seed = int(options.get("seed", 0))
        torch.manual_seed(self.seed)
        self.method = cls(**options)
        return {"declared_name": getattr(cls, "name", "") or "",
                "class": f"{cls.__module__}:{cls.__qualname__}",
                "description": self.method.description or method_description(cls),
                "reversible": bool(self.method.reversible),
                "key_bits": int(self.method.key_bits),
                "config": self.method.config()}

    def to(self, device: str) -> None:
        self.method.to(device)
        # reseeded when placed for inference, so a fitted and a loaded method anonymise alike
        torch.manual_seed(self.seed)

    def fit(self, payload: dict) -> dict:
        from benchmark.training_view import TrainingView

        self.method.fit(TrainingView(payload))
        state = _cpu(self.method.state_dict())
        try:  # the harness stores and reads it back with weights_only=True
            decode(encode(state)[_HEADER.size:])
        except Exception as err:
            raise TypeError(f"state_dict() must hold tensors and plain values only ({err})") from None
        return state

    def load_state_dict(self, state: dict) -> None:
        self.method.load_state_dict(state)

    def anonymize(self, batch: dict, keys) -> Tensor:
        device = self.method.device
        batch = {k: v.to(device) for k, v in batch.items()}
        return _image_reply(self.method.anonymize(batch, None if keys is None else keys.to(device)))

    def recover(self, images: Tensor, keys: Tensor) -> Tensor:
        device = self.method.device
        return _image_reply(self.method.recover(images.to(device), keys.to(device)))

    def usage(self) -> dict[str, float]:
        """CPU seconds and peak resident memory of this process (the method's cost, which
        the harness' own figures do not include)."""
        import resource

        own = resource.getrusage(resource.RUSAGE_SELF)
        return {"cpu_seconds": own.ru_utime + own.ru_stime, "peak_memory_mb": own.ru_maxrss / 1024}


def _image_reply(output: Any) -> Tensor:
    if not isinstance(output, Tensor):
        raise TypeError(f"returned {type(output).__name__}, expected a torch.Tensor")
    return output.detach().cpu()


def silence_lightning() -> None:
    """``--quiet``: no Lightning banners, summaries or advice, in the harness and the worker."""
    import logging
    import warnings

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")


def serve() -> int:
    """The worker's loop: one reply per request until ``close`` or end of input."""
    requests = sys.stdin.buffer.fileno()
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # the method's prints go to stderr
    worker = _Worker()
    while True:
        try:
            request = read_message(requests)
        except EOFError:
            return 0
        if request["call"] == "close":
            return 0
        try:
            reply = {"ok": True, "value": getattr(worker, request["call"])(*request["args"])}
        except BaseException as err:  # noqa: BLE001 - sys.exit() in a method must not end the run quietly
            reply = {"ok": False, "error": f"raised {type(err).__name__}: {err}"}
        try:
            data = encode(reply)
        except Exception as err:  # e.g. a state_dict holding an unpicklable object
            data = encode({"ok": False, "error": f"returned something that cannot be sent "
                                                 f"({type(err).__name__}: {err})"})
        replies.write(data)
        replies.flush()


if __name__ == "__main__":
    raise SystemExit(serve())
