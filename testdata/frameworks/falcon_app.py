"""A Falcon app for frameworks_test.go: text at /hello, a JSON round trip at /echo."""

import falcon


class Hello:
    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "Hello from Falcon!"


class Echo:
    def on_post(self, req, resp):
        doc = req.get_media()
        doc["framework"] = "falcon"
        resp.media = doc


app = falcon.App()
app.add_route("/hello", Hello())
app.add_route("/echo", Echo())
