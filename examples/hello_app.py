"""The smallest h2stream application: one returned response, one streamed with trailers.

h2stream serve --app examples.hello_app:app          # from the repository root
curl --http2-prior-knowledge 'http://127.0.0.1:8080/hello?name=h2'
curl --http2-prior-knowledge -D - 'http://127.0.0.1:8080/count?n=5'   # trailers after the body
"""

from __future__ import annotations

from h2stream.handlers.app import App, Request, Response

app = App()


@app.route("/hello")
async def hello(request: Request) -> Response:
    return Response(body=f"hello {request.args.get('name', 'world')}\n")


@app.route("/count")
async def count(request: Request) -> None:
    n = int(request.args.get("n", "1000"))
    out = request.start_response(200, content_type="text/plain; charset=utf-8")
    for i in range(n):
        await out.send(f"{i}\n")  # returns once flow control has let the line go
    await out.end(trailers=[("x-lines", str(n))])
