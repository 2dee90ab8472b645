"""Bench app: hello world that imports requests (the transport Gupper uses): the floor of an app that does HTTPS."""

import requests

print("hello", requests.__version__)
