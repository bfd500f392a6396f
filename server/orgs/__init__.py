"""Organisation tree (党组织) and members (党员)."""
