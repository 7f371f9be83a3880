"""What every process shares: settings, message schema, status files, history store, paths,
logging, and the small rules (backoff, waiting, one-line errors, symbols, addresses)."""
