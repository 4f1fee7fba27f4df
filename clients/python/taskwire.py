#!/usr/bin/env python3
"""A taskwire client and worker in Python, standard library only.

Written from docs/PROTOCOL.md alone (version 4), so that the document stays enough to implement the protocol:

    from taskwire import Client, Worker

    with Client(port=9001) as client:
        print(client.submit('sha256', 'Hello').decode())
        digests = client.submit_many([('sha256', str(i)) for i in range(1000)])

    Worker(port=9001, handlers={'upper': lambda payload: payload.upper()}, concurrency=4).run()

Command line: `python3 taskwire.py submit --type sha256 Hello`, `python3 taskwire.py worker`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import socket
import struct
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Callable, Iterable, Optional, Union

__all__ = [
    'Client',
    'Worker',
    'Task',
    'TaskwireError',
    'TaskFailedError',
    'current_task',
    'PROTOCOL_VERSION',
]

PROTOCOL_VERSION = 4

# Command bytes (PROTOCOL.md section 2).
TASK, RESULT, HELLO, SUBMIT, COMPLETED, FAILED, ERROR, READY, CANCEL = range(1, 10)
ACCEPTED, STATUS, WAIT, ABORT, LIST, REPLY, PROGRESS, GRAPH, NODE = range(10, 19)
ROLE_CLIENT, ROLE_WORKER, ROLE_SCHEDULER = 1, 2, 3
SETTING_MAX_PAYLOAD, SETTING_MAY_BLOCK = 1, 2
OPT_TIMEOUT_MS, OPT_RETRIES, OPT_BACKOFF_MS, OPT_PRIORITY = 1, 2, 3, 4

DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024
# The longest HELLO (section 3.3): a first frame declaring more cannot be the scheduler's answer.
MAX_HELLO_PAYLOAD = 1 + 1 + 4 + 2 * (2 + 0xFFFF) + 1 + 255 * 5
HANDSHAKE_TIMEOUT_S = 10.0
DEAD_AFTER_INTERVALS = 3
KEEPALIVE = b'\x03\x00\x00\x00\x00'
MAX_TYPE_BYTES = 255
MAX_CODE_CHARS = 64
# Error messages are for people; a handler's exception text is cut here so its RESULT always fits.
MAX_MESSAGE_BYTES = 16 * 1024

_HEADER = struct.Struct('>BI')
_U16 = struct.Struct('>H')
_U32 = struct.Struct('>I')
_OPTION = struct.Struct('>BI')

# What each role may be sent (section 2.1); anything else is E_PROTOCOL, checked at the header.
_CLIENT_RECEIVES = frozenset({HELLO, COMPLETED, FAILED, ERROR, ACCEPTED, REPLY, PROGRESS})
_WORKER_RECEIVES = frozenset({HELLO, TASK, CANCEL, ERROR, NODE})
# Frames over maxPayload that carry one task are skipped, keeping their leading ids (section 1.1).
_CLIENT_SKIPPABLE = {COMPLETED: 4}
_WORKER_SKIPPABLE = {TASK: 8}


class TaskwireError(Exception):
    """Every failure reported here: `code` is stable (E_AUTH, E_TIMEOUT...), `message` is for people."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f'{self.message} ({self.code})'


class TaskFailedError(TaskwireError):
    """A submitted task failed: its handler's code and message, or the scheduler's (E_ATTEMPTS...)."""


class _ProtocolError(TaskwireError):
    def __init__(self, message: str):
        super().__init__('E_PROTOCOL', message)


class _Closed(Exception):
    """The socket ended while a frame was being read."""


def _str16(text: str, what: str) -> bytes:
    data = text.encode('utf-8')
    if len(data) > 0xFFFF:
        raise TaskwireError('E_INVALID', f'{what} is {len(data)} bytes of UTF-8, over 65535')
    return _U16.pack(len(data)) + data


def _frame(cmd: int, payload: bytes) -> bytes:
    return _HEADER.pack(cmd, len(payload)) + payload


def _error_frame(code: str, message: str) -> bytes:
    return _frame(ERROR, _str16(code, 'code') + _cut(message))


def _cut(message: str) -> bytes:
    data = message.encode('utf-8', 'replace')
    if len(data) <= MAX_MESSAGE_BYTES:
        return data
    # Cutting bytes may split a character; decoding with 'ignore' drops the broken tail.
    return data[:MAX_MESSAGE_BYTES].decode('utf-8', 'ignore').encode('utf-8')


def _as_bytes(value: Union[bytes, bytearray, memoryview, str], what: str) -> bytes:
    if isinstance(value, str):
        return value.encode('utf-8')
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TaskwireError('E_INVALID', f'{what} must be str or bytes, not {type(value).__name__}')


def _job_type(type_: str) -> bytes:
    if not isinstance(type_, str):
        raise TaskwireError('E_INVALID', f'a job type must be a str, not {type(type_).__name__}')
    data = type_.encode('utf-8')
    if not 1 <= len(data) <= MAX_TYPE_BYTES:
        raise TaskwireError('E_INVALID', f'a job type must be 1 to {MAX_TYPE_BYTES} bytes of UTF-8, not {len(data)}')
    return data


class _Reader:
    """Reads one payload's fields; running past its end is E_PROTOCOL (section 1.2)."""

    __slots__ = ('buf', 'pos')

    def __init__(self, buf: bytes):
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise _ProtocolError('a field runs past the end of the payload')
        data = self.buf[self.pos:end]
        self.pos = end
        return data

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return _U16.unpack(self.take(2))[0]

    def u32(self) -> int:
        return _U32.unpack(self.take(4))[0]

    def str16(self) -> str:
        return _utf8(self.take(self.u16()))

    def rest(self) -> bytes:
        data = self.buf[self.pos:]
        self.pos = len(self.buf)
        return data

    def text(self) -> str:
        return _utf8(self.rest())

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise _ProtocolError(f'{len(self.buf) - self.pos} unexpected bytes after the last field')


def _utf8(data: bytes) -> str:
    # Python's strict decoder refuses overlong forms, encoded surrogates and truncated sequences, as section 1.2 asks.
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError:
        raise _ProtocolError('invalid UTF-8 in a string field') from None


def _decode_error(payload: bytes) -> tuple[str, str]:
    r = _Reader(payload)
    return r.str16(), r.text()


def _printable(text: str) -> str:
    # Codes and messages come from peers: escaped so that none can forge a line of this program's output.
    return ''.join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _Connection:
    """One TCP connection to the scheduler: handshake, frames both ways, keepalives and the silence rule."""

    def __init__(
        self,
        host: str,
        port: int,
        role: int,
        name: str,
        token: str,
        settings: list[tuple[int, int]],
        max_payload: int,
        receives: frozenset,
        skippable: dict,
    ):
        self.where = f'{host}:{port}'
        self.max_payload = max_payload
        self._receives = receives
        self._skippable = skippable
        self._buf = bytearray()
        self._wlock = threading.Lock()
        self._state = threading.Lock()
        self._stopped = threading.Event()
        self._closed = False
        self.error: Optional[TaskwireError] = None
        self.on_close: Callable[[TaskwireError], None] = lambda error: None
        hello = (
            struct.pack('>BBI', PROTOCOL_VERSION, role, 0)
            + _str16(name, 'the name')
            + _str16(token, 'the token')
            + bytes([len(settings)])
            + b''.join(_OPTION.pack(tag, value) for tag, value in settings)
        )
        try:
            self._sock = socket.create_connection((host, port), timeout=HANDSHAKE_TIMEOUT_S)
        except OSError as e:
            raise TaskwireError('E_CONNECT', f'cannot reach the scheduler at {self.where}: {e.strerror or e}') from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self._handshake(_frame(HELLO, hello))
        except BaseException:
            self._sock.close()
            raise
        self._sock.settimeout(None)
        self.last_seen = time.monotonic()

    def _handshake(self, hello: bytes) -> None:
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT_S
        try:
            self._sock.sendall(hello)
            cmd, payload, _ = self._next_frame(deadline, MAX_HELLO_PAYLOAD)
        except socket.timeout:
            self._tell(_error_frame('E_TIMEOUT', 'no HELLO in time'))
            raise TaskwireError('E_TIMEOUT', f'no HELLO from the scheduler at {self.where} within {HANDSHAKE_TIMEOUT_S:g} s') from None
        except TaskwireError as e:
            self._tell(_error_frame(e.code, e.message))
            raise
        except (_Closed, OSError) as e:
            reason = f': {e.strerror}' if isinstance(e, OSError) and e.strerror else ''
            raise TaskwireError('E_DISCONNECTED', f'the scheduler at {self.where} closed the connection during the handshake{reason}') from None
        if cmd == ERROR:
            try:
                code, message = _decode_error(payload)
            except TaskwireError:
                code, message = 'E_PROTOCOL', 'an ERROR frame that does not decode'
            raise TaskwireError(code, f'the scheduler at {self.where} refused the connection: {message}')
        try:
            if cmd != HELLO or not payload:
                raise _ProtocolError('expected the scheduler\'s HELLO first')
            self._read_hello(payload)
        except TaskwireError as e:
            self._tell(_error_frame(e.code, e.message))
            raise

    def _read_hello(self, payload: bytes) -> None:
        r = _Reader(payload)
        version = r.u8()
        # The version is compared before anything else is decoded (section 6).
        if not 1 <= version <= PROTOCOL_VERSION:
            raise TaskwireError('E_VERSION', f'the scheduler speaks protocol version {version}; this client speaks {PROTOCOL_VERSION}')
        role = r.u8()
        heartbeat_ms = r.u32()
        self.scheduler_name = r.str16()
        r.str16()  # the scheduler's token field: always empty, and meaningless to a peer
        settings: dict[int, int] = {}
        if version >= 2:
            for _ in range(r.u8()):
                tag, value = _OPTION.unpack(r.take(5))
                settings[tag] = value  # a repeated tag: the last one counts
        r.end()
        if role != ROLE_SCHEDULER:
            raise _ProtocolError(f'the peer answered with role {role}, not the scheduler\'s (3)')
        self.version = version
        self.heartbeat_s = (heartbeat_ms or 5000) / 1000
        # Until told otherwise (version 1), what this side accepts is the best guess of what the scheduler does.
        self.peer_max_payload = settings.get(SETTING_MAX_PAYLOAD, self.max_payload)

    def _next_frame(self, deadline: Optional[float] = None, limit: Optional[int] = None):
        """The next whole frame as (cmd, payload, skipped): `skipped` is the declared length of a frame over the
        limit that was read past, whose `payload` is then only its leading ids."""
        limit = self.max_payload if limit is None else limit
        buf = self._buf
        while len(buf) < 5:
            self._fill(deadline)
        cmd, length = _HEADER.unpack_from(buf, 0)
        # The command is checked before the length, so garbage with a huge length is still E_PROTOCOL (section 1.1).
        if cmd not in self._receives:
            raise _ProtocolError(f'command {cmd} may not be sent to this peer')
        if length > limit:
            keep = self._skippable.get(cmd, 0)
            if not keep or length < keep:
                raise TaskwireError('E_FRAME_TOO_LARGE', f'a frame of {length} bytes is over the limit of {limit}')
            while len(buf) < 5 + keep:
                self._fill(deadline)
            head = bytes(buf[5:5 + keep])
            left = length - keep
            del buf[:5 + keep]
            while left:
                if not buf:
                    self._fill(deadline)
                n = min(left, len(buf))
                del buf[:n]
                left -= n
            return cmd, head, length
        while len(buf) < 5 + length:
            self._fill(deadline)
        payload = bytes(buf[5:5 + length])
        del buf[:5 + length]
        return cmd, payload, None

    def _fill(self, deadline: Optional[float]) -> None:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            self._sock.settimeout(left)
        data = self._sock.recv(1 << 18)
        if not data:
            raise _Closed()
        # Bytes arriving are the scheduler's proof of life even before they make a whole frame; counting only whole
        # frames could take a busy reader for a silent scheduler.
        self.last_seen = time.monotonic()
        self._buf += data

    def start_keepalives(self) -> None:
        threading.Thread(target=self._keepalive_loop, name='taskwire-keepalive', daemon=True).start()

    def _keepalive_loop(self) -> None:
        interval = self.heartbeat_s
        next_send = time.monotonic() + interval
        while not self._stopped.is_set():
            now = time.monotonic()
            dead_at = self.last_seen + DEAD_AFTER_INTERVALS * interval
            if now >= dead_at:
                silent = round((now - self.last_seen) * 1000)
                self.shutdown(
                    TaskwireError('E_TIMEOUT', f'the scheduler at {self.where} sent nothing for {silent} ms ({DEAD_AFTER_INTERVALS} keepalive intervals)'),
                    tell=True,
                )
                return
            if now >= next_send:
                self._send_keepalive()
                # A fixed schedule (section 4.4), not a fixed gap after each send; a late tick does not pile up sends.
                next_send += interval
                if next_send <= now:
                    next_send = now + interval
            self._stopped.wait(max(0.0, min(next_send, dead_at) - time.monotonic()))

    def _send_keepalive(self) -> None:
        # Never blocks: a keepalive stuck behind a full socket would also stall the silence check above. A writer
        # holding the lock, or a full buffer, means the scheduler is not reading us now, and then it does not count
        # our silence either (section 4.4).
        if not self._wlock.acquire(blocking=False):
            return
        try:
            sent = self._sock.send(KEEPALIVE, socket.MSG_DONTWAIT)
            if sent < len(KEEPALIVE):
                self._sock.sendall(KEEPALIVE[sent:])
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            pass  # the reader sees the connection end and reports why
        finally:
            self._wlock.release()

    def send(self, data: bytes) -> bool:
        """Writes whole frames; False if the connection is gone (the reader reports why)."""
        if self._closed:
            return False
        with self._wlock:
            try:
                self._sock.sendall(data)
                return True
            except OSError:
                return False

    def serve(self, on_frame: Callable[[int, bytes, Optional[int]], None]) -> TaskwireError:
        """Reads frames until the connection ends, in the calling thread; returns why it ended."""
        try:
            while True:
                cmd, payload, skipped = self._next_frame()
                if cmd == HELLO:
                    if payload:
                        raise _ProtocolError('a HELLO with a payload after the handshake')
                    continue
                if cmd == ERROR:
                    code, message = _decode_error(payload)
                    self.shutdown(TaskwireError(code, f'the scheduler closed the connection: {message}'), tell=False)
                    break
                on_frame(cmd, payload, skipped)
        except TaskwireError as e:
            self.shutdown(e, tell=True)
        except (_Closed, OSError) as e:
            reason = f': {e.strerror}' if isinstance(e, OSError) and e.strerror else ''
            self.shutdown(TaskwireError('E_DISCONNECTED', f'the scheduler at {self.where} closed the connection{reason}'), tell=False)
        except BaseException as e:
            self.shutdown(TaskwireError('E_DISCONNECTED', f'internal error: {e!r}'), tell=False)
            raise
        finally:
            try:
                self._sock.close()
            except OSError:
                pass
        assert self.error is not None
        return self.error

    def shutdown(self, error: TaskwireError, tell: bool) -> None:
        """Ends the connection once; with `tell`, the scheduler is sent an ERROR saying why (section 4.8)."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            self.error = error
        self._stopped.set()
        if tell:
            self._tell(_error_frame(error.code, error.message))
        try:
            # Wakes the reader, which closes the socket: closing it here could race with a recv in that thread.
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.on_close(error)

    def _tell(self, frame: bytes) -> None:
        # Best effort and without blocking: the peer may be the reason this connection is ending.
        if self._wlock.acquire(timeout=1.0):
            try:
                self._sock.send(frame, socket.MSG_DONTWAIT)
            except OSError:
                pass
            finally:
                self._wlock.release()

    @property
    def closed(self) -> bool:
        return self._closed


def _default_name() -> str:
    return f'{socket.gethostname()}:{os.getpid()}'


def _u32_option(value, what: str, maximum: int = 0xFFFFFFFF) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise TaskwireError('E_INVALID', f'{what} must be an integer from 0 to {maximum}, not {value!r}')
    return value


class Client:
    """Submits tasks over one connection; any number may be outstanding at once, matched by request id.

    Thread-safe: several threads may submit at once. Results are bytes.
    """

    def __init__(
        self,
        host: str = '127.0.0.1',
        port: int = 9001,
        token: Optional[str] = None,
        name: Optional[str] = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ):
        self._lock = threading.Lock()
        self._pending: dict[int, Future] = {}
        self._next_id = 0
        self._error: Optional[TaskwireError] = None
        self._conn = _Connection(
            host, port, ROLE_CLIENT, name if name is not None else _default_name(), token or '', [], max_payload,
            _CLIENT_RECEIVES, _CLIENT_SKIPPABLE,
        )
        self._conn.on_close = self._on_close
        self._conn.start_keepalives()
        self._reader = threading.Thread(target=self._conn.serve, args=(self._on_frame,), name='taskwire-client', daemon=True)
        self._reader.start()

    @property
    def scheduler_name(self) -> str:
        return self._conn.scheduler_name

    @property
    def heartbeat_ms(self) -> int:
        return round(self._conn.heartbeat_s * 1000)

    def submit(self, type: str, payload: Union[bytes, str], timeout_ms: Optional[int] = None, retries: Optional[int] = None,
               backoff_ms: Optional[int] = None, priority: Optional[int] = None, wait: Optional[float] = None) -> bytes:
        """Runs one task and returns its result; raises TaskFailedError if it failed. `wait`: seconds to give up
        after (TimeoutError), the task itself going on."""
        return self.submit_async(type, payload, timeout_ms, retries, backoff_ms, priority).result(wait)

    def submit_async(self, type: str, payload: Union[bytes, str], timeout_ms: Optional[int] = None, retries: Optional[int] = None,
                     backoff_ms: Optional[int] = None, priority: Optional[int] = None) -> Future:
        """Sends a task and returns at once: a Future of its result bytes (or of its TaskFailedError)."""
        return self._send([self._prepare(type, payload, timeout_ms, retries, backoff_ms, priority)])[0]

    def submit_many(self, requests: Iterable, return_exceptions: bool = False, wait: Optional[float] = None) -> list:
        """Sends every request at once, then waits for all: their results in the order given.

        Each request is `(type, payload)` or `(type, payload, {'timeout_ms': ..., 'retries': ...})`. A failure is
        raised (after every answer has arrived), or, with `return_exceptions`, left in its place in the list.
        """
        prepared = []
        for request in requests:
            type_, payload, *rest = request
            options = rest[0] if rest else {}
            prepared.append(self._prepare(type_, payload, **options))
        futures = self._send(prepared)
        deadline = None if wait is None else time.monotonic() + wait
        results = []
        for future in futures:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                results.append(future.result(left))
            except TaskwireError as e:
                results.append(e)
            except FutureTimeoutError:
                raise TimeoutError(f'{sum(not f.done() for f in futures)} of {len(futures)} tasks unanswered after {wait} s') from None
        if not return_exceptions:
            for r in results:
                if isinstance(r, TaskwireError):
                    raise r
        return results

    def _prepare(self, type_, payload, timeout_ms=None, retries=None, backoff_ms=None, priority=None):
        type_bytes = _job_type(type_)
        body = _as_bytes(payload, 'a payload')
        options = []
        if timeout_ms is not None:
            options.append((OPT_TIMEOUT_MS, _u32_option(timeout_ms, 'timeout_ms')))
        if retries is not None:
            options.append((OPT_RETRIES, _u32_option(retries, 'retries', 255)))
        if backoff_ms is not None:
            options.append((OPT_BACKOFF_MS, _u32_option(backoff_ms, 'backoff_ms')))
        if priority is not None:
            if isinstance(priority, bool) or not isinstance(priority, int) or not -(2 ** 31) <= priority < 2 ** 31:
                raise TaskwireError('E_INVALID', f'priority must be a 32-bit signed integer, not {priority!r}')
            options.append((OPT_PRIORITY, priority & 0xFFFFFFFF))  # two's complement in the u32
        head = bytes([len(options)]) + b''.join(_OPTION.pack(tag, value) for tag, value in options) + _U16.pack(len(type_bytes)) + type_bytes
        return head, body, len(type_bytes)

    def _send(self, prepared: list) -> list:
        futures = [Future() for _ in prepared]
        frames = []
        limit = self._conn.peer_max_payload
        with self._lock:
            if self._error is not None:
                raise TaskwireError(self._error.code, self._error.message)
            for (head, body, type_len), future in zip(prepared, futures):
                future.set_running_or_notify_cancel()
                # The scheduler refuses what would become a TASK over its limit (section 1.1): refuse it here unsent.
                size = 4 + len(head) + len(body)
                if size > limit or 10 + type_len + len(body) > limit:
                    future.set_exception(TaskFailedError('E_TOO_LARGE', f'a task of {len(body)} bytes does not fit the scheduler\'s maxPayload of {limit}'))
                    continue
                request_id = self._take_id()
                self._pending[request_id] = future
                frames.append(_frame(SUBMIT, _U32.pack(request_id) + head + body))
        # Registered before sending, so an answer can never arrive for an id not yet known.
        if frames:
            self._conn.send(b''.join(frames))
        return futures

    def _take_id(self) -> int:
        # Unique among this connection's pending requests (section 4.3); ids are reused only once answered.
        while True:
            self._next_id = (self._next_id + 1) & 0xFFFFFFFF
            if self._next_id not in self._pending:
                return self._next_id

    def _on_frame(self, cmd: int, payload: bytes, skipped: Optional[int]) -> None:
        if cmd == COMPLETED:
            request_id = _U32.unpack_from(payload, 0)[0] if len(payload) >= 4 else None
            if request_id is None:
                raise _ProtocolError('a COMPLETED without a request id')
            future = self._settle(request_id)
            if skipped is not None:
                future.set_exception(TaskFailedError('E_TOO_LARGE', f'a result of {skipped - 4} bytes is over this client\'s maxPayload of {self._conn.max_payload}'))
            else:
                future.set_result(payload[4:])
        elif cmd == FAILED:
            r = _Reader(payload)
            request_id, code, message = r.u32(), r.str16(), r.text()
            self._settle(request_id).set_exception(TaskFailedError(code, message))
        elif cmd == PROGRESS:
            r = _Reader(payload)
            r.take(20)
            r.str16()
            r.end()  # progress reports are not surfaced by this client
        else:
            # ACCEPTED and REPLY answer requests this client never makes.
            raise _ProtocolError(f'command {cmd} answers a request this client did not make')

    def _settle(self, request_id: int) -> Future:
        with self._lock:
            future = self._pending.pop(request_id, None)
        if future is None:
            raise _ProtocolError(f'an answer for request {request_id}, which is not pending')
        return future

    def _on_close(self, error: TaskwireError) -> None:
        with self._lock:
            self._error = error
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_exception(error)

    def close(self) -> None:
        """Closes the connection; tasks still pending fail with E_CLOSED (the scheduler drops them)."""
        self._conn.shutdown(TaskwireError('E_CLOSED', 'the client was closed'), tell=False)
        self._reader.join(5)

    def __enter__(self) -> 'Client':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Task:
    """The task a handler thread runs, as current_task() returns it."""

    __slots__ = ('task_id', 'attempt', 'type', 'payload', 'inputs', 'cancelled', 'cancel_code', 'cancel_message', '_conn')

    def __init__(self, task_id: int, attempt: int, type_: str, payload: bytes, inputs: Optional[list], conn: _Connection):
        self.task_id = task_id
        self.attempt = attempt
        self.type = type_
        self.payload = payload
        #: For a graph's node (NODE), the results of its inputs in order; None for a plain task.
        self.inputs = inputs
        #: Set when the scheduler takes the task back (CANCEL): a long handler may wait on it and give up early.
        self.cancelled = threading.Event()
        self.cancel_code: Optional[str] = None
        self.cancel_message: Optional[str] = None
        self._conn = conn


_local = threading.local()


def current_task() -> Optional[Task]:
    """The task the calling handler thread runs, or None outside a handler."""
    return getattr(_local, 'task', None)


Handler = Callable[[bytes], Union[bytes, str]]


class Worker:
    """Runs tasks of the job types in `handlers`, `concurrency` at a time, each handler in a thread of its own.

    A handler gets the payload bytes and returns bytes or str; an exception fails the task with its `code`
    attribute (a str of 1 to 64 characters, else E_HANDLER) and its message. run() blocks, reconnecting with
    backoff when the connection is lost; stop() ends it gracefully.
    """

    def __init__(
        self,
        host: str = '127.0.0.1',
        port: int = 9001,
        handlers: Optional[dict] = None,
        concurrency: int = 1,
        token: Optional[str] = None,
        name: Optional[str] = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        reconnect: bool = True,
        on_event: Optional[Callable[[str, str], None]] = None,
    ):
        if not handlers:
            raise TaskwireError('E_INVALID', 'a worker needs at least one handler')
        for type_, handler in handlers.items():
            _job_type(type_)
            if not callable(handler):
                raise TaskwireError('E_INVALID', f'the handler of {type_!r} is not callable')
        _u32_option(concurrency, 'concurrency', 65536)
        if concurrency < 1:
            raise TaskwireError('E_INVALID', 'concurrency must be at least 1')
        self.host, self.port = host, port
        self.handlers = dict(handlers)
        self.concurrency = concurrency
        self.token = token or ''
        self.name = name if name is not None else _default_name()
        self.max_payload = max_payload
        self.reconnect = reconnect
        self._on_event = on_event or (lambda kind, text: None)
        self._pool: Optional[ThreadPoolExecutor] = None
        self._lock = threading.Condition()
        self._leases: dict[tuple[int, int], Task] = {}
        self._conn: Optional[_Connection] = None
        self._stopping = threading.Event()
        self.connected = threading.Event()

    def run(self) -> None:
        """Serves until stop(); raises TaskwireError for what reconnecting cannot fix (E_AUTH, E_VERSION), or for
        any loss of the connection when `reconnect` is False."""
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                conn = _Connection(
                    self.host, self.port, ROLE_WORKER, self.name, self.token,
                    # Handlers run in threads, so keepalives never wait for one: silence is death (section 4.4).
                    [(SETTING_MAY_BLOCK, 0)], self.max_payload, _WORKER_RECEIVES, _WORKER_SKIPPABLE,
                )
            except TaskwireError as e:
                if e.code in ('E_AUTH', 'E_VERSION') or not self.reconnect:
                    raise
                self._on_event('retry', f'{e.message} ({e.code}); retrying in {backoff:.1f} s')
                self._stopping.wait(backoff * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            # A pool per connection: handlers still running for a lost connection must not hold the new one's slots.
            # Credits never exceed `concurrency`, so every task the scheduler sends starts at once on a thread.
            pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix='taskwire-handler')
            with self._lock:
                self._conn, self._pool, self._leases = conn, pool, {}
            try:
                if self._stopping.is_set():
                    # stop() came during the handshake, before it could see this connection.
                    conn.shutdown(TaskwireError('E_CLOSED', 'the worker was stopped'), tell=False)
                    conn.serve(self._on_frame)
                    break
                conn.start_keepalives()
                conn.send(self._ready_frame(self.concurrency))
                self.connected.set()
                self._on_event('connected', f'connected to {conn.where} (scheduler {_printable(conn.scheduler_name)}) as {self.name}: '
                                            f'{", ".join(self.handlers)}; concurrency {self.concurrency}')
                error = conn.serve(self._on_frame)
            finally:
                self.connected.clear()
                with self._lock:
                    self._conn, self._pool = None, None
                    leases = list(self._leases.values())
                # The scheduler requeued these with the connection: a handler watching its task can stop early.
                for task in leases:
                    if not task.cancelled.is_set():
                        task.cancel_code, task.cancel_message = 'E_DISCONNECTED', 'the connection to the scheduler was lost'
                        task.cancelled.set()
                pool.shutdown(wait=False)
            if self._stopping.is_set():
                break
            if not self.reconnect:
                raise error
            self._on_event('disconnected', f'{error.message} ({error.code}); reconnecting')

    def stop(self, grace: float = 10.0) -> None:
        """Stops taking tasks, lets those running finish for up to `grace` seconds, then disconnects: run()
        returns. Returns at once (it may be called from a signal handler)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        with self._lock:
            conn = self._conn
        if conn is None:
            return
        # READY with concurrency 0 first: "send me no more tasks" (section 4.2).
        conn.send(self._ready_frame(0))

        def finish() -> None:
            deadline = time.monotonic() + grace
            with self._lock:
                while self._leases and self._conn is conn:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._lock.wait(left)
            conn.shutdown(TaskwireError('E_CLOSED', 'the worker was stopped'), tell=False)

        threading.Thread(target=finish, name='taskwire-stop', daemon=True).start()

    def _ready_frame(self, concurrency: int) -> bytes:
        types = b''.join(_str16(t, 'a job type') for t in self.handlers)
        return _frame(READY, _U32.pack(concurrency) + _U16.pack(len(self.handlers)) + types)

    def _on_frame(self, cmd: int, payload: bytes, skipped: Optional[int]) -> None:
        conn = self._conn
        if cmd == TASK or cmd == NODE:
            if skipped is not None:
                task_id, attempt = struct.unpack('>II', payload)
                conn.send(_result_error(task_id, attempt, 'E_TOO_LARGE', f'a task of {skipped} bytes is over this worker\'s maxPayload of {self.max_payload}'))
                return
            r = _Reader(payload)
            task_id, attempt, type_ = r.u32(), r.u32(), r.str16()
            inputs = None
            if cmd == NODE:
                inputs = [r.take(r.u32()) for _ in range(r.u16())]
            task = Task(task_id, attempt, type_, r.rest(), inputs, conn)
            handler = self.handlers.get(type_)
            if handler is None:
                conn.send(_result_error(task_id, attempt, 'E_NO_HANDLER', f'no handler for job type {type_!r}'))
                return
            with self._lock:
                self._leases[(task_id, attempt)] = task
                pool = self._pool
            pool.submit(self._run, handler, task)
        elif cmd == CANCEL:
            r = _Reader(payload)
            task_id, attempt, code, message = r.u32(), r.u32(), r.str16(), r.text()
            with self._lock:
                task = self._leases.get((task_id, attempt))
            # A CANCEL for a lease already answered crossed its RESULT on the wire: nothing to do (section 3.9).
            if task is not None:
                task.cancel_code, task.cancel_message = code, message
                task.cancelled.set()

    def _run(self, handler: Handler, task: Task) -> None:
        _local.task = task
        try:
            out = handler(task.payload)
            if isinstance(out, str):
                out = out.encode('utf-8')
            if isinstance(out, (bytes, bytearray, memoryview)):
                out = bytes(out)
                limit = task._conn.peer_max_payload
                if 9 + len(out) > limit:
                    frame = _result_error(task.task_id, task.attempt, 'E_TOO_LARGE', f'a result of {len(out)} bytes does not fit the scheduler\'s maxPayload of {limit}')
                else:
                    frame = _frame(RESULT, struct.pack('>IIB', task.task_id, task.attempt, 0) + out)
            else:
                frame = _result_error(task.task_id, task.attempt, 'E_HANDLER', f'the handler returned {type(out).__name__}, not str or bytes')
        except Exception as e:
            code = getattr(e, 'code', 'E_HANDLER')
            if not isinstance(code, str) or not 1 <= len(code) <= MAX_CODE_CHARS:
                code = 'E_HANDLER'
            message = e.message if isinstance(e, TaskwireError) else (str(e) or type(e).__name__)
            frame = _result_error(task.task_id, task.attempt, code, message)
        finally:
            _local.task = None
        # Answered even after a CANCEL: the scheduler frees the slot only on this RESULT, then drops it (section 3.9).
        task._conn.send(frame)
        with self._lock:
            if self._leases.get((task.task_id, task.attempt)) is task:
                del self._leases[(task.task_id, task.attempt)]
            self._lock.notify_all()


def _result_error(task_id: int, attempt: int, code: str, message: str) -> bytes:
    return _frame(RESULT, struct.pack('>IIB', task_id, attempt, 1) + _str16(code, 'an error code') + _cut(message))


# --- command line -----------------------------------------------------------------------------------------------

PROGRAM = 'taskwire.py'


def _fail(text: str, status: int) -> int:
    print(f'{PROGRAM}: {text}', file=sys.stderr, flush=True)
    return status


def _cli_submit(args) -> int:
    try:
        client = Client(args.host, args.port, token=args.token, name=args.name)
    except TaskwireError as e:
        return _fail(f'{_printable(e.message)} ({_printable(e.code)})', 2)
    options = {}
    if args.task_timeout is not None:
        options['timeout_ms'] = args.task_timeout
    if args.retries is not None:
        options['retries'] = args.retries
    try:
        results = client.submit_many([(args.type, text, options) for text in args.inputs], return_exceptions=True,
                                     wait=args.timeout / 1000 if args.timeout else None)
    except TimeoutError:
        return _fail(f'timed out after {args.timeout} ms (E_TIMEOUT)', 2)
    except TaskwireError as e:
        return _fail(f'{_printable(e.message)} ({_printable(e.code)})', 2)
    finally:
        client.close()
    # A connection-level failure is not a task's own: it ends the run as "unreachable", status 2.
    lost = [r for r in results if isinstance(r, TaskwireError) and not isinstance(r, TaskFailedError)]
    if lost:
        return _fail(f'{_printable(lost[0].message)} ({_printable(lost[0].code)})', 2)
    out = sys.stdout.buffer
    failed = False
    for text, result in zip(args.inputs, results):
        if isinstance(result, TaskFailedError):
            failed = True
            if len(args.inputs) == 1:
                return _fail(f'{_printable(result.message)} ({_printable(result.code)})', 1)
            out.write(f'{text} = error: {_printable(result.message)} ({_printable(result.code)})\n'.encode('utf-8', 'replace'))
        elif len(args.inputs) == 1:
            out.write(result + b'\n')
        else:
            out.write(text.encode('utf-8', 'replace') + b' = ' + result + b'\n')
    out.flush()
    return 1 if failed else 0


def _cli_worker(args) -> int:
    delay = args.delay / 1000

    def held(compute: Handler) -> Handler:
        if not delay:
            return compute

        def handler(payload: bytes):
            task = current_task()
            if task is not None and task.cancelled.wait(delay):
                raise TaskwireError(task.cancel_code or 'E_CANCELLED', f'given up: {task.cancel_message}')
            return compute(payload)

        return handler

    handlers = {
        'sha256': held(lambda payload: hashlib.sha256(payload).hexdigest()),
        'echo': held(lambda payload: payload),
    }

    def log(kind: str, text: str) -> None:
        if not args.quiet:
            print(f'{PROGRAM}: {text}', file=sys.stderr, flush=True)

    try:
        worker = Worker(args.host, args.port, handlers, concurrency=args.concurrency, token=args.token, name=args.name, on_event=log)
    except TaskwireError as e:
        return _fail(f'{_printable(e.message)} ({_printable(e.code)})', 2)
    signals = []

    def on_signal(signum, frame) -> None:
        signals.append(signum)
        if len(signals) > 1:
            os._exit(1)  # a second signal: at once, as the other programs do
        # Not in the handler itself: it may have interrupted this thread while it held the connection's write lock.
        threading.Thread(target=worker.stop, args=(args.grace / 1000,), daemon=True).start()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        worker.run()
    except TaskwireError as e:
        return _fail(f'{_printable(e.message)} ({_printable(e.code)})', 2)
    return 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog=PROGRAM, description='A taskwire client and worker (protocol version 4).')
    commands = parser.add_subparsers(dest='command', required=True)

    def common(p) -> None:
        p.add_argument('--host', default=os.environ.get('TASKWIRE_HOST') or '127.0.0.1', help='the scheduler (default 127.0.0.1)')
        p.add_argument('--port', '-p', type=int, default=_env_int('TASKWIRE_PORT', 9001), help='its port (default 9001)')
        p.add_argument('--token', default=os.environ.get('TASKWIRE_TOKEN') or None, help='shared secret, if the scheduler requires one (TASKWIRE_TOKEN)')
        p.add_argument('--name', default=None, help='name shown by the scheduler (default hostname:pid)')

    s = commands.add_parser('submit', help='submit tasks and print their results')
    common(s)
    s.add_argument('--type', '-t', default='sha256', help='job type (default sha256)')
    s.add_argument('--timeout', type=int, default=30000, help='give up after this many ms (0: wait forever; default 30000)')
    s.add_argument('--task-timeout', type=int, default=None, help="ms each task may run on a worker before it is requeued")
    s.add_argument('--retries', type=int, default=None, help='times a failing task is retried (default 0)')
    s.add_argument('inputs', nargs='+', help='task payloads, one task each')

    w = commands.add_parser('worker', help='run a worker with the job types sha256 and echo')
    common(w)
    w.add_argument('--concurrency', '-c', type=int, default=8, help='handlers run at once (default 8)')
    w.add_argument('--delay', type=int, default=0, help='ms to hold each task before answering, to watch tasks in flight')
    w.add_argument('--grace', type=int, default=10000, help='on SIGINT/SIGTERM, ms to finish running tasks (default 10000)')
    w.add_argument('--quiet', '-q', action='store_true', help='log nothing but errors')

    args = parser.parse_args(argv)
    return _cli_submit(args) if args.command == 'submit' else _cli_worker(args)


if __name__ == '__main__':
    sys.exit(main())
