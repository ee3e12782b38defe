"""The Django site of the examples, with a view that raises, for
wsgitest's own tests. It needs examples/djangosite on sys.path."""
