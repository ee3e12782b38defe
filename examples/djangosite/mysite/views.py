from pathlib import Path

from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods

SAMPLE = Path(__file__).resolve().parent / "sample.txt"


@require_GET
def hello(request):
    return HttpResponse("Hello from Django!", content_type="text/plain; charset=utf-8")


@require_http_methods(["GET", "POST"])
def greet(request):
    """A form; CsrfViewMiddleware refuses a POST without the form's token."""
    if request.method == "POST":
        name = request.POST.get("name", "").strip() or "stranger"
        return HttpResponse(f"Hello, {name}!", content_type="text/plain; charset=utf-8")
    return render(request, "greet.html")


@require_GET
def stream(request):
    count = int(request.GET.get("n", 5))
    lines = (f"chunk {i}\n" for i in range(count))
    return StreamingHttpResponse(lines, content_type="text/plain; charset=utf-8")


@require_GET
def download(request):
    # FileResponse closes the file; the server sends it with wsgi.file_wrapper.
    return FileResponse(open(SAMPLE, "rb"), content_type="text/plain; charset=utf-8")
