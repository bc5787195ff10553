"""Placement of jobs over spokes and time slots: the problem, the MILP, the baselines."""
