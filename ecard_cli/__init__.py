"""The ``ecard`` command: one entry point that assembles each package's own sub-commands."""
