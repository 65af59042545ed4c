"""A local, stateful, Stripe-compatible HTTP server for the eight resources the project mirrors.

`python -m app.sandbox start` runs it in the background; tests use
`app.sandbox.server.run_in_thread()`. See "The local Stripe sandbox" in README.md.
"""
