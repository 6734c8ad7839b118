"""The one error type of the data layer: bad data on disk or in split lists, named precisely."""


class DataError(ValueError):
    """Raised for anything wrong with a dataset; the message names the file (and line/values) at fault."""
