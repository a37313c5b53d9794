"""Enterprise Edition: a pool of 2 to 12 front ends on Ray (not built yet: see issue 3)."""
