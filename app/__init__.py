"""Mirror Stripe objects into PostgreSQL."""
