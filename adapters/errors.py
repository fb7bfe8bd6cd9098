"""The one exception type for bad input data.

Every reader, builder and split function raises DataError when the input is
unusable. Its message is meant for the user as it stands: it names the file
(and line number or key) and says what is wrong, so the CLI can print it and
exit with status 2 without a traceback.
"""


class DataError(ValueError):
    """Input data (a file, a folder, a config value about data) is unusable."""
