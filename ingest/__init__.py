"""Sources -> raw Parquet: the embedded sample market, bring-your-own files, validation."""
