"""Club statuses: tier ladders, qualification counters, upgrades and period-end evaluation."""
