# ASGI app for the uvicorn acceptance test, with no framework: "/info"
# answers what the server told it (root_path, scheme, host), "/echo" is a
# WebSocket that echoes each text message with the root_path it sees.
import json
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            text = "echo:%s root_path=%s" % (msg.get("text") or "", scope["root_path"])
            await send({"type": "websocket.send", "text": text})
    headers = {k.decode("latin1"): v.decode("latin1") for k, v in scope["headers"]}
    host = headers.get("host", "")
    info = {
        "pid": os.getpid(),
        "root_path": scope["root_path"],
        "path": scope["path"],
        "scheme": scope["scheme"],
        "host": host,
        # What a framework's url_for builds: scheme, host, root_path, path.
        "url": "%s://%s%s%s" % (scope["scheme"], host, scope["root_path"], scope["path"]),
    }
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(info).encode()})
