"""`GET /v1/account`: the account the key belongs to, or with a `Stripe-Account` header the
connected account named there — which is all the sandbox knows of Connect: every other endpoint
serves its one store whatever that header says."""

from __future__ import annotations

from app.sandbox.context import Context
from app.sandbox.params import Params
from app.sandbox.store import Obj

# the key's own account: one for every key, as the sandbox has one store (per mode)
SANDBOX_ACCOUNT = "acct_1SandboxAccount0"
# 2025-01-01 00:00 UTC: fixed, so the object is the same on every start
_CREATED = 1735689600


def retrieve_account(ctx: Context, params: Params) -> Obj:
    account_id = ctx.stripe_account or SANDBOX_ACCOUNT
    return {
        "id": account_id,
        "object": "account",
        "business_profile": {"name": "Stripe sandbox", "url": None},
        "business_type": None,
        "capabilities": {"card_payments": "active", "transfers": "active"},
        "charges_enabled": True,
        "controller": {"type": "account"}
        if account_id == SANDBOX_ACCOUNT
        else {
            "type": "application",
            "is_controller": True,
        },
        "country": "US",
        "created": _CREATED,
        "default_currency": "usd",
        "details_submitted": True,
        "email": None,
        "metadata": {},
        "payouts_enabled": True,
        "type": "standard",
    }
