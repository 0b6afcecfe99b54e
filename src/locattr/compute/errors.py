"""The compute layer's error: one line that says what was wrong and what to do."""

from locattr.errors import LocattrError


class LocattrComputeError(LocattrError):
    """A run, checkpoint, path or device that the compute layer cannot use as given."""
