"""Public-health records services. Services never commit; routes, jobs and the CLI do."""
