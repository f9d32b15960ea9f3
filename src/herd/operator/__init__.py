"""The operator face: kopf handlers, one keeper per Stack, leader election, status writing."""
