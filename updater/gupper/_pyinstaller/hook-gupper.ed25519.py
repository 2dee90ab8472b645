"""PyInstaller hook for gupper.ed25519, shipped by Gupper (see ``gupper._pyinstaller``).

PyNaCl's compiled ``nacl._sodium`` imports cffi's ``_cffi_backend`` from C, where PyInstaller
cannot see it, and the contributed hook for ``nacl`` does not name it (pyinstaller/pyinstaller#3525):
without this, a frozen app fails at ``import nacl`` with "No module named '_cffi_backend'".
"""

hiddenimports = ["_cffi_backend"]
