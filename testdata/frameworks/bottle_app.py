"""A Bottle app for frameworks_test.go: text at /hello, a JSON round trip at /echo."""

import bottle

app = bottle.Bottle()


@app.get("/hello")
def hello():
    bottle.response.content_type = "text/plain; charset=utf-8"
    return "Hello from Bottle!"


@app.post("/echo")
def echo():
    doc = bottle.request.json
    if not isinstance(doc, dict):
        bottle.abort(400, "expected a JSON object")
    doc["framework"] = "bottle"
    return doc  # Bottle sends a dict as JSON
