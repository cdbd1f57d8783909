"""The mark of an error a user can act on: bad input, a missing or damaged file, a full disk, no GPU.

The CLI shows such an error as its one line, never a traceback; anything else is a bug of ours
and says so. The mark lives here, apart from the modules that raise it, so that catching it
loads nothing: a refused flag is answered without importing torch.
"""


class UserError(Exception):
    """Its message names what was wrong and what to do; it is shown as that one line."""
