"""A plain app that imports a share of the standard library and changes
some of its state, as a framework would: the recycling memory test runs it
a thousand times."""

import asyncio
import decimal
import email.message
import http.cookies
import json
import logging
import sqlite3
import uuid
import warnings

logging.getLogger("stdlib_heavy").addHandler(logging.NullHandler())
warnings.filterwarnings("ignore", message="stdlib_heavy")
sqlite3.register_adapter(decimal.Decimal, str)
CACHE = [bytes(1024) for _ in range(256)]  # 256 KiB the app holds


def application(environ, start_response):
    loop = asyncio.new_event_loop()
    try:
        value = loop.run_until_complete(asyncio.sleep(0, result=str(uuid.uuid4())))
    finally:
        loop.close()
    msg = email.message.EmailMessage()
    msg["Subject"] = value
    cookie = http.cookies.SimpleCookie()
    cookie["id"] = value
    body = json.dumps({"id": value, "subject": msg["Subject"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
