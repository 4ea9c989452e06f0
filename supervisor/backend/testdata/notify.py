# An HTTP server on fd 3 that reports readiness with python3-systemd.
import http.server
import os
import socket
import socketserver

from systemd import daemon


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("ok %d\n" % os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    pass


srv = Server(("127.0.0.1", 0), Handler, bind_and_activate=False)
srv.socket.close()
srv.socket = socket.socket(fileno=3)
daemon.notify("READY=1\nSTATUS=python ready")
srv.serve_forever()
