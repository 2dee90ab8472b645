"""Pre-find-module-path hooks shipped with Gupper (PyInstaller looks them up in this subfolder of a hook dir)."""
