"""Events: the format of every room version, canonical JSON, hashes, signatures
and redaction. Pure: no I/O."""
