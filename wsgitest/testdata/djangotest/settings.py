"""The example site's settings (DEBUG off), with the URLs below."""

from mysite.settings import *  # noqa: F401,F403

ROOT_URLCONF = "djangotest.urls"
