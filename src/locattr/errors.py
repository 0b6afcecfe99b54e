"""The one exception family locattr raises for problems a user can fix.

Every message says what was wrong and what to do; the CLI and the API show it verbatim, so
no traceback ever reaches a researcher for bad input.
"""


class LocattrError(Exception):
    """Base class: a problem with the user's input, files or environment."""
