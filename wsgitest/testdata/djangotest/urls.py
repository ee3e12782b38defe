"""The example site's URLs, and /boom/, whose view raises: Django answers
500 and logs the exception to the django.request logger."""

from django.urls import path
from mysite.urls import urlpatterns as site_urlpatterns


def boom(request):
    raise LookupError("no such thing")


urlpatterns = [path("boom/", boom)] + site_urlpatterns
