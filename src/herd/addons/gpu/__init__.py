"""GPU facts: what releases ask for, what clusters have, utilization, fit."""
