"""A package the tests copy into a virtualenv's site-packages: importable
only when WithPythonExecutable selected that virtualenv."""

import os

WHERE = os.path.dirname(os.path.abspath(__file__))
