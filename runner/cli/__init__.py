"""The command line: the only layer that catches YeRunError and turns it into an exit code."""
