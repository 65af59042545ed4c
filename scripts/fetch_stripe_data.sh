#!/usr/bin/env bash
# Fetch every resource of the registry from Stripe (or the local sandbox) with curl into
# $JSON_DIR/<resource>.json (Stripe list envelopes) plus <resource>.meta.json, parents first.
#
#   scripts/fetch_stripe_data.sh [--restart]
#   RESOURCES="customers charges" scripts/fetch_stripe_data.sh
#
# Environment (defaults from .env.dev / .env.local via app.core.config): STRIPE_SECRET_KEY,
# STRIPE_API_BASE, STRIPE_API_VERSION (pinned as Stripe-Version), STRIPE_ACCOUNT (a connected
# account, sent as Stripe-Account), JSON_DIR, RESOURCES; FETCH_PROGRESS=0 (no progress drawer:
# the log lines as they are, without bars or rate and ETA lines);
# FETCH_RATE (requests/s for the whole fetch, default 25 = Stripe's test-mode limit; 0 = none),
# FETCH_ENDPOINT_RATE (requests/s to any one endpoint, default 25 = Stripe's default per-endpoint
# limit; 0 = none; with FETCH_RATE=0 none unless set), FETCH_CONCURRENCY (payment-method workers,
# default 8), FETCH_RANGES (page chains one global list runs at once, default 8; 1 = one
# sequential chain), FETCH_MAX_RETRIES (8), FETCH_PAGE_LIMIT (100), FETCH_STALL_TIMEOUT (15:
# seconds a request may go without a byte of its answer before it is retried as a network
# error), FETCH_TIMEOUT (60: seconds one request may take in all), FETCH_BATCH (most
# payment-method requests one curl sends over one connection, 50), FETCH_RESTART=1 (same as
# --restart: drop what a stopped fetch left), FETCH_SPLITTER=jq (pages split by a jq per page
# instead of the fetch's one splitter process, scripts/split_pages.py). Needs curl 7.75 or newer
# (7.84 to send rounds of several requests inside a budget), and jq.
#
# Global lists run concurrently. A list longer than one page is split into `created` ranges
# after its first page (its oldest second found by a few one-object probes), each range paged by
# its own chain, FETCH_RANGES chains at once; the file is the same, byte for byte, as one
# sequential listing writes (its .meta.json counts a few more pages: each range ends with a
# partial one). Payment methods are listed per customer by FETCH_CONCURRENCY workers, starting
# with the customers' first page. Every request takes a turn of its endpoint's budget
# (`/v1/customers/{customer}/payment_methods` is one endpoint for all customers), then one of the
# budget in all: at Stripe's live limits (FETCH_RATE=100) several endpoints run at 25/s each.
# Requests go in rounds, one curl a round: the next page of each chain a worker runs (two
# workers a list), or a batch of a payment-method worker's customers (half a second of them
# under a budget) — under a budget over one connection at the budgets' pace, else at once.
# Exit (the contract of every command, README "Exit codes"; the table is app/core/exit_codes.env):
# 0 all written; 2 a fetch failed or bad usage (earlier files untouched); 130 interrupted (run
# again to resume). A fetch sets nothing aside, so it never ends 1.
set -euo pipefail

# shellcheck source=scripts/fetch_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/fetch_lib.sh"

parse_fetch_args "${BASH_SOURCE[0]}" "$@"

RUN_START=$(now_us)
load_setup
take_run_lock
start_progress
start_splitter
trap on_interrupt INT TERM
learn_account
log "fetching from $STRIPE_API_BASE (Stripe-Version $STRIPE_API_VERSION, key $STRIPE_KEY_MASKED, budget ${FETCH_RATE} req/s, ${FETCH_ENDPOINT_RATE} per endpoint) into $OUT_DIR"

declare -A pid_of=()
pm_path="" pm_query=""
# The payment methods are the longest listing (one request per customer, 25/s at most under
# Stripe's endpoint limit) and the customers' pages feed them: when both are fetched, the other
# lists yield the CPU to them (reading pages with jq costs CPU). They still use whatever budget
# is left; on a machine with CPU to spare this changes nothing.
yield_cpu=0
if [[ $RESOURCE_LINES == *$'\t1\t'* ]] && ! was_completed payment_methods; then
  yield_cpu=1
  # and their requests go first when the budget in all is short
  set_first "$(awk -F'\t' '$4 == 1 { print $2; exit }' <<<"$RESOURCE_LINES")"
fi
while IFS=$'\t' read -r name path query per_customer embedded; do
  [[ $query == - ]] && query=""
  if [[ $per_customer == 1 ]]; then
    pm_path=$path pm_query=$query
    continue
  fi
  if already_fetched "$name"; then continue; fi
  if (( yield_cpu )) && [[ $name != customers ]]; then
    { renice -n 10 -p "$BASHPID" >/dev/null 2>&1 || true; fetch_resource "$name" "$path" "$query" "$embedded"; } &
  else
    fetch_resource "$name" "$path" "$query" "$embedded" &
  fi
  pid_of[$name]=$!
done <<<"$RESOURCE_LINES"

failed=0
if [[ -n $pm_path ]] && ! already_fetched payment_methods; then
  # payment methods are listed per customer: the ids of the customers this run lists, as their
  # pages come (a customers fetch that fails stops them too), else of those already written
  from="api"
  if [[ -n ${pid_of[customers]:-} ]]; then
    from="follow"
  elif was_completed customers; then
    from="file"
  fi
  run_payment_methods "$pm_path" "$pm_query" "$from" &
  pid_of[payment_methods]=$!
fi
for name in "${!pid_of[@]}"; do
  wait "${pid_of[$name]}" || failed=1
done

finish_run
if (( failed )) || [[ -e $WORK_DIR/abort ]]; then
  log "fetch failed: files of the resources not fetched are untouched; run again to resume"
  exit "$EXIT_FAILED"
fi
run_succeeded
