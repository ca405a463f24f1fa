-- Every arm's book as backtest/book.py wrote it (one file per arm, market and session); the
-- columns are the source's, declared in _landing__sources.yml.
select * from {{ landing_files('agent_book') }}
