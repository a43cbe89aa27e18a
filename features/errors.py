class DataSourceError(Exception):
    """A data set's source is missing, corrupt or not in the expected format."""


class FeatureSchemaMismatch(Exception):
    """Served features do not fit the loaded model (e.g. another vector width)."""
