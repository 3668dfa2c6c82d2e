"""Reliability suite: faults, kills, poison, fuzz and huge bodies against the real local stack."""
