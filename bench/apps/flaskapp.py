"""A Flask hello view for the benchmarks: the same 13 bytes as apps.hello,
through Flask's routing, request and response objects.

    gunicorn --chdir bench/apps flaskapp:app
"""

from flask import Flask

app = Flask(__name__)


@app.route("/", defaults={"path": ""})
@app.route("/<path:path>")
def hello(path):
    return "Hello, World!", 200, {"Content-Type": "text/plain"}
