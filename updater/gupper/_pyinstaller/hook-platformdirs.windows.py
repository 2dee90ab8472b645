"""PyInstaller hook for platformdirs.windows, shipped by Gupper (see ``gupper._pyinstaller``).

platformdirs imports its Windows module on every system PyInstaller analyses (the import sits under
``if sys.platform == "win32"``, which the analysis does not evaluate), and that module uses
``ctypes`` on Windows only: elsewhere ctypes is not bundled for its imports.
"""

from PyInstaller.compat import is_win

excludedimports = [] if is_win else ["ctypes"]
