"""The Python end of listener_interop_test: Python's multiprocessing.connection Listener and
Client, driven by the test over stdin and stdout, one command a line, so that one interpreter
serves many scenarios.

Runs on every Python 3 from 3.6 on (no newer syntax). Started as `python3 -u listener_interop.py`,
it prints `ready MAJOR.MINOR FORM` (FORM: `sha256` when this Python's challenge is the
{sha256} form of 3.12 and later, `legacy` when it is the bare HMAC-MD5 one), then for each
command prints one `result ...` line (`serve` prints a `listening` line first):

  serve ADDRESS KEY SIZES    a Listener at ADDRESS; prints `listening PORT` (0 for a Unix
                             socket) once it listens, accepts one client, exchanges SIZES
  connect ADDRESS KEY SIZES  a Client to ADDRESS, exchanges SIZES
  raw ADDRESS MODE           a plain socket that misbehaves (MODE: framed, unframed, partial,
                             silent, hangup), then reads until the other end closes
  quit

ADDRESS is `inet:HOST:PORT` or `unix:HEX` (the path's bytes in hex; a leading 00 byte is the
Linux abstract namespace). KEY is `none` (authkey None) or `key:HEX`. SIZES is `-` or sizes
in bytes separated by commas: for each, the client sends pattern("c2s", size), the server checks
it and answers pattern("s2c", size), the client checks that. Then the client closes, and the
server expects end of file: the client sent nothing more.

Results: `result ok`, `result auth-error` (AuthenticationError from the handshake),
`result closed` (raw: the other end closed), `result bad ...` (what went wrong).
"""

import binascii
import hashlib
import signal
import socket
import struct
import sys
import traceback

import multiprocessing.connection as mpc
from multiprocessing import AuthenticationError

# Every command must end well within this; a stuck one kills the script, not the test.
COMMAND_SECONDS = 60

_patterns = {}


def pattern(tag, size):
    """Deterministic bytes: SHA-256 of b"TAG:SIZE:I" for I = 0, 1, ..., cut to `size`."""
    key = (tag, size)
    if key not in _patterns:
        blocks = []
        for i in range((size + 31) // 32):
            blocks.append(hashlib.sha256(("%s:%d:%d" % (tag, size, i)).encode()).digest())
        _patterns[key] = b"".join(blocks)[:size]
    return _patterns[key]


def parse_address(text):
    kind, _, rest = text.partition(":")
    if kind == "inet":
        host, _, port = rest.rpartition(":")
        return (host, int(port))
    if kind == "unix":
        return binascii.unhexlify(rest).decode("utf-8", "surrogateescape")
    raise ValueError("bad address " + text)


def parse_key(text):
    if text == "none":
        return None
    if text.startswith("key:"):
        return binascii.unhexlify(text[4:])
    raise ValueError("bad key " + text)


def parse_sizes(text):
    return [] if text == "-" else [int(size) for size in text.split(",")]


def describe(data):
    return "%d bytes (sha256 %s)" % (len(data), hashlib.sha256(data).hexdigest()[:16])


def exchange(conn, sizes, client):
    """Runs the exchange of `sizes`; then the server expects end of file (the client closes).
    Returns the result."""
    for size in sizes:
        if client:
            conn.send_bytes(pattern("c2s", size))
        got = conn.recv_bytes()
        want = pattern("s2c" if client else "c2s", size)
        if got != want:
            return "bad message of size %d: got %s" % (size, describe(got))
        if not client:
            conn.send_bytes(pattern("s2c", size))
    if client:
        return "ok"
    try:
        extra = conn.recv_bytes()
    except EOFError:
        return "ok"
    return "bad message after the exchange: " + describe(extra)


def serve(address, key, sizes):
    listener = mpc.Listener(address, authkey=key)
    try:
        port = listener.address[1] if isinstance(listener.address, tuple) else 0
        print("listening %d" % port)
        try:
            conn = listener.accept()
        except AuthenticationError:
            return "auth-error"
        try:
            return exchange(conn, sizes, client=False)
        finally:
            conn.close()
    finally:
        try:
            listener.close()
        except ValueError:
            # Before 3.9 close() unlinks even an abstract name, which has a NUL byte.
            if not (isinstance(address, str) and address.startswith("\0")):
                raise


def connect(address, key, sizes):
    try:
        conn = mpc.Client(address, authkey=key)
    except AuthenticationError:
        return "auth-error"
    try:
        return exchange(conn, sizes, client=True)
    finally:
        conn.close()


def raw(address, mode):
    family = socket.AF_INET if isinstance(address, tuple) else socket.AF_UNIX
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(COMMAND_SECONDS / 2)
        sock.connect(address)
        if mode == "hangup":
            return "closed"
        if mode == "framed":  # a well-framed answer with a digest that cannot be right
            sock.sendall(struct.pack("!i", 40) + b"{sha256}" + b"\x5a" * 32)
        elif mode == "unframed":  # not this protocol at all: a 1.2 GB length
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        elif mode == "partial":  # announces 100 bytes, sends 3, stalls
            sock.sendall(struct.pack("!i", 100) + b"abc")
        elif mode != "silent":
            raise ValueError("bad mode " + mode)
        while True:
            try:
                data = sock.recv(65536)
            except socket.timeout:
                return "bad: the other end did not close"
            if not data:
                return "closed"
    finally:
        sock.close()


def run(words):
    if words[0] == "serve" and len(words) == 4:
        return serve(parse_address(words[1]), parse_key(words[2]), parse_sizes(words[3]))
    if words[0] == "connect" and len(words) == 4:
        return connect(parse_address(words[1]), parse_key(words[2]), parse_sizes(words[3]))
    if words[0] == "raw" and len(words) == 3:
        return raw(parse_address(words[1]), words[2])
    raise ValueError("bad command")


def main():
    form = "sha256" if hasattr(mpc, "_ALLOWED_DIGESTS") else "legacy"
    print("ready %d.%d %s" % (sys.version_info[0], sys.version_info[1], form))
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words == ["quit"]:
            break
        signal.alarm(COMMAND_SECONDS)
        try:
            result = run(words)
        except Exception as error:  # reported to the test, which fails with it
            detail = traceback.format_exc().replace("\n", " | ")
            result = "bad %s: %s [%s]" % (type(error).__name__, error, detail)
        signal.alarm(0)
        print("result " + result)


if __name__ == "__main__":
    main()
