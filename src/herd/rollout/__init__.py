"""Concurrency: carry out a Stack's plan on its clusters, each supervised, failures contained."""
