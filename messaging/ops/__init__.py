"""What the operations dashboard, /api/ops and `herald status` show: every figure read from the
database (``overview``, ``activity``) or from the broker (``broker``), never from a process's counters."""
