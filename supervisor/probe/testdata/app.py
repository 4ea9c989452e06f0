# Minimal WSGI app for probe tests: /fail answers 503, anything else 200.
def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/fail":
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"down\n"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("ok " + path + "\n").encode()]


app = application
