"""Sluice's Python 3 function runtime (standard library only).

Usage: python3 runtime.py PATH/TO/module.py

Imports the module once, then serves Sluice's function protocol on the Unix
socket named by SLUICE_FN_SOCKET (default /run/sluice/fn.sock):

  GET  /ready   -> 200 {"ready": true}
  POST /invoke  -> main(args) with the JSON body decoded; its return value
                   encoded as JSON. Errors: {"error": "..."} with status 400
                   (body is not JSON) or 500 (main raised).

Invocations run one at a time, so main need not be thread-safe. The module
stays imported between invocations: state it keeps in globals stays warm.
"""

import importlib.util
import json
import os
import signal
import socketserver
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler

MAX_BODY = 64 << 20
DEFAULT_SOCKET = "/run/sluice/fn.sock"


def load(path):
    """Imports the file at path as module 'function' and returns main."""
    path = os.path.abspath(path)
    sys.path.insert(0, os.path.dirname(path))
    spec = importlib.util.spec_from_file_location("function", path)
    if spec is None or spec.loader is None:
        raise ImportError("cannot load %s" % path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["function"] = module
    spec.loader.exec_module(module)
    main = getattr(module, "main", None)
    if not callable(main):
        raise ImportError("%s defines no main(args) function" % path)
    return main


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sluice-python"
    main = None
    lock = threading.Lock()

    def log_message(self, format, *args):  # noqa: A002 - signature is fixed
        pass

    def reply(self, status, obj):
        try:
            body = json.dumps(obj).encode()
        except (TypeError, ValueError) as e:
            status, body = 500, json.dumps({"error": "encode result: %s" % e}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/ready":
            self.reply(200, {"ready": True})
        else:
            self.reply(404, {"error": "no such path: %s" % self.path})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self.reply(413, {"error": "request body over %d bytes" % MAX_BODY})
            return
        raw = self.rfile.read(length) if length else b"null"
        if self.path != "/invoke":
            self.reply(404, {"error": "no such path: %s" % self.path})
            return
        try:
            args = json.loads(raw)
        except ValueError:
            self.reply(400, {"error": "request body is not valid JSON"})
            return
        with self.lock:
            try:
                result = Handler.main(args)
            except Exception as e:  # the function's failure, reported, not fatal
                traceback.print_exc()
                self.reply(500, {"error": "%s: %s" % (type(e).__name__, e)})
                return
        self.reply(200, result)


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def serve(main_path):
    Handler.main = staticmethod(load(main_path))
    path = os.environ.get("SLUICE_FN_SOCKET") or DEFAULT_SOCKET
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    server = Server(path, Handler)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever(poll_interval=0.5)
    server.server_close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: runtime.py MODULE.py\n")
        sys.exit(2)
    try:
        serve(sys.argv[1])
    except Exception:
        traceback.print_exc()
        sys.exit(1)
