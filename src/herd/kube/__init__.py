"""Management-cluster reads and records: values and credential Secrets, grants, ownership."""
