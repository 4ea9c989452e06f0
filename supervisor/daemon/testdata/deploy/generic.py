"""A plain HTTP server on the inherited socket (fd 3), no framework.

With BOOT_FAIL set in its directory's "mode" file it plays a broken
deploy: it boots for 3 s, says why on stderr and exits 1.
"""
import os
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

here = os.path.dirname(os.path.abspath(__file__))
try:
    mode = open(os.path.join(here, "mode")).read().strip()
except FileNotFoundError:
    mode = "good"
if mode == "broken":
    time.sleep(3)
    sys.stderr.write("generic: cannot read settings.ini: no such file\n")
    sys.exit(1)


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = "hello from pid {}\n".format(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self):
        return "unix"

    def log_message(self, *args):
        pass


class Inherited(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self):
        pass

    def server_activate(self):
        pass


srv = Inherited(("", 0), Hello, bind_and_activate=False)
srv.socket.close()
srv.socket = socket.socket(fileno=3)
srv.serve_forever()
