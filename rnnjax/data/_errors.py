"""The one error of the data package: a data file or value that cannot be used, said in one line."""


class DataError(ValueError):
    """Data that cannot be used (missing, unreadable, malformed, too short); names the problem."""
