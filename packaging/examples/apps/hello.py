"""The smallest WSGI app: says hello and which process answered."""
import os


def app(environ, start_response):
    body = "hello from pid {} via {}\n".format(os.getpid(), environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
