"""The one exception the command line turns into a message instead of a traceback."""


class UserError(Exception):
    """Bad input from the person at the terminal: a missing file, a file that is not a capture, ...

    The CLI prints ``mproxy: error: <message>`` on stderr and exits with status 2.
    """
