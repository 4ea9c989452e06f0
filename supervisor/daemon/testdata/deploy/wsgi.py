"""A tiny WSGI app for gunicorn: says which process answered."""
import os


def app(environ, start_response):
    body = "hello from pid {}\n".format(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
