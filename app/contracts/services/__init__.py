"""Contract use cases (rules, no commits). `core` is shared by every signing channel."""
