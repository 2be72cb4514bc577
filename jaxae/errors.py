"""The one exception type jaxae raises for bad input."""


class JaxaeError(ValueError):
    """Bad input or state: the message names the problem and how to fix it.

    The CLI prints it as one line on stderr and exits with status 2.
    """
