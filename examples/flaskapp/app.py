"""A small Flask app for gowsgi.

    go run ./cmd/gowsgi --chdir examples/flaskapp app:app

frameworks_test.go drives every route through a real HTTP server.
"""

import hashlib
import os
from pathlib import Path

from flask import Flask, Response, abort, jsonify, redirect, request, send_file, session, url_for

HERE = Path(__file__).resolve().parent

app = Flask(__name__)
# Signs the session cookie. The fallback is for development only: set
# FLASKAPP_SECRET_KEY to a long random string anywhere it matters.
app.secret_key = os.environ.get("FLASKAPP_SECRET_KEY", "flaskapp-dev-only-secret")


@app.get("/")
def index():
    return "Hello from Flask!"


@app.get("/json")
def json_get():
    return jsonify(framework="flask", items=[1, 2, 3])


@app.post("/json")
def json_post():
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400, "expected a JSON object")
    data["echoed"] = True
    return jsonify(data)


@app.get("/redirect")
def to_index():
    return redirect(url_for("index"))


@app.get("/session")
def visits():
    session["visits"] = session.get("visits", 0) + 1
    return jsonify(visits=session["visits"])


@app.get("/stream")
def stream():
    count = request.args.get("n", 5, type=int)

    def lines():
        for i in range(count):
            yield f"line {i}\n"

    return Response(lines(), mimetype="text/plain")


@app.post("/upload")
def upload():
    uploaded = request.files.get("file")
    if uploaded is None:
        abort(400, "no file part named 'file'")
    digest = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: uploaded.stream.read(64 * 1024), b""):
        digest.update(chunk)
        size += len(chunk)
    return jsonify(
        filename=uploaded.filename,
        size=size,
        sha256=digest.hexdigest(),
        note=request.form.get("note"),
    )


@app.get("/file")
def file():
    return send_file(HERE / "static.txt", mimetype="text/plain")
