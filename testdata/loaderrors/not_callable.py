"""Has an 'application' that is not callable."""

application = "not a function"
