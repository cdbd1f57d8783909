"""Results: what a finished run gives back: evaluation, export and plots."""
