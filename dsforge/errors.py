"""Errors a user can cause and fix.

DsforgeError            base: message + hint, exit code 1
├── UsageError          wrong flags or arguments (exit 2)
├── InputError          a file that cannot be read as data (names file, line, column)
└── ConfigError         dataset_info.json / recipe problems (names the key)

The CLI turns these into one clear message and an exit code; anything else is a bug and keeps
its traceback only when DSFORGE_DEBUG=1.
"""

from __future__ import annotations


class DsforgeError(Exception):
    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(DsforgeError):
    exit_code = 2


class InputError(DsforgeError):
    def __init__(self, message: str, hint: str | None = None, *, path: str | None = None,
                 line: int | None = None, column: int | None = None):
        where = ""
        if path:
            where = path + (f":{line}" if line else "") + (f":{column}" if line and column else "")
        super().__init__(f"{where}: {message}" if where else message, hint)
        self.path, self.line, self.column = path, line, column


class ConfigError(DsforgeError):
    pass
