"""A tiny ASGI app for uvicorn: says which process answered."""
import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = "hello from pid {}\n".format(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

if os.environ.get("APP_BREAK"):
    raise RuntimeError("APP_BREAK is set: this version refuses to start")
