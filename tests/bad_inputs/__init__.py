"""The bad-input battery (issue 13): one file per area, each case one kind of bad input (see _cases.py)."""
