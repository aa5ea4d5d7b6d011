"""Request bodies over a size limit are refused with 413 before they are read into memory."""

import json


class BodyLimit:
    """ASGI middleware: 413 for a body whose ``Content-Length`` (or, when streamed, whose bytes read
    so far) exceeds ``max_bytes``."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(send, int(length))
        received, started, refused = 0, False, False

        async def limited_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # answer now; the app sees the client leave
                    refused = True
                    if not started:
                        await self._refuse(send, received)
            return {"type": "http.disconnect"} if refused else message

        async def guarded_send(message):
            nonlocal started
            if refused:
                return  # the 413 has been sent: whatever the app answers is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, send, size: int) -> None:
        detail = f"request of {size / 1024:.0f} KB is larger than the studio's limit of {self.max_bytes // 1024} KB"
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
