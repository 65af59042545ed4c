"""The live path: Stripe's events (`make sync`, a cursor in `sync_state`) and signed webhooks
(an inbox) applied through the same loading code as a backfill; `sync_<resource>()` full
loads."""
