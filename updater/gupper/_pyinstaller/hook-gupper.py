"""PyInstaller hook for gupper, shipped by Gupper (see ``gupper._pyinstaller``).

Gupper calls the system through ``ctypes`` on Windows (job objects, console handlers, files opened
for sharing, the native CPU) and on macOS (the native CPU, through sysctl) only, and reads
``platform`` and ``sysconfig`` on Windows only (which CPU the interpreter was built for), and
``plistlib`` (which brings ``xml`` and ``pyexpat``) on macOS only (a bundle's Info.plist). A build
for a system where that code never runs does not bundle them for Gupper's imports; an app that
imports them itself still gets them.
"""

from PyInstaller.compat import is_darwin, is_win

excludedimports = [
    *([] if is_win else ["platform", "sysconfig"]),
    *([] if is_darwin else ["plistlib"]),
    *([] if is_win or is_darwin else ["ctypes"]),
]
