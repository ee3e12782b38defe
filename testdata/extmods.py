"""Imports C extension modules and uses each, for TestExtensionModules.

Some are built into libpython, most are shared objects in lib-dynload that
find the C API in whatever loaded them: the shared libpython, or the
program itself when CPython is linked in statically. The body is JSON:
{module: "ok", "absent" (this Python was built without it) or the error}.
"""

import json


def _json():
    import json.decoder
    assert json.decoder.c_scanstring is not None, "no C scanner"
    return json.loads('{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}


def _decimal():
    import _decimal
    return str(_decimal.Decimal("1.1") + _decimal.Decimal("2.2")) == "3.3"


def _ctypes():
    import ctypes
    return ctypes.c_int(7).value == 7 and ctypes.sizeof(ctypes.c_int32) == 4


def pyexpat():
    import xml.etree.ElementTree as ET
    return ET.fromstring("<a><b>x</b></a>").find("b").text == "x"


def _ssl():
    import ssl
    return ssl.create_default_context().verify_mode == ssl.CERT_REQUIRED


def _hashlib():
    import hashlib
    return hashlib.sha256(b"abc").hexdigest().startswith("ba7816bf")


def zlib():
    import zlib
    return zlib.decompress(zlib.compress(b"x" * 100)) == b"x" * 100


def _sqlite3():
    import sqlite3
    db = sqlite3.connect(":memory:")
    return db.execute("select 6 * 7").fetchone() == (42,)


def _socket():
    import socket
    return socket.inet_aton("127.0.0.1") == b"\x7f\x00\x00\x01"


def unicodedata():
    import unicodedata
    return unicodedata.name("a") == "LATIN SMALL LETTER A"


def _lzma():
    import lzma
    return lzma.decompress(lzma.compress(b"abc")) == b"abc"


def _bz2():
    import bz2
    return bz2.decompress(bz2.compress(b"abc")) == b"abc"


def _struct():
    import struct
    return struct.unpack("<I", struct.pack("<I", 258)) == (258,)


CHECKS = [_json, _decimal, _ctypes, pyexpat, _ssl, _hashlib, zlib, _sqlite3,
          _socket, unicodedata, _lzma, _bz2, _struct]


def application(environ, start_response):
    out = {}
    for check in CHECKS:
        try:
            out[check.__name__] = "ok" if check() else "wrong answer"
        except ModuleNotFoundError:
            out[check.__name__] = "absent"  # not built into this Python
        except Exception as e:  # the point: say which failed, and how
            out[check.__name__] = "%s: %s" % (type(e).__name__, e)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(out).encode()]
