"""The Stripe client: requests inside the request budget, list paging (in `created` ranges, in
parallel), retries, and the splitting of list pages (`list_pages`, which the curl fetch uses
too). Uses `app.core` and the registry; knows nothing of the database."""
