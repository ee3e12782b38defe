from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.hello, name="hello"),
    path("greet/", views.greet, name="greet"),
    path("stream/", views.stream, name="stream"),
    path("file/", views.download, name="file"),
    path("admin/", admin.site.urls),
]
