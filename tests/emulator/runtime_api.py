"""A minimal Lambda Runtime API on loopback that keeps a bootstrap binary warm.

`LambdaProcess(bootstrap, env)` starts the binary with `AWS_LAMBDA_RUNTIME_API` pointing
at a private HTTP server; `invoke(event)` hands it one event and returns
`(payload_bytes, errored)`. Every wait has a deadline, so nothing hangs a test.
"""

import http.server
import json
import os
import queue
import socket
import subprocess
import threading
import time
import uuid

API = "/2018-06-01/runtime"


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A killed bootstrap drops its connection; that is not an error of the server.
        pass


class LambdaProcess:
    def __init__(self, bootstrap, env, function_name="function", timeout_seconds=60, log=None):
        self.function_name = function_name
        self.timeout_seconds = timeout_seconds
        self._events = queue.Queue()
        self._results = {}
        self._done = threading.Condition()
        self.init_error = None
        handler = self._handler()
        self._server = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        port = self._server.server_address[1]
        full_env = dict(os.environ)
        full_env.update(env)
        full_env.update(
            {
                "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
                "AWS_LAMBDA_FUNCTION_NAME": function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")),
            }
        )
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [bootstrap], env=full_env, stdin=subprocess.DEVNULL, stdout=log or subprocess.DEVNULL, stderr=log or subprocess.DEVNULL
        )

    def _handler(self):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # Headers and body go out in separate writes: without this, delayed ACKs
                # add ~40 ms to every invocation.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args):
                pass

            def _reply(self, status, body=b"", headers=None):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != f"{API}/invocation/next":
                    return self._reply(404)
                while True:
                    try:
                        request_id, event = outer._events.get(timeout=1)
                        break
                    except queue.Empty:
                        if outer.process.poll() is not None:
                            return self._reply(500)
                deadline = int((time.time() + outer.timeout_seconds) * 1000)
                self._reply(
                    200,
                    event,
                    {
                        "Content-Type": "application/json",
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(deadline),
                        "Lambda-Runtime-Invoked-Function-Arn": f"arn:aws:lambda:us-east-1:123456789012:function:{outer.function_name}",
                        "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
                    },
                )

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0") or 0)
                body = self.rfile.read(length) if length else b""
                parts = self.path[len(API):].strip("/").split("/")
                if parts[:2] == ["init", "error"]:
                    outer.init_error = body
                    with outer._done:
                        outer._done.notify_all()
                    return self._reply(202)
                if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    with outer._done:
                        outer._results[parts[1]] = (body, parts[2] == "error")
                        outer._done.notify_all()
                    return self._reply(202)
                return self._reply(404)

        return Handler

    def invoke(self, event, timeout=None):
        """Runs one event; returns (payload bytes, errored)."""
        timeout = timeout or self.timeout_seconds + 5
        request_id = str(uuid.uuid4())
        self._events.put((request_id, json.dumps(event).encode()))
        deadline = time.monotonic() + timeout
        with self._done:
            while request_id not in self._results:
                if self.init_error is not None:
                    return self.init_error, True
                if self.process.poll() is not None:
                    return json.dumps({"errorType": "Runtime.ExitError", "errorMessage": f"exited {self.process.returncode}"}).encode(), True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": f"no response within {timeout}s"}).encode(), True
                self._done.wait(min(remaining, 0.5))
            return self._results.pop(request_id)

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._server.shutdown()
        self._server.server_close()
