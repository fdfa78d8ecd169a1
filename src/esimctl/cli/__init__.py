"""The command line: Typer wiring only; the work happens in ``commands/*.run_*``."""
