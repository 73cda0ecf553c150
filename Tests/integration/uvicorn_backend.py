"""A uvicorn (h11) backend, the HTTP server Ray Serve runs, that records what reaches it.

Prints `listening on 127.0.0.1:PORT` once ready. Every request answers `{"path": ...}`;
`/slow-smuggled` answers after 200 ms (so a smuggled response would be queued behind another
client's request); `GET /__requests` returns the requests received so far (without itself).
"""
import asyncio
import json
import socket
import sys

import uvicorn

received = []


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
    path = scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
    if path == "/__requests":
        payload = json.dumps(received).encode()
    else:
        received.append({"method": scope["method"], "path": path, "host": headers.get("host"),
                         "authorization": headers.get("authorization"), "body_bytes": len(body)})
        if scope["path"] == "/slow-smuggled":
            await asyncio.sleep(0.2)
        payload = json.dumps({"path": path}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def main():
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)  # before saying so: connects must not race uvicorn's start-up
    config = uvicorn.Config(app, http="h11", log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    print(f"listening on 127.0.0.1:{sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
