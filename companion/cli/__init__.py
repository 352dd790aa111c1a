"""The ``companion`` command line."""
