"""An app that cannot load: it fails while its module is imported."""

SETTINGS = {"debug": True}

application = SETTINGS["missing"]
