"""A Flask app for recycle_test.go: /state?set=X sets a module global and an
attribute of the Flask class, and /state reports them with the Flask modules
loaded."""

import sys

import flask

app = flask.Flask(__name__)
STATE = None


@app.get("/state")
def state():
    global STATE
    if "set" in flask.request.args:
        STATE = flask.request.args["set"]
        flask.Flask.gowsgi_probe = STATE
    return flask.jsonify(
        state=STATE,
        probe=getattr(flask.Flask, "gowsgi_probe", None),
        flask_module=id(flask),
        modules=sorted(m for m in sys.modules if m.startswith("flask_state")),
    )
