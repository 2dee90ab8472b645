"""Bench app: hello world, the floor of a one-file PyInstaller app."""

print("hello")
