"""The errors a user can fix, in one family.

Every error the package raises for bad input (a table, a spec, a grid, a run
setting) is an :class:`InputError`, itself a ``ValueError``. The command line maps
these, and only these, to exit status 2 with one message; anything else is a bug
in the package and is reported as such.
"""

from __future__ import annotations

__all__ = ["InputError", "SettingsError", "shorten"]

# A label echoed in a message is cut to this many characters (a 1 MB site name
# must not flood the terminal).
ECHO_LIMIT = 60


class InputError(ValueError):
    """Bad input that the user can fix: the message says where and how.

    Examples
    --------
    Every error a user can fix (data, spec, grid, settings) is one:

    >>> issubclass(sxb.CohortError, sxb.InputError), issubclass(sxb.InputError, ValueError)
    (True, True)
    """


class SettingsError(InputError):
    """An invalid run setting (draws, tune, chains, seed, target_accept, ...).

    Examples
    --------
    >>> try:
    ...     sxb.fit(sxb.load_example(), "base", draws=0)
    ... except sxb.SettingsError as error:
    ...     print("draws" in str(error))
    True
    """


def shorten(value: object, limit: int = ECHO_LIMIT) -> str:
    """``repr`` of a user-given value, cut to ``limit`` characters with its length said.

    Examples
    --------
    >>> shorten("x" * 100, limit=10)
    "'xxxxxxxxx… (100 characters)"
    """
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return repr(text[: limit - 1])[:-1] + f"… ({len(text)} characters)"
