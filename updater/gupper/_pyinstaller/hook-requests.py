"""PyInstaller hook for requests, shipped by Gupper (see ``gupper._pyinstaller``).

requests imports ``urllib3.contrib.pyopenssl`` and ``cryptography`` only when ``ssl.HAS_SNI`` is
false, inside ``try``/``except ImportError``; a frozen app always carries an ``ssl`` with SNI, so
these imports never run there. Ignoring them for requests (not for the app or other packages)
keeps about 5 MB of cryptography out of every one-file build. ``typing_extensions`` is ignored
where requests imports it for type checkers only.
"""

from gupper._pyinstaller import type_checking_only

excludedimports = ["cryptography", "OpenSSL", "urllib3.contrib.pyopenssl", *type_checking_only("requests")]
