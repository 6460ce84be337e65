"""Faults survived at process level: untrusted files, signals, data, tracking, concurrent writers."""
