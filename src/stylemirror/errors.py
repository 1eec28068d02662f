class UserError(Exception):
    """A problem with what the user gave us (a file, a flag): the CLI prints its message as
    one line on stderr and exits with status 2, never a traceback."""
