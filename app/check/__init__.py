"""The check (`make check-db`): the database compared with what Stripe (a fetch's files, or the
API) says, through the same transformers the ingest uses."""
