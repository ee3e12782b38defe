"""Fails while being imported: NewHandler must report this traceback."""

raise RuntimeError("this module refuses to import")
