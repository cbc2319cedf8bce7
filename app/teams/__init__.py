"""Family-doctor teams of a centre: members with typed roles, the signing rule, capacity."""
