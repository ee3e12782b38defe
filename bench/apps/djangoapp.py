"""A Django JSON view for the benchmarks: {"hello": "world"} through
Django's URL resolver and the middleware a new project gets from
`django-admin startproject`, in one file.

    gunicorn --chdir bench/apps djangoapp:app

The settings are those of a new project, configured in code: the default
installed apps, middleware and templates, SQLite in memory, DEBUG off. The
view touches neither the database nor the session, so no request opens a
database connection; what is measured is Django's request handling.
"""

from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="benchmark-only-not-secret",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django.contrib.staticfiles",
    ],
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ],
    TEMPLATES=[
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [],
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.debug",
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ],
            },
        },
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    LANGUAGE_CODE="en-us",
    TIME_ZONE="UTC",
    USE_I18N=True,
    USE_TZ=True,
    STATIC_URL="/static/",
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
)

# get_wsgi_application sets Django up (the app registry), which the admin's
# URLs below need.
from django.core.wsgi import get_wsgi_application  # noqa: E402

app = get_wsgi_application()

from django.contrib import admin  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def hello(request):
    return JsonResponse({"hello": "world"})


# As in a new project, the admin's URLs come first: the resolver tries them
# before it reaches the view.
urlpatterns = [
    path("admin/", admin.site.urls),
    path("django", hello),
]
