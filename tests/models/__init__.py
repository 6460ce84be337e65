"""Contract tests of the generator slots and discriminators (mirrors neuropbr/models/)."""
