"""The one exception type jaxae raises for bad input, and its warning for suspect input."""


class JaxaeError(ValueError):
    """Bad input or state: the message names the problem and how to fix it.

    The CLI prints it as one line on stderr and exits with status 2.
    """


class JaxaeWarning(UserWarning):
    """Input that works but is probably not what was meant (new images far outside the
    training images' range): the message names the problem and how to fix it.

    The CLI prints it as one line on stderr and carries on.
    """
