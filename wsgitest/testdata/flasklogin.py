"""A Flask app with a login: POST /login with user and password signs the
session cookie; GET /me says who is logged in; POST /logout forgets it;
POST /json echoes a JSON body; GET /boom raises, and Flask logs the
traceback to wsgi.errors."""

from flask import Flask, abort, jsonify, redirect, request, session, url_for

app = Flask(__name__)
app.secret_key = "wsgitest-only-secret"

USERS = {"gopher": "burrow"}


@app.post("/login")
def login():
    user = request.form.get("user", "")
    if USERS.get(user) != request.form.get("password"):
        abort(401)
    session["user"] = user
    return redirect(url_for("me"))


@app.get("/me")
def me():
    if "user" not in session:
        abort(401)
    return f"Hello, {session['user']}!"


@app.post("/logout")
def logout():
    session.clear()
    return "Bye."


@app.get("/boom")
def boom():
    raise LookupError("no such thing")


@app.post("/json")
def echo_json():
    return jsonify(request.get_json())
