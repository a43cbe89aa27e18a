class DataSourceError(Exception):
    """A data set's source is missing, corrupt or not in the expected format."""
