"""A module named like Django's mysite.wsgi: a module, not a script file."""


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"from sitepkg.wsgi"]
