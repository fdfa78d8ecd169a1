"""The output layer: JSON envelope, JSON Lines, Rich tables on a terminal, TSV in a pipe."""
