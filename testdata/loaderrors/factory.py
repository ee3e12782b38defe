"""An app made by a factory, and one behind a dotted attribute."""


def create_app():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"from factory"]
    return app


class Server:
    @staticmethod
    def wsgi_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"from dotted"]


server = Server()
