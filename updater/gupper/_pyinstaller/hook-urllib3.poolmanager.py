"""PyInstaller hook shipped by Gupper: ``typing_extensions`` is not bundled for this module's
imports of it when they are for type checkers only (see ``gupper._pyinstaller``)."""

from gupper._pyinstaller import hooked_module, type_checking_only

excludedimports = type_checking_only(hooked_module(__file__))
