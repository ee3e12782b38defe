"""The app the fuzz tests drive.

``environ_app`` runs under wsgiref.validate, so an environ that breaks PEP
3333 is an AssertionError (a 500), and answers the PATH_INFO and
QUERY_STRING it got, as Latin-1 bytes.  ``response_app`` passes whatever
status and header the request names (in X-Status, X-Name, X-Value) to
start_response.
"""

import wsgiref.validate


def _environ_app(environ, start_response):
    body = (environ.get("PATH_INFO", "") + "\n" + environ.get("QUERY_STRING", "")).encode("latin-1")
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


environ_app = wsgiref.validate.validator(_environ_app)


def response_app(environ, start_response):
    status = environ.get("HTTP_X_STATUS", "200 OK")
    header = (environ.get("HTTP_X_NAME", "X-Test"), environ.get("HTTP_X_VALUE", ""))
    start_response(status, [("Content-Type", "text/plain"), header])
    return [b"ok"]
