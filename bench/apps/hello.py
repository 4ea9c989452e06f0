"""The benchmarks' WSGI app: a short text naming the process that answered."""
import os

BODY = "hello from pid {}\n".format(os.getpid()).encode()


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]
