"""Sources and loading: where objects come from (JSON exports, the API through `app.client`),
how they become rows (the registry's transformers) and how rows reach PostgreSQL (the bulk
upsert, placeholders, soft deletes, the delete sweep), with rejects set aside."""
