#!/usr/bin/env bash
# Fetch every customer's payment methods (GET /v1/customers/{id}/payment_methods, all pages) with
# curl, FETCH_CONCURRENCY customers at a time within the FETCH_RATE budget, merged into one
# $JSON_DIR/payment_methods.json (+ .meta.json). The customer ids are listed from the API here;
# fetch_stripe_data.sh runs the same code with the ids of the customers.json it just wrote.
#
#   scripts/fetch_payment_methods.sh [--restart]
#
# Same environment and exit codes as fetch_stripe_data.sh.
set -euo pipefail

# shellcheck source=scripts/fetch_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/fetch_lib.sh"

parse_fetch_args "${BASH_SOURCE[0]}" "$@"

RUN_START=$(now_us)
RESOURCES=payment_methods
load_setup
take_run_lock
start_progress
start_splitter
trap on_interrupt INT TERM
learn_account
log "fetching payment methods from $STRIPE_API_BASE (Stripe-Version $STRIPE_API_VERSION, key $STRIPE_KEY_MASKED, budget ${FETCH_RATE} req/s, ${FETCH_ENDPOINT_RATE} per endpoint) into $OUT_DIR"

IFS=$'\t' read -r _ pm_path pm_query _ <<<"$RESOURCE_LINES"
[[ $pm_query == - ]] && pm_query=""
failed=0
if ! already_fetched payment_methods; then
  run_payment_methods "$pm_path" "$pm_query" api || failed=1
fi
finish_run
if (( failed )) || [[ -e $WORK_DIR/abort ]]; then
  log "fetch failed: payment_methods.json is untouched; run again to resume"
  exit "$EXIT_FAILED"
fi
run_succeeded
