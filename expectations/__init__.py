"""Great Expectations 1.x leakage suites built in code, and their runner (DESIGN §5)."""
