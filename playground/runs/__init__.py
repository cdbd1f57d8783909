"""Runs: the run store, worker processes and their lifecycle, the app's launcher, and sweeps."""
