# WSGI app for backend tests: "/" answers "ok <pid>", "/fail" 503.
import os


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/fail":
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"down\n"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("ok %d %s\n" % (os.getpid(), path)).encode()]


app = application
