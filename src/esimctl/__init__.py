"""esimctl: one command line for every travel eSIM."""

__version__ = "0.1.0"
