"""A module of the first app's own, imported by first.py."""

VALUE = "helper default"
