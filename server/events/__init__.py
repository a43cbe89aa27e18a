"""The event API's domain: events checked, then written to the event log."""
