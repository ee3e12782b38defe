"""A Pyramid app for frameworks_test.go: text at /hello, a JSON round trip at /echo."""

from pyramid.config import Configurator
from pyramid.response import Response


def hello(request):
    return Response("Hello from Pyramid!", content_type="text/plain")


def echo(request):
    doc = request.json_body
    doc["framework"] = "pyramid"
    return doc


with Configurator() as config:
    config.add_route("hello", "/hello")
    config.add_view(hello, route_name="hello", request_method="GET")
    config.add_route("echo", "/echo")
    config.add_view(echo, route_name="echo", request_method="POST", renderer="json")
    app = config.make_wsgi_app()
