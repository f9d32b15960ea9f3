"""Pure: every part of a Stack's status, built from results and observed facts."""
