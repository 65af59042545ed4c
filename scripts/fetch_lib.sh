# shellcheck shell=bash
# Shared by fetch_stripe_data.sh and fetch_payment_methods.sh (sourced, not run).
#
# Layout while a fetch runs, under $JSON_DIR/.partial/ (kept when a fetch stops, so the next run
# resumes; removed per resource once its file is written):
#   <resource>/list             fingerprint line: which list, page size, API version and key
#   <resource>/ranges           the list's page chains, newest first: "chain gte lt" ("-": no bound)
#   <resource>/c0001/state      one chain's "pages objects cursor has_more"
#   <resource>/c0001/page-00001.jsonl  one object per line, each page written atomically
#   <resource>/c0001/page-00001.needs  the page's embedded lists that have more (none: empty)
#   <resource>/c0001/response   the chain's last answer, before its page is saved
#   <resource>/logged-<n>       the "n/10 of the ranges done" line was logged (no progress bars)
#   payment_methods/done/<cus>.json    one file per customer whose methods are all fetched
#   payment_methods/work/<worker>/     a batch's pages in flight (dropped when a fetch starts)
#   budget.next, budget.lock    the request budget shared by every worker of this fetch
#   budget-<endpoint>.next/.lock       each endpoint's budget (FETCH_ENDPOINT_RATE)
#   first.done                  the payment methods' share of the budget is free (set_first)
#   split/requests, split/<pid>.reply  the page splitter's FIFOs (start_splitter), while it runs
#   requests.log                "status sent-at endpoint" per HTTP attempt (sent-at: epoch
#                               seconds; for a round of several, when its answer came), for
#                               the closing request tally
#   run.lock                    flock'ed by the running fetch; its line says who holds it:
#                               "pid start-ticks epoch-seconds command"
#
# Every worker (a background subshell) checks before each request, and every half second while
# it sleeps, that the fetch which started it still runs: a `kill -9` of the fetch, which no trap
# sees, then stops its workers within a second instead of leaving them to spend the budget and
# hold the lock.

# ---- settings ---------------------------------------------------------------------------------

# FETCH_RATE (requests/s in all; 0 = no budget) and FETCH_ENDPOINT_RATE (per endpoint): their
# defaults and checks are app.client.budget's, read in load_setup
FETCH_CONCURRENCY=${FETCH_CONCURRENCY:-8}    # per-customer payment-method workers
FETCH_RANGES=${FETCH_RANGES:-8}              # page chains one global list runs at once; 1 = one
FETCH_MAX_RETRIES=${FETCH_MAX_RETRIES:-}      # retries of a request (default: the rules)
FETCH_PAGE_LIMIT=${FETCH_PAGE_LIMIT:-100}    # Stripe's maximum; smaller only for tests
FETCH_TIMEOUT=${FETCH_TIMEOUT:-60}           # seconds one request may take in all
# seconds a request may receive nothing before curl gives it up: a request never answered (a
# dropped connection that was never closed, a stuck server) becomes a network error, retried,
# long before FETCH_TIMEOUT
FETCH_STALL_TIMEOUT=${FETCH_STALL_TIMEOUT:-15}
FETCH_BURST=${FETCH_BURST:-3}                # budget slots banked while all workers were busy
FETCH_BATCH=${FETCH_BATCH:-50}               # most requests one curl sends (payment methods)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_ROOT=$(dirname "$SCRIPT_DIR")
# the exit codes every command keeps (EXIT_OK, EXIT_PARTIAL, EXIT_FAILED, EXIT_INTERRUPTED):
# one table, which app/commands/cli.py reads too. A fetch sets nothing aside, so it ends 0, 2 or 130.
# shellcheck source=app/core/exit_codes.env
source "$PROJECT_ROOT/app/core/exit_codes.env"
PYTHON=${PYTHON:-$PROJECT_ROOT/.venv/bin/python}
[[ -x $PYTHON ]] || PYTHON=python3

# While the progress drawer runs (start_progress), log lines go through it: it prints them above
# its bars on a terminal. A line shorter than the pipe's buffer is written at once, so lines of
# workers writing together never interleave.
log() {
  if [[ -n ${PROGRESS_FD:-} ]]; then
    printf 'log\t%s\n' "${*//$'\n'/ }" 1>&"$PROGRESS_FD" 2>/dev/null && return 0
  fi
  printf '%s\n' "$*" >&2
}

# progress KIND TASK [VALUE [UNIT]]: tell the drawer (app.core.progress.follow_feed reads these lines)
# — `count` VALUE more done, `total` how many there are, `done` — and nothing when it is off
progress() {
  [[ -n ${PROGRESS_FD:-} ]] || return 0
  local IFS=$'\t'
  printf '%s\n' "$*" 1>&"$PROGRESS_FD" 2>/dev/null || true
}

# The drawer, scripts/fetch_progress.py, on a pipe of its own (FETCH_PROGRESS=0: none, the log
# lines then go to stderr as they are). It ends when every worker has closed the pipe.
start_progress() {
  [[ ${FETCH_PROGRESS:-1} != 0 ]] || return 0
  exec {PROGRESS_FD}> >(exec "$PYTHON" "$SCRIPT_DIR/fetch_progress.py")
  PROGRESS_PID=$!
}

stop_progress() {  # the fetch's own exit: close its end, give the drawer a moment to draw the end
  [[ -n ${PROGRESS_FD:-} ]] || return 0
  exec {PROGRESS_FD}>&-
  PROGRESS_FD=""
  local waited=0
  while (( waited < 30 )) && kill -0 "$PROGRESS_PID" 2>/dev/null; do
    read -r -t 0.1 -u "$SLEEP_FD" _ || true
    waited=$(( waited + 1 ))
  done
}

# Stripe keys must never reach a terminal or a log. The masking is the Python side's
# (app.core.config.mask_secrets: any key's shape, the configured key whatever its shape,
# database passwords): the key as shown comes with the settings (STRIPE_KEY_MASKED), and a
# message is masked by asking it — on the way to a failure, so one Python start is nothing.
# Should Python not answer, the configured key is hidden whole.
mask() {
  local text=$1 masked
  if masked=$(cd "$PROJECT_ROOT" && "$PYTHON" scripts/list_resources.py --mask <<<"$text" 2>/dev/null); then
    printf '%s' "$masked"
  elif [[ -n ${STRIPE_SECRET_KEY:-} ]]; then
    printf '%s' "${text//"$STRIPE_SECRET_KEY"/***}"
  else
    printf '%s' "$text"
  fi
}

parse_fetch_args() {  # SCRIPT ARGS…: --help prints the script's header comment; --restart
  local script=$1
  shift
  RUN_COMMAND="$script${*:+ $*}"
  RUN_COMMAND=${RUN_COMMAND//[$'\n\t']/ }
  case ${1:-} in
    -h | --help) sed -n '2,/^set -euo/p' "$script" | sed '$d; s/^# \{0,1\}//'; exit "$EXIT_OK" ;;
    --restart) FETCH_RESTART=1 ;;
    "") ;;
    *) log "error: unknown argument '$1' (try --help)"; exit "$EXIT_FAILED" ;;
  esac
}

# ---- processes --------------------------------------------------------------------------------

# The start time (clock ticks since boot) of a process from /proc, or "-": with its pid it names
# one process, even after the pid is reused.
process_start() {  # PID
  local stat re='^.*\) [A-Za-z] ([^ ]+ ){18}([0-9]+)'
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || { printf -- -; return 0; }
  if [[ $stat =~ $re ]]; then printf '%s' "${BASH_REMATCH[2]}"; else printf -- -; fi
}

# Is the process running (a zombie is not: a killed fetch stays one until its parent reaps it)?
# With START (from process_start), is it still the same process? Without /proc: kill -0.
process_alive() {  # PID [START]
  local stat re='^.*\) ([A-Za-z]) ([^ ]+ ){18}([0-9]+)'
  if [[ ! -d /proc/self ]]; then kill -0 "$1" 2>/dev/null; return; fi
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  [[ $stat =~ $re ]] || return 1
  [[ ${BASH_REMATCH[1]} != [ZX] ]] || return 1
  [[ -z ${2:-} || $2 == - || ${BASH_REMATCH[3]} == "$2" ]]
}

clock_time() {  # EPOCH-SECONDS → "10:02:11", with the date when it is not today
  local day today
  printf -v day '%(%Y-%m-%d)T' "$1"
  printf -v today '%(%Y-%m-%d)T' -1
  if [[ $day == "$today" ]]; then printf '%(%H:%M:%S)T' "$1"; else printf '%(%Y-%m-%d %H:%M:%S)T' "$1"; fi
}

now_us() { local t=${EPOCHREALTIME//[.,]/}; printf '%s' "$t"; }

seconds_since() {  # $1 = start in µs → "12.34"
  local d=$(( $(now_us) - $1 ))
  printf '%d.%02d' $((d / 1000000)) $((d % 1000000 / 10000))
}

# Load the Stripe settings and the chosen resources from Python (app.core.config, app.registry), so
# .env files, ENV and the registry are read in one place. Sets STRIPE_*, JSON_DIR, RESOURCE_LINES.
load_setup() {
  local setup
  # shellcheck disable=SC2086  # RESOURCES is a word list on purpose: RESOURCES="customers charges"
  if ! setup=$(cd "$PROJECT_ROOT" && "$PYTHON" scripts/list_resources.py --shell ${RESOURCES:-}); then
    exit "$EXIT_FAILED"
  fi
  eval "$setup"
  # the retry rules are the Python side's (app.client.stripe_api), as are the settings
  FETCH_MAX_RETRIES=${FETCH_MAX_RETRIES:-$RETRIES_DEFAULT}
  [[ $FETCH_MAX_RETRIES =~ ^[0-9]+$ ]] || { log "error: FETCH_MAX_RETRIES must be a number"; exit "$EXIT_FAILED"; }
  [[ -n ${STRIPE_SECRET_KEY:-} ]] || { log "error: STRIPE_SECRET_KEY is not set"; exit "$EXIT_FAILED"; }
  if ! [[ $FETCH_PAGE_LIMIT =~ ^[0-9]+$ ]] || (( FETCH_PAGE_LIMIT < 1 || FETCH_PAGE_LIMIT > 100 )); then
    log "error: FETCH_PAGE_LIMIT must be 1..100"
    exit "$EXIT_FAILED"
  fi
  # FETCH_RATE, FETCH_ENDPOINT_RATE (defaults and checks) and their gaps, BUDGET_GAP_US and
  # ENDPOINT_GAP_US, came with the settings: app.client.budget's rule for every path
  [[ $FETCH_RANGES =~ ^[1-9][0-9]*$ ]] || { log "error: FETCH_RANGES must be a positive number"; exit "$EXIT_FAILED"; }
  [[ $FETCH_TIMEOUT =~ ^[1-9][0-9]*$ && $FETCH_STALL_TIMEOUT =~ ^[1-9][0-9]*$ ]] \
    || { log "error: FETCH_TIMEOUT and FETCH_STALL_TIMEOUT must be whole seconds (1 or more)"; exit "$EXIT_FAILED"; }
  exec {SLEEP_FD}<> <(:)
  # the fetch itself: every worker stops when it is gone ($$ is the same in every subshell)
  LEADER_PID=$$
  LEADER_START=$(process_start "$$")
  # which account the saved pages came from, without keeping the key itself in state files
  # (and which connected account: pages of two accounts never meet in one file)
  KEY_ID=$(printf '%s' "$STRIPE_SECRET_KEY${STRIPE_ACCOUNT:+|$STRIPE_ACCOUNT}" | sha256sum | cut -c1-12)
  OUT_DIR=$JSON_DIR
  WORK_DIR=$OUT_DIR/.partial
  mkdir -p "$WORK_DIR"
  [[ $FETCH_BATCH =~ ^[1-9][0-9]*$ ]] || { log "error: FETCH_BATCH must be a positive number"; exit "$EXIT_FAILED"; }
  curl_features
}

# One curl sends a round of requests over one connection; it needs %{exitcode} in --write-out
# (curl 7.75) and, to pace a round inside the budgets, --rate (7.84): without it, a round holds
# one request while a budget is set (CURL_RATE_OK empty). A round claims its slots at once and
# its requests go at the pace of the slower budget (round_gap), each no earlier than its slots.
# Its slots in all it may use later than they came (a round holds a few requests, or half a
# second of them), so a second can hold a few requests more than the budget in all after one
# that held fewer (at 100/s: 108 at most in the 20,000-customer bench, no 429): a token bucket,
# as Stripe's limiter and the sandbox's are, allows that.
curl_features() {
  local version major minor
  version=$(curl --version 2>/dev/null | head -n 1) || true
  version=${version#curl } version=${version%% *}
  IFS=. read -r major minor _ <<<"$version"
  [[ $major =~ ^[0-9]+$ && $minor =~ ^[0-9]+$ ]] || { log "error: curl not found (or unreadable version '$version')"; exit "$EXIT_FAILED"; }
  if (( major < 7 || (major == 7 && minor < 75) )); then
    log "error: curl $version is too old: the fetch needs curl 7.75 or newer"
    exit "$EXIT_FAILED"
  fi
  CURL_RATE_OK=""
  if (( major > 7 || minor >= 84 )); then CURL_RATE_OK=1; fi
}

# read_lock_holder: HOLDER_PID, HOLDER_START, HOLDER_TIME, HOLDER_COMMAND from run.lock (empty
# when no fetch wrote its line there, or the last one finished and cleared it)
read_lock_holder() {
  HOLDER_PID="" HOLDER_START="" HOLDER_TIME="" HOLDER_COMMAND=""
  { read -r HOLDER_PID HOLDER_START HOLDER_TIME HOLDER_COMMAND <"$WORK_DIR/run.lock"; } 2>/dev/null \
    || true
  [[ $HOLDER_PID =~ ^[0-9]+$ && $HOLDER_TIME =~ ^[0-9]+$ ]] || HOLDER_PID=""
}

holder_text() {  # "pid 1234, started 10:02:11, `scripts/fetch_stripe_data.sh`"
  # shellcheck disable=SC2016  # the backquotes are text: they set the command apart
  printf 'pid %s, started %s, `%s`' "$HOLDER_PID" "$(clock_time "$HOLDER_TIME")" "$HOLDER_COMMAND"
}

lock_users() {  # the pids that hold run.lock open (only this user's processes are visible)
  local fd pid seen=" "
  for fd in /proc/[0-9]*/fd/*; do
    [[ $fd -ef $WORK_DIR/run.lock ]] || continue
    pid=${fd#/proc/} pid=${pid%%/*}
    [[ $pid == "$$" || $seen == *" $pid "* ]] || seen+="$pid "
  done 2>/dev/null
  printf '%s' "${seen:1}"
}

# One fetch at a time per output folder: two would interleave pages in the same state files. A
# holder that is gone (killed) leaves its line and, for a moment, workers that still hold the
# lock: they stop within a second, and this fetch takes over.
take_run_lock() {
  local waited=0 users
  # opened without truncating: the holder's line stays for a fetch that is refused to read
  exec {RUN_LOCK_FD}>>"$WORK_DIR/run.lock"
  while ! flock -n "$RUN_LOCK_FD"; do
    read_lock_holder
    if [[ -n $HOLDER_PID ]] && process_alive "$HOLDER_PID" "$HOLDER_START"; then
      log "error: another fetch ($(holder_text)) is writing $OUT_DIR; wait for it or stop it with \`kill $HOLDER_PID\`"
      exit "$EXIT_FAILED"
    fi
    if (( waited == 0 )) && [[ -n $HOLDER_PID ]]; then
      log "note: the fetch that holds the lock ($(holder_text)) is gone; waiting for its workers to stop"
    fi
    if (( waited >= 100 )); then  # 10 s: more than a worker takes to notice
      users=$(lock_users)
      log "error: another fetch is writing $OUT_DIR: $WORK_DIR/run.lock is held${users:+ by pid(s) $users}${users:+; stop them with \`kill $users\`}"
      exit "$EXIT_FAILED"
    fi
    read -r -t 0.1 -u "$SLEEP_FD" _ || true
    waited=$(( waited + 1 ))
  done
  read_lock_holder
  if [[ -n $HOLDER_PID ]]; then
    log "note: taking over the lock of the fetch ($(holder_text)) that was stopped without finishing"
  fi
  printf '%s %s %s %s\n' "$$" "$LEADER_START" "$EPOCHSECONDS" "$RUN_COMMAND" >"$WORK_DIR/run.lock"
  trap release_run_lock EXIT
  rm -f "$WORK_DIR/abort" "$WORK_DIR/requests.log"
  if [[ ${FETCH_RESTART:-0} == 1 ]]; then
    log "FETCH_RESTART=1: discarding what an interrupted fetch left in $WORK_DIR"
    find "$WORK_DIR" -mindepth 1 -maxdepth 1 ! -name run.lock -exec rm -rf {} +
  fi
  [[ -f $WORK_DIR/run.started ]] || date -u +%Y-%m-%dT%H:%M:%SZ >"$WORK_DIR/run.started"
  touch "$WORK_DIR/completed"
  rm -f "$WORK_DIR"/budget-*
  : >"$WORK_DIR/budget.next"
  : >"$WORK_DIR/requests.log"
  # the key reaches curl on its stdin (a here-string, no file left behind), never on a command
  # line where `ps` would show it
  AUTH_HEADER="Authorization: Bearer $STRIPE_SECRET_KEY"
  request_options
}

release_run_lock() {  # the fetch's own exit, however it ends (subshells do not run this trap)
  : >"$WORK_DIR/run.lock" 2>/dev/null || true
  stop_splitter
  stop_progress
}

on_interrupt() {
  trap - INT TERM
  touch "$WORK_DIR/abort" 2>/dev/null || true
  log "interrupted: the pages fetched so far are kept in $WORK_DIR; run the same command again to resume"
  # shellcheck disable=SC2046  # one pid per word
  kill -- $(jobs -p) 2>/dev/null || true
  exit "$EXIT_INTERRUPTED"
}

finish_run() {
  rm -f "$WORK_DIR/budget.next" "$WORK_DIR/budget.lock" "$WORK_DIR"/budget-*
  local total r429 r5xx net
  total=$(wc -l <"$WORK_DIR/requests.log")
  r429=$(grep -c '^429 ' "$WORK_DIR/requests.log" || true)
  r5xx=$(grep -c '^5' "$WORK_DIR/requests.log" || true)
  net=$(grep -c '^000 ' "$WORK_DIR/requests.log" || true)
  log "requests: $total (429: $r429, 5xx: $r5xx, network errors: $net) in $(seconds_since "$RUN_START") s"
}

# A resource written by a run that was then interrupted is not fetched again by the run that
# resumes it; the list is forgotten once a whole run succeeds.
completed_line() {  # NAME
  printf '%s' "$1 $STRIPE_API_BASE limit=$FETCH_PAGE_LIMIT version=$STRIPE_API_VERSION key=$KEY_ID"
}

was_completed() {  # NAME: written by the interrupted run this one resumes
  grep -qxF -- "$(completed_line "$1")" "$WORK_DIR/completed" && [[ -f $OUT_DIR/$1.json ]]
}

already_fetched() {  # NAME, saying so
  if was_completed "$1"; then
    log "$1: already fetched by the interrupted run started $(cat "$WORK_DIR/run.started"); kept"
    return 0
  fi
  return 1
}

mark_fetched() {  # NAME
  printf '%s\n' "$(completed_line "$1")" >>"$WORK_DIR/completed"
}

run_succeeded() {
  rm -f "$WORK_DIR/completed" "$WORK_DIR/run.started"
}

# ---- failing ----------------------------------------------------------------------------------

# Stop this worker and tell the others: they see $WORK_DIR/abort before their next request.
fatal() {
  local message
  message=$(mask "$*")
  if [[ ! -e $WORK_DIR/abort ]]; then
    log "error: $message"
    printf '%s\n' "$message" >"$WORK_DIR/abort"
  fi
  exit "$EXIT_FAILED"
}

check_abort() {
  if [[ -e $WORK_DIR/abort ]]; then exit "$EXIT_FAILED"; fi
  # the fetch was killed (kill -9 runs no trap): stop instead of going on alone
  process_alive "$LEADER_PID" "$LEADER_START" || exit "$EXIT_INTERRUPTED"
}

# ---- the request budget -----------------------------------------------------------------------

# Sleep without a process per request: `read -t` on a pipe nobody writes to times out. A long
# sleep (a retry's backoff, Retry-After) wakes every half second to check_abort.
pause() {  # seconds, may be fractional
  local whole=${1%%.*} frac=000000 us seconds
  [[ $1 == *.* ]] && frac=${1#*.}000000
  us=$(( 10#${whole:-0} * 1000000 + 10#${frac:0:6} ))
  while (( us > 500000 )); do
    read -r -t 0.5 -u "$SLEEP_FD" _ || true
    check_abort
    us=$(( us - 500000 ))
  done
  printf -v seconds '0.%06d' "$us"
  if (( us > 0 )); then read -r -t "$seconds" -u "$SLEEP_FD" _ || true; fi
}

# pause_until SLOT: sleep until SLOT (µs since the epoch; no sleep when it is past)
pause_until() {
  local wait_us=$(( $1 - ${EPOCHREALTIME//[.,]/} ))
  if (( wait_us > 0 )); then
    pause "$(printf '%d.%06d' $((wait_us / 1000000)) $((wait_us % 1000000)))"
  fi
}

# claim_slots FILE GAP_US N: under FILE's lock (shared by every worker), take the next N send
# slots of that budget, GAP_US apart; SLOT is the first. At most FETCH_BURST unused slots are
# banked while every worker was busy, so the average stays at the rate and no burst exceeds
# FETCH_BURST requests — far inside Stripe's (and the sandbox's) one-second bucket.
claim_slots() {
  local file=$1 gap=$2 n=$3 fd now slot=0 floor
  exec {fd}>>"$file.lock"
  flock "$fd"
  now=${EPOCHREALTIME//[.,]/}
  { read -r slot <"$file"; } 2>/dev/null || true
  floor=$(( now - FETCH_BURST * gap ))
  if (( ${slot:-0} < floor )); then slot=$floor; fi
  printf '%s\n' $(( slot + n * gap )) >"$file"
  exec {fd}>&-
  SLOT=$slot
}

# budget_wait ENDPOINT [N]: wait for the turn of N requests (a round one curl sends at the
# budgets' pace, send_round) to ENDPOINT, a list path with its ids as placeholders
# (`/v1/customers/{customer}/payment_methods`: one endpoint for every customer).
# Every request takes a slot of its endpoint's budget, then, once that slot has come, one of the
# budget in all. In that order: a request held back by its endpoint never holds a slot in all
# that requests to other endpoints could have used.
budget_wait() {
  local endpoint=${1%%\?*} n=${2:-1}
  if (( ENDPOINT_GAP_US > 0 )) && [[ -n $endpoint ]]; then
    claim_slots "$WORK_DIR/budget-${endpoint//[^A-Za-z0-9]/_}.next" "$ENDPOINT_GAP_US" "$n"
    pause_until "$SLOT"
  fi
  if (( BUDGET_GAP_US > 0 )); then
    if [[ -z ${FIRST_ENDPOINT:-} || -e $WORK_DIR/first.done ]]; then
      claim_slots "$WORK_DIR/budget.next" "$BUDGET_GAP_US" "$n"
      pause_until "$SLOT"
    elif [[ $endpoint != "$FIRST_ENDPOINT" ]]; then
      claim_slots "$WORK_DIR/budget.next" "$OTHERS_GAP_US" "$n"
      pause_until "$SLOT"
    fi  # the first endpoint's share of the budget in all is set apart for it
  fi
}

# set_first ENDPOINT: while ENDPOINT's fetch runs (until first_done), its requests keep their
# whole endpoint budget and the other endpoints share the rest of the budget in all. ENDPOINT is
# the payment methods', the fetch's long pole (one request per customer, at 25/s at most):
# sharing 100/s evenly, six lists gave it ~17/s while the others ran, and every such second
# made the whole fetch longer. Nothing changes without a budget in all larger than the
# endpoint's.
set_first() {
  FIRST_ENDPOINT=""
  rm -f "$WORK_DIR/first.done"
  if (( BUDGET_GAP_US > 0 && ENDPOINT_GAP_US > BUDGET_GAP_US )); then
    FIRST_ENDPOINT=$1
    OTHERS_GAP_US=$(awk -v r="$FETCH_RATE" -v e="$FETCH_ENDPOINT_RATE" 'BEGIN { print int(1000000 / (r - e)) }')
  fi
}

first_done() { : >"$WORK_DIR/first.done"; }

# ---- one GET with retries ---------------------------------------------------------------------

header_value() {  # $1 headers file, $2 lower-case name → the last value (redirects add blocks)
  [[ -s $1 ]] || return 0
  awk -v name="$2" '{ sub(/\r$/, "") }
    tolower(substr($0, 1, length(name) + 1)) == name ":" { v = substr($0, length(name) + 2); gsub(/^ +| +$/, "", v) }
    END { print v }' "$1"
}

error_message() {  # Stripe's error body → its message, or the start of whatever came back
  jq -r '.error.message // empty' "$1" 2>/dev/null || head -c 200 "$1"
}

# backoff in seconds for attempt $1 (1-based): 0.5, 1, 2, … capped at 16, with 50–100 % jitter
backoff_seconds() {  # ATTEMPT: drawn between half and all of the rules' ceiling (BACKOFF_MS)
  local last=$(( ${#BACKOFF_MS[@]} - 1 )) n=$(( $1 - 1 ))
  (( n > last )) && n=$last
  local ms=${BACKOFF_MS[n]}
  ms=$(( ms / 2 + RANDOM % (ms / 2 + 1) ))
  printf '%d.%03d' $((ms / 1000)) $((ms % 1000))
}

# judge_failure STATUS OUT WHAT URL CURL_ERROR after an attempt that did not answer 200: fatal
# when no retry can help; 4 for a 404 naming a missing object (the caller decides); 0 with
# REASON set when a retry may (429, 5xx, network errors).
judge_failure() {
  local status=$1 out=$2 what=$3 url=$4
  case $status in
    000) REASON="network error: ${5:0:200}" ;;
    429) REASON="rate limited (429)" ;;
    5??) REASON="server error ($status): $(error_message "$out")" ;;
    409) REASON="conflict (409): $(error_message "$out")" ;;
    401) fatal "$what: authentication failed (401) with key $STRIPE_SECRET_KEY at $STRIPE_API_BASE:" \
               "$(error_message "$out") — check STRIPE_SECRET_KEY (.env.local)" ;;
    403) fatal "$what: permission denied (403) for key $STRIPE_SECRET_KEY: $(error_message "$out")" ;;
    404)
      REASON=$(error_message "$out")
      if [[ $REASON == "Unrecognized request URL"* || -z $REASON ]]; then
        local endpoint=${url#"$STRIPE_API_BASE"}
        fatal "$what: $STRIPE_API_BASE has no endpoint GET ${endpoint%%\?*} (404: $REASON)"
      fi
      return 4 ;;
    *) fatal "$what: HTTP $status from ${url#"$STRIPE_API_BASE"}: $(error_message "$out")" ;;
  esac
}

# retry_wait ATTEMPT SHOULD_RETRY RETRY_AFTER WHAT (after judge_failure): fatal when Stripe says a
# retry would not help (its word beats our guess) or the retries are spent; else WAIT_S, logged.
retry_wait() {
  local attempt=$1 should=$2 retry_after=$3 what=$4 retry=1
  [[ $REASON == "conflict (409)"* ]] && retry=0
  if [[ $should == true ]]; then retry=1; elif [[ $should == false ]]; then retry=0; fi
  if (( ! retry )); then fatal "$what: $REASON (Stripe-Should-Retry: false)"; fi
  if (( attempt > FETCH_MAX_RETRIES )); then
    fatal "$what: giving up after $attempt attempts: $REASON"
  fi
  WAIT_S=$retry_after
  if [[ $WAIT_S =~ ^[0-9]+$ ]]; then
    (( WAIT_S > RETRY_AFTER_MAX_S )) && WAIT_S=$RETRY_AFTER_MAX_S
  else
    WAIT_S=$(backoff_seconds "$attempt")
  fi
  log "$what: $REASON; retry $attempt/$FETCH_MAX_RETRIES in ${WAIT_S}s"
}

# http_get URL OUT WHAT ENDPOINT → 0 with the body in OUT on 200; 4 on "No such …" 404s (the
# caller decides); anything else fatal after the retries it deserves. ENDPOINT (URL's path with
# its ids as placeholders) names the budget the request draws from beside the budget in all.
http_get() {
  local -a ROUND_URLS=("$1") ROUND_OUTS=("$2") ROUND_KEYS=(-) ROUND_WHAT=("$3") ROUND_AGAIN=()
  local -A ATTEMPTS=()
  HTTP_GONE=0
  while true; do
    check_abort
    send_round "$4" 1 : http_gone
    (( ${#ROUND_AGAIN[@]} > 0 )) || break
    round_pause
  done
  if (( HTTP_GONE )); then return 4; fi
}

http_gone() { HTTP_GONE=1; }

# MIRRORED_ACCOUNT: the Stripe account every file of this run belongs to, recorded in each
# .meta.json for the ingest: STRIPE_ACCOUNT when set, else the key's own (GET /v1/account).
learn_account() {
  if [[ -n ${STRIPE_ACCOUNT:-} ]]; then
    MIRRORED_ACCOUNT=$STRIPE_ACCOUNT
    return
  fi
  local out=$WORK_DIR/account.json
  http_get "$STRIPE_API_BASE/v1/account" "$out" account /v1/account \
    || fatal "account: $STRIPE_API_BASE/v1/account answered 404"
  MIRRORED_ACCOUNT=$(jq -r 'if type == "object" then .id // empty else empty end' "$out" 2>/dev/null || true)
  rm -f "$out"
  [[ -n $MIRRORED_ACCOUNT ]] || fatal "account: $STRIPE_API_BASE/v1/account answered no account id"
}

# ---- pages of one list ------------------------------------------------------------------------

# split_page RESPONSE OBJECTS_OUT [ENVELOPES NEEDS_OUT]: a list page's objects, one per line, into
# OBJECTS_OUT; with ENVELOPES (dotted paths of lists embedded in each object, comma-separated),
# the "envelope id last_item_id" of each embedded list that has more into NEEDS_OUT, so
# completing them reads no page again. Sets SPLIT_HEAD: "has_more count last_id", or
# "not-a-list" / "not-json". The fetch's splitter process does it (start_splitter: 3 ms a page
# of 100 invoices, and numbers kept as sent); jq when it is off (FETCH_SPLITTER=jq) or stopped.
split_page() {
  if [[ -n ${SPLIT_FD:-} ]] && split_by_splitter "$@"; then return 0; fi
  SPLIT_HEAD=$(split_page_jq "$@")
}

# save_page RESPONSE DIR PAGES OBJECTS CURSOR ENVELOPES: the next page of the chain in DIR (its
# PAGES + 1st) from RESPONSE, whole: its .needs (with ENVELOPES), its .jsonl, then DIR/state
# counting it, each through a temp file renamed over its final name — by the splitter (no
# process per page), else with jq and mv. Nothing is saved unless the head is a list's that can
# be paged on. Sets SPLIT_HEAD as split_page does.
save_page() {
  local response=$1 dir=$2 pages=$3 objects=$4 cursor=${5:--} envelopes=$6 page has_more count last
  printf -v page '%s/page-%05d' "$dir" $(( pages + 1 ))
  if [[ -n ${SPLIT_FD:-} ]] && split_by_splitter "$response" "$page.jsonl" "$envelopes" \
    "${envelopes:+$page.needs}" "$dir/state" "$pages" "$objects" "$cursor"; then
    return 0
  fi
  SPLIT_HEAD=$(split_page_jq "$response" "$dir/page.tmp" "$envelopes" "${envelopes:+$page.needs}")
  read -r has_more count last <<<"$SPLIT_HEAD"
  [[ $has_more == false || ($has_more == true && $last != -) ]] || return 0
  mv "$dir/page.tmp" "$page.jsonl"
  # the page is on disk before the state says so: a kill in between refetches one page, no more
  [[ $last == - ]] || cursor=$last
  printf '%s %s %s %s\n' $(( pages + 1 )) $(( objects + count )) "$cursor" "$has_more" >"$dir/state.tmp"
  mv "$dir/state.tmp" "$dir/state"
}

# The splitter (scripts/split_pages.py) reads requests from one FIFO; each worker reads its
# answers from a FIFO of its own, opened read-write so that neither side ever blocks on open.
start_splitter() {
  [[ ${FETCH_SPLITTER:-python} != jq ]] || return 0
  local requests=$WORK_DIR/split/requests
  rm -rf "$WORK_DIR/split"
  mkdir -p "$WORK_DIR/split"
  mkfifo "$requests" || { log "note: cannot make a FIFO in $WORK_DIR: pages are split with jq"; return 0; }
  "$PYTHON" "$SCRIPT_DIR/split_pages.py" "$requests" </dev/null &
  SPLIT_PID=$!
  exec {SPLIT_FD}<>"$requests"
}

stop_splitter() {  # its requests FIFO closed: it ends once the workers have let go of it too
  [[ -n ${SPLIT_FD:-} ]] || return 0
  exec {SPLIT_FD}>&-
  SPLIT_FD=""
  rm -rf "$WORK_DIR/split"
}

# split_by_splitter: split_page's arguments, or save_page's request (STATE PAGES OBJECTS CURSOR
# after them) → 0 with SPLIT_HEAD set, 1: use jq instead. A splitter that does not answer within
# FETCH_TIMEOUT is stopped before this worker goes on with jq: a late answer must never write a
# page this worker has moved past.
split_by_splitter() {
  local reply=$WORK_DIR/split/$BASHPID.reply out=$2 needs=${4:-}
  [[ $* != *[$'\t\n']* ]] || return 1
  if [[ ${SPLIT_REPLY_PID:-} != "$BASHPID" ]]; then  # this worker's first page
    rm -f "$reply"
    mkfifo "$reply" 2>/dev/null || return 1
    exec {SPLIT_REPLY_FD}<>"$reply"
    SPLIT_REPLY_PID=$BASHPID
  fi
  if (( $# > 4 )); then
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$reply" "$@" 1>&"$SPLIT_FD" 2>/dev/null || return 1
  else
    # written beside the outputs, then moved: the page's reader never sees half of it
    [[ $out == /dev/null ]] || out=$2.split
    [[ -z $needs ]] || needs=$4.split
    printf '%s\t%s\t%s\t%s\t%s\n' "$reply" "$1" "$out" "${3:-}" "$needs" 1>&"$SPLIT_FD" 2>/dev/null \
      || return 1
  fi
  local waited=0
  until IFS= read -r -t 1 -u "$SPLIT_REPLY_FD" SPLIT_HEAD; do
    waited=$(( waited + 1 ))
    if process_alive "$SPLIT_PID" && (( waited >= FETCH_TIMEOUT )); then
      kill -9 "$SPLIT_PID" 2>/dev/null || true
      while process_alive "$SPLIT_PID"; do read -r -t 0.05 -u "$SLEEP_FD" _ || true; done
    fi
    if ! process_alive "$SPLIT_PID"; then
      log "note: the page splitter stopped answering; this worker splits pages with jq"
      SPLIT_FD=""
      return 1
    fi
  done
  if [[ $SPLIT_HEAD == not-readable* ]]; then return 1; fi
  if (( $# <= 4 )); then
    [[ $out == "$2" ]] || mv -f "$out" "$2"
    [[ -z $needs ]] || mv -f "$needs" "$4"
  fi
}

split_page_jq() {  # split_page with jq: echoes the head line
  local head n=0 line
  { IFS= read -r head && if [[ -n ${4:-} ]]; then
      IFS= read -r n
      while (( n > 0 )) && IFS= read -r line; do printf '%s\n' "$line"; n=$(( n - 1 )); done >"$4"
    fi && cat >"$2"; } < <(jq -c -r --arg envelopes "${3:-}" \
    '. as $root | if .object == "list" and (.data | type) == "array"
     then "\(.has_more) \(.data | length) \(.data[-1].id // "-")",
       (if $envelopes == "" then empty else
         [$envelopes | split(",")[] as $env | ($env | split(".")) as $e
          | $root.data[] | select(getpath($e + ["has_more"]) == true)
          | "\($env) \(.id) \(getpath($e + ["data"]) | .[-1].id // "-")"] as $needs
         | ($needs | length), $needs[] end),
       .data[]
     else "not-a-list" end' "$1" 2>/dev/null)
  printf '%s' "${head:-not-json}"
}

# round_gap ENDPOINT → ROUND_GAP_US: how far apart one curl sends several requests to ENDPOINT
# (0: as fast as it can): the slower of its endpoint budget and its share of the budget in all
# (none for the first endpoint while it runs, the others' share meanwhile; see set_first).
round_gap() {
  local all=$BUDGET_GAP_US
  if [[ -n ${FIRST_ENDPOINT:-} && ! -e $WORK_DIR/first.done ]]; then
    if [[ ${1%%\?*} == "$FIRST_ENDPOINT" ]]; then all=0; else all=$OTHERS_GAP_US; fi
  fi
  ROUND_GAP_US=$ENDPOINT_GAP_US
  if (( all > ROUND_GAP_US )); then ROUND_GAP_US=$all; fi
}

# round_options N AT_ONCE: the curl config lines that send a round of N requests — paced at
# ROUND_GAP_US (curl's --rate, whole milliseconds, never faster than the slots the round
# claimed), or without a budget AT_ONCE at a time (over as many connections; 1: one after
# another over one)
round_options() {
  local gap_ms
  ROUND_OPTIONS=$'no-progress-meter\n'  # and errors shown: `silent` would not hold after `next`
  (( $1 > 1 )) || return 0
  if (( ROUND_GAP_US > 0 )); then
    gap_ms=$(( (ROUND_GAP_US + 999) / 1000 ))
    ROUND_OPTIONS+="rate = \"$(( 3600000 / gap_ms ))/h\""$'\n'
  elif (( $2 > 1 )); then
    ROUND_OPTIONS+=$'parallel\n'"parallel-max = $2"$'\n'
  fi
}

# The config lines every request of a round carries: the key, the pinned version and, with
# STRIPE_ACCOUNT (a connected account to mirror), Stripe-Account as headers — the config goes to
# curl on its stdin, so the key is never on a command line — and one connection's timeouts.
request_options() {
  config_string "$AUTH_HEADER"
  REQUEST_OPTIONS="header = $QUOTED"$'\n'
  config_string "Stripe-Version: $STRIPE_API_VERSION"
  REQUEST_OPTIONS+="header = $QUOTED"$'\n'
  if [[ -n ${STRIPE_ACCOUNT:-} ]]; then
    config_string "Stripe-Account: $STRIPE_ACCOUNT"
    REQUEST_OPTIONS+="header = $QUOTED"$'\n'
  fi
  REQUEST_OPTIONS+=$'globoff\nconnect-timeout = 10\n'"max-time = $FETCH_TIMEOUT"$'\n'
  REQUEST_OPTIONS+=$'speed-limit = 1\n'"speed-time = $FETCH_STALL_TIMEOUT"$'\n'
}

# config_string VALUE: QUOTED, VALUE quoted for a curl config file (no subshell: once a request)
config_string() {
  local v=${1//\\/\\\\}
  QUOTED="\"${v//\"/\\\"}\""
}

# send_round PATH AT_ONCE ON_OK ON_GONE: one round — after budget_wait for all of them, one
# curl sends request i to ROUND_URLS[i] (its body into ROUND_OUTS[i], its headers beside it),
# for every i, over one connection at the budgets' pace (round_options), and says how each went
# as it ended (a line on curl's stderr, which is unbuffered; curl's own messages come there
# too): logged in requests.log; a 200 goes to ON_OK i, a 404 naming a missing object to ON_GONE
# i; anything else is fatal when no retry can help (judge_failure, retry_wait), else counted in
# ATTEMPTS[ROUND_KEYS[i]] and i goes to ROUND_AGAIN, the round waiting ROUND_WAIT_US before the
# next (Retry-After when given, else backoff). ROUND_WHAT[i] names the request in messages. A
# curl that stopped early (killed, out of memory) reported only some requests: the rest are
# network errors, retried like any other.
send_round() {
  local path=${1%%\?*} at_once=$2 on_ok=$3 on_gone=$4 n=${#ROUND_URLS[@]} config="" i idx code
  local exitcode errmsg status sent log_fd answers judged said=""
  local -A seen=()
  ROUND_AGAIN=() ROUND_WAIT_US=0
  budget_wait "$path" "$n"
  round_gap "$path"
  round_options "$n" "$at_once"
  for i in "${!ROUND_URLS[@]}"; do
    (( i == 0 )) || config+=$'next\n'
    config_string "${ROUND_URLS[i]}"
    config+="url = $QUOTED"$'\n'
    config_string "${ROUND_OUTS[i]}"
    config+="output = $QUOTED"$'\n'
    config_string "${ROUND_OUTS[i]}.headers"
    config+="dump-header = $QUOTED"$'\n'"$REQUEST_OPTIONS"
    config+="write-out = \"%{stderr}$i|%{http_code}|%{exitcode}|%{errormsg}\\n\""$'\n'
  done
  sent=$EPOCHREALTIME
  exec {log_fd}>>"$WORK_DIR/requests.log"
  # on a descriptor of its own: nothing ON_OK runs can read the answers' lines by mistake
  exec {answers}< <(curl --config - <<<"$ROUND_OPTIONS$config" 2>&1 >/dev/null)
  while IFS='|' read -r -u "$answers" idx code exitcode errmsg; do
    idx=${idx##*$'\r'}
    if ! [[ $idx =~ ^[0-9]+$ && -n ${ROUND_URLS[idx]:-} && -z ${seen[$idx]:-} ]]; then
      said="$idx${code:+|$code}${exitcode:+|$exitcode}${errmsg:+|$errmsg}"  # curl's own words
      continue
    fi
    seen[$idx]=1
    status=$code
    [[ $exitcode == 0 ]] || status=000
    (( n == 1 )) || sent=$EPOCHREALTIME  # a round of several: when its answer came
    printf '%s %s %s\n' "$status" "$sent" "$path" >&"$log_fd"
    if [[ $status == 200 ]]; then
      ATTEMPTS[${ROUND_KEYS[idx]}]=0
      "$on_ok" "$idx"
      continue
    fi
    judged=0
    judge_failure "$status" "${ROUND_OUTS[idx]}" "${ROUND_WHAT[idx]}" "${ROUND_URLS[idx]}" "$errmsg" \
      || judged=$?
    if (( judged == 4 )); then "$on_gone" "$idx"; continue; fi
    # no answer, no headers (the file may be an earlier attempt's)
    [[ $status == 000 ]] && rm -f "${ROUND_OUTS[idx]}.headers"
    round_retry "$idx" "$(header_value "${ROUND_OUTS[idx]}.headers" stripe-should-retry)" \
      "$(header_value "${ROUND_OUTS[idx]}.headers" retry-after)"
  done
  exec {log_fd}>&- {answers}<&-
  for i in "${!ROUND_URLS[@]}"; do
    [[ -z ${seen[$i]:-} ]] || continue
    printf '000 %s %s\n' "$EPOCHREALTIME" "$path" >>"$WORK_DIR/requests.log"
    REASON="network error: curl stopped: ${said:0:200}"
    round_retry "$i" "" ""
  done
}

round_retry() {  # I SHOULD_RETRY RETRY_AFTER: request I of the round goes again (send_round)
  local key=${ROUND_KEYS[$1]} wait_us
  ATTEMPTS[$key]=$(( ${ATTEMPTS[$key]:-0} + 1 ))
  retry_wait "${ATTEMPTS[$key]}" "$2" "$3" "${ROUND_WHAT[$1]}"
  ROUND_AGAIN+=("$1")
  wait_us=$(seconds_to_us "$WAIT_S")
  if (( wait_us > ROUND_WAIT_US )); then ROUND_WAIT_US=$wait_us; fi
}

round_pause() {  # after send_round: its wait, if any
  if (( ROUND_WAIT_US > 0 )); then
    pause "$(printf '%d.%06d' $((ROUND_WAIT_US / 1000000)) $((ROUND_WAIT_US % 1000000)))"
  fi
}

# fetch_chains NAME PATH QUERY ENVELOPES EMBEDDED AT_ONCE MAX_PAGES CHAIN…: the pages of these
# chains of one list (CHAIN: "number gte lt", a line of the list's ranges, "-" for no bound; its
# pages in $WORK_DIR/NAME/cNNNN/page-*.jsonl), AT_ONCE at a time, each going on from its state;
# as each chain ends, its embedded lists are completed in the background (EMBEDDED as in
# complete_embedded). A round (send_round) sends the next page of every running chain with one
# curl (one request a round under a budget when curl has no --rate): a process per round, not
# per page, and the pages saved by the splitter. MAX_PAGES > 0 stops each chain at that many
# pages; LOG_PAGES=1 logs every 10th page (the list is one chain).
fetch_chains() {
  local name=$1 path=$2 query=$3 envelopes=$4 embedded=$5 at_once=$6 max=$7
  shift 7
  local -a queue=("$@") active=() round=() going=() embedding=()
  local -A filter=() pages=() objects=() cursor=()
  local dir gte lt more p o c i n pid
  local -a ROUND_URLS ROUND_OUTS ROUND_KEYS ROUND_WHAT ROUND_AGAIN
  local -A ATTEMPTS=()
  while true; do
    check_abort
    while (( ${#active[@]} < at_once && ${#queue[@]} > 0 )); do
      read -r i gte lt <<<"${queue[0]}"
      queue=("${queue[@]:1}")
      printf -v dir '%s/c%04d' "$WORK_DIR/$name" "$i"
      filter[$dir]=""
      [[ $gte == - ]] || filter[$dir]="created%5Bgte%5D=$gte"
      [[ $lt == - ]] || filter[$dir]+="${filter[$dir]:+&}created%5Blt%5D=$lt"
      pages[$dir]=0 objects[$dir]=0 cursor[$dir]=- more=true
      [[ -d $dir ]] || mkdir -p "$dir"
      if [[ -f $dir/state ]]; then
        read -r p o c more <"$dir/state"
        pages[$dir]=$p objects[$dir]=$o cursor[$dir]=$c
      fi
      if [[ $more == true ]] && (( max == 0 || pages[$dir] < max )); then
        active+=("$dir")
      else
        chain_ended "$dir"
      fi
    done
    (( ${#active[@]} > 0 )) || break
    round_gap "$path"
    n=${#active[@]}
    if (( ROUND_GAP_US > 0 )) && [[ -z $CURL_RATE_OK ]]; then n=1; fi
    round=("${active[@]:0:n}")
    going=("${active[@]:n}")  # the chains that wait for the next round, ahead of this one's
    ROUND_URLS=() ROUND_OUTS=() ROUND_KEYS=() ROUND_WHAT=()
    for i in "${!round[@]}"; do
      dir=${round[i]}
      ROUND_URLS[i]="$STRIPE_API_BASE$path?limit=$FETCH_PAGE_LIMIT${query:+&$query}${filter[$dir]:+&${filter[$dir]}}"
      [[ ${cursor[$dir]} == - ]] || ROUND_URLS[i]+="&starting_after=${cursor[$dir]}"
      ROUND_OUTS[i]=$dir/response ROUND_KEYS[i]=$dir ROUND_WHAT[i]=$name
    done
    send_round "$path" "$n" chain_page chain_gone
    for i in "${ROUND_AGAIN[@]}"; do going+=("${round[i]}"); done
    active=("${going[@]}")
    round_pause
  done
  for pid in "${embedding[@]}"; do
    wait "$pid" || { check_abort; fatal "$name: completing the embedded lists failed"; }
  done
}

# page_head WHAT URL: has_more, count and last id of the page just split (SPLIT_HEAD) into
# HAS_MORE, COUNT, LAST; fatal unless it is a Stripe list's page that can be paged on
page_head() {
  read -r HAS_MORE COUNT LAST <<<"$SPLIT_HEAD"
  if [[ $HAS_MORE != true && $HAS_MORE != false ]]; then
    fatal "$1: GET ${2#"$STRIPE_API_BASE"} did not answer a Stripe list ($SPLIT_HEAD)"
  fi
  if [[ $HAS_MORE == true && $LAST == - ]]; then
    fatal "$1: GET ${2#"$STRIPE_API_BASE"}: has_more is true on an empty page; cannot paginate"
  fi
}

chain_page() {  # I: the answer of round[I] (in fetch_chains) is its chain's next page
  local dir=${round[$1]} has_more count last
  save_page "$dir/response" "$dir" "${pages[$dir]}" "${objects[$dir]}" "${cursor[$dir]}" "$envelopes"
  page_head "$name" "${ROUND_URLS[$1]}"
  has_more=$HAS_MORE count=$COUNT last=$LAST
  pages[$dir]=$(( pages[$dir] + 1 )) objects[$dir]=$(( objects[$dir] + count ))
  [[ $last == - ]] || cursor[$dir]=$last
  [[ $name == _* ]] || progress count "fetch $name" "$count"
  if [[ ${LOG_PAGES:-0} == 1 && -z ${PROGRESS_FD:-} ]] \
    && { (( pages[$dir] % 10 == 0 )) || [[ $has_more == false && ${pages[$dir]} -gt 1 ]]; }; then
    log "$name: page ${pages[$dir]}, ${objects[$dir]} objects"
  fi
  if [[ $has_more == true ]] && (( max == 0 || pages[$dir] < max )); then
    going+=("$dir")
  else
    chain_ended "$dir"
  fi
}

chain_gone() {  # I: a list's page answered 404 (in fetch_chains)
  fatal "$name: GET $path answered 404: $(error_message "${round[$1]}/response")"
}

# chain_ended DIR (in fetch_chains): its responses go; its embedded lists are completed in the
# background; without the progress drawer, a line at each tenth of the list's chains
chain_ended() {
  local state ended=0 total=${#plan[@]} more
  rm -f "$1/response" "$1/response.headers"
  if [[ -n $embedded && $embedded != - ]]; then
    run_embedded "$name" "$1" "$embedded" &
    embedding+=($!)
  fi
  [[ -z ${PROGRESS_FD:-} ]] && (( max == 0 && total > 1 )) || return 0
  for state in "$WORK_DIR/$name"/c*/state; do
    { read -r _ _ _ more <"$state"; } 2>/dev/null || continue
    if [[ $more == false ]]; then ended=$(( ended + 1 )); fi
  done
  # the first worker to see a tenth reached says so (a file made only if it is not there)
  if (( ended < total && ended * 10 / total > 0 )) \
    && ( set -C; : >"$WORK_DIR/$name/logged-$(( ended * 10 / total ))" ) 2>/dev/null; then
    chain_totals "$WORK_DIR/$name"
    log "$name: $ended/$total ranges done, $PAGES pages, $OBJECTS objects"
  fi
}

run_embedded() {  # NAME DIR EMBEDDED: a chain's embedded lists, counted in DIR/embedded.log
  complete_embedded "$1" "$2" "$3"
  if (( EMBEDDED_DONE > 0 )); then printf '%s\n' "$EMBEDDED_DONE" >>"$2/embedded.log"; fi
}

# A large list is paged by several chains at once, each over its own `created` range, as the
# API path does (app/client/lister.py): the first page is read; when it has more, probes find the
# second of the oldest object, and [oldest, edge) — edge: the second of the first page's last
# object — is cut into ranges `[gte, lt)` on whole seconds, newest first, the oldest open below
# (no gaps, no overlaps). Chain 0 goes on from the first page within its last second
# (`created[gte]=edge&starting_after=<last id>`: the objects of that second not on it). The
# chains' pages in range order are the objects in the order one sequential listing gives them,
# so the file is the same byte for byte; each chain keeps its own state, so a stopped fetch
# resumes every range where it stopped.

# fetch_pages NAME PATH QUERY [EMBEDDED]: every page of one list into $WORK_DIR/NAME/c*/page-*.jsonl,
# FETCH_RANGES chains at once, each chain's embedded lists completed after its pages (EMBEDDED as
# in complete_embedded), resuming what a stopped run left. Two workers share the chains (every
# other range), so one's round is under way while the other reads its answers. Sets PAGES,
# OBJECTS.
fetch_pages() {
  local name=$1 path=$2 query=$3 embedded=${4:--}
  local dir=$WORK_DIR/$1 fingerprint envelopes="" spec line count lists=0 workers=1 w i
  local -a specs=() plan=() share=()
  [[ $embedded == - ]] || IFS=, read -r -a specs <<<"$embedded"
  for spec in "${specs[@]}"; do envelopes+=${envelopes:+,}${spec%%|*}; done
  fingerprint="$STRIPE_API_BASE$path?$query limit=$FETCH_PAGE_LIMIT version=$STRIPE_API_VERSION key=$KEY_ID"
  if [[ -f $dir/list && $(<"$dir/list") == "$fingerprint" ]]; then
    chain_totals "$dir"
    log "$name: resuming after $PAGES pages ($OBJECTS objects already fetched)"
    [[ $name == _* ]] || progress count "fetch $name" "$OBJECTS"
    rm -f "$dir"/c*/embedded.log
  else
    [[ -d $dir ]] && log "$name: earlier partial fetch is for other settings; starting over"
    rm -rf "$dir"
    mkdir -p "$dir"
    printf '%s\n' "$fingerprint" >"$dir/list"
  fi
  [[ -f $dir/ranges ]] || plan_ranges "$name" "$dir" "$path" "$query" "$envelopes"
  mapfile -t plan <"$dir/ranges"
  LOG_PAGES=$(( ${#plan[@]} == 1 ))
  if (( ${#plan[@]} > 1 && FETCH_RANGES > 1 )); then workers=2; fi
  for (( w = 0; w < workers; w++ )); do
    share=()
    for (( i = w; i < ${#plan[@]}; i += workers )); do share+=("${plan[i]}"); done
    check_abort
    fetch_chains "$name" "$path" "$query" "$envelopes" "$embedded" \
      $(( (FETCH_RANGES + workers - 1) / workers )) 0 "${share[@]}" &
  done
  for (( w = 0; w < workers; w++ )); do
    wait -n || { check_abort; fatal "$name: a page chain failed"; }
  done
  check_abort
  chain_totals "$dir"
  for line in "$dir"/c*/embedded.log; do
    [[ -f $line ]] || continue
    while read -r count; do lists=$(( lists + count )); done <"$line"
  done
  if (( lists > 0 )); then
    log "$name: completed $lists embedded lists that had more than their first page"
  fi
}

chain_totals() {  # DIR → PAGES, OBJECTS: the sums over the list's chains
  local state pages objects
  PAGES=0 OBJECTS=0
  for state in "$1"/c*/state; do
    [[ -f $state ]] || continue
    read -r pages objects _ <"$state"
    PAGES=$(( PAGES + pages )) OBJECTS=$(( OBJECTS + objects ))
  done
}

# plan_ranges NAME DIR PATH QUERY ENVELOPES: the list's first page (chain 0), then DIR/ranges —
# one chain when that page is the whole list or FETCH_RANGES=1; else chain 0 within the first
# page's last second, then ranges, as many as the first page's density says the rest fills
# pages, at most 2 × FETCH_RANGES: a chain that ends early finds another range to take, and each
# range costs at most one partial page more than one sequential chain would read.
plan_ranges() {
  local name=$1 dir=$2 path=$3 query=$4 envelopes=$5 has_more count newest edge
  local span n expected seconds i upper lower ranges
  fetch_chains "$name" "$path" "$query" "$envelopes" - 1 1 "0 - -"
  read -r _ count _ has_more <"$dir/c0000/state"
  ranges="0 - -"
  if [[ $has_more == true ]] && (( FETCH_RANGES > 1 )); then
    { read -r newest && read -r edge; } < <(jq -s -r '.[0].created, .[-1].created' "$dir/c0000/page-00001.jsonl")
    [[ $newest =~ ^[0-9]+$ && $edge =~ ^[0-9]+$ ]] \
      || fatal "$name: the first page's objects have no created time ($newest, $edge)"
    oldest_created "$name" "$dir" "$path" "$query" "$edge"
    ranges="0 $edge -"
    if [[ $OLDEST != - ]]; then
      span=$(( edge - OLDEST ))
      seconds=$(( (newest - edge + 1) * FETCH_PAGE_LIMIT ))
      expected=$(( (count * span + seconds - 1) / seconds ))
      n=$(( 2 * FETCH_RANGES ))
      (( expected < n )) && n=$expected
      (( span < n )) && n=$span
      (( n < 1 )) && n=1
      for (( i = 0; i < n; i++ )); do
        upper=$(( edge - span * i / n )) lower=$(( edge - span * (i + 1) / n ))
        if (( i == n - 1 )); then lower=-; fi
        ranges+=$'\n'"$(( i + 1 )) $lower $upper"
      done
      log "$name: first page read; the rest in $n created ranges, $FETCH_RANGES at a time"
    fi
  fi
  printf '%s\n' "$ranges" >"$dir/ranges.tmp"
  mv "$dir/ranges.tmp" "$dir/ranges"
}

# oldest_created NAME DIR PATH QUERY EDGE → OLDEST: a second no later than the oldest object
# created before EDGE, within an eighth of how far back it lies ("-": there is none). The
# probes are one-object pages (`limit=1&created[lt]=…`), sent several at once: 1 hour, 4 hours,
# … ~30 years back, then eight steps across the span where the oldest lies.
oldest_created() {
  local name=$1 dir=$2 path=$3 query=$4 edge=$5 k deepest=-1 low high step point
  local -a spans=() moments=() points=()
  OLDEST=-
  for (( k = 0; k < 10; k++ )); do
    spans+=( $(( 3600 * 4 ** k )) )
    moments+=( $(( edge - 3600 * 4 ** k )) )
  done
  # the first probe says whether there is anything before the edge at all
  probe_before "$name" "$dir" "$path" "$query" "$edge" "${moments[@]}"
  (( FOUND[0] )) || return 0
  for (( k = 0; k < 10; k++ )); do
    if (( FOUND[k + 1] )); then deepest=$k; fi
  done
  if (( deepest < 0 )); then
    low=$(( edge - spans[0] )) high=$edge
  else
    if (( deepest + 1 < 10 )); then low=$(( edge - spans[deepest + 1] )); else low=$(( edge - 2 * spans[deepest] )); fi
    high=$(( edge - spans[deepest] ))
  fi
  step=$(( (high - low) / 8 ))
  (( step < 1 )) && step=1
  for (( point = low + step; point < high; point += step )); do points+=( "$point" ); done
  OLDEST=$low
  (( ${#points[@]} == 0 )) || OLDEST=${points[-1]}
  if (( ${#points[@]} > 0 )); then
    probe_before "$name" "$dir" "$path" "$query" "${points[@]}"
    for (( k = 0; k < ${#points[@]}; k++ )); do
      if (( FOUND[k] )); then OLDEST=$(( points[k] - step )); break; fi
    done
  fi
  (( OLDEST >= 0 )) || OLDEST=0
}

# probe_before NAME DIR PATH QUERY MOMENT…: FOUND[i] is 1 when the list has an object created
# before the i-th MOMENT, else 0; the probes go in rounds of one curl each (send_round), inside
# the budgets, and the splitter reads their answers.
probe_before() {
  local name=$1 dir=$2 path=$3 query=$4 i j
  shift 4
  local -a moments=("$@") asked=() again
  local -a ROUND_URLS ROUND_OUTS ROUND_KEYS ROUND_WHAT ROUND_AGAIN
  local -A ATTEMPTS=()
  FOUND=()
  for i in "${!moments[@]}"; do
    FOUND[i]=0
    if (( moments[i] > 0 )); then asked+=("$i"); fi
  done
  while (( ${#asked[@]} > 0 )); do
    check_abort
    ROUND_URLS=() ROUND_OUTS=() ROUND_KEYS=() ROUND_WHAT=()
    for j in "${!asked[@]}"; do
      i=${asked[j]}
      ROUND_URLS[j]="$STRIPE_API_BASE$path?limit=1${query:+&$query}&created%5Blt%5D=${moments[i]}"
      ROUND_OUTS[j]=$dir/probe-$i ROUND_KEYS[j]=$i ROUND_WHAT[j]="$name (probe)"
    done
    send_round "$path" "${#asked[@]}" probe_answer probe_gone
    again=()
    for j in "${ROUND_AGAIN[@]}"; do again+=("${asked[j]}"); done
    asked=("${again[@]}")
    round_pause
  done
}

probe_answer() {  # J: the answer of probe ROUND_KEYS[J] (in probe_before)
  local i=${ROUND_KEYS[$1]}
  split_page "${ROUND_OUTS[$1]}" /dev/null
  page_head "$name (probe)" "${ROUND_URLS[$1]}"
  if (( COUNT > 0 )); then FOUND[i]=1; fi
  rm -f "${ROUND_OUTS[$1]}" "${ROUND_OUTS[$1]}.headers"
}

probe_gone() {  # J: a probe answered 404 (in probe_before)
  fatal "$name: GET $path?created[lt]=${moments[${ROUND_KEYS[$1]}]} answered 404: $(error_message "${ROUND_OUTS[$1]}")"
}

# ---- lists embedded in objects ----------------------------------------------------------------

# Stripe embeds only the first page of an object's lists (an invoice's lines, a subscription's
# items), with `has_more: true` when there is more. complete_embedded NAME DIR EMBEDDED pages the
# rest of each such list in the pages of DIR (one chain of the list) through its own endpoint
# (EMBEDDED: the `envelope|path` pairs of list_resources.py) and rewrites each saved page with its
# lists whole and `has_more: false`, one page file at a time through a temp file: a stopped run
# resumes with the lists not yet complete. Sets EMBEDDED_DONE (lists completed).
complete_embedded() {
  local name=$1 dir=$2 embedded=$3 page spec
  local -a specs
  EMBEDDED_DONE=0
  [[ -n $embedded && $embedded != - ]] || return 0
  IFS=, read -r -a specs <<<"$embedded"
  for page in "$dir"/page-*.jsonl; do
    [[ -f $page ]] || continue
    # the page's jq run found no list with more (a page saved by an older fetch has no .needs)
    [[ -f ${page%.jsonl}.needs && ! -s ${page%.jsonl}.needs ]] && continue
    for spec in "${specs[@]}"; do
      complete_page_lists "$name" "$dir" "$page" "${spec%%|*}" "${spec#*|}"
    done
  done
}

# complete_page_lists NAME DIR PAGE ENVELOPE ENDPOINT: ENVELOPE is the list's dotted path in each
# object ("lines"), ENDPOINT its GET path with {id} for the object's id (and the budget it draws
# from: one endpoint for every parent).
complete_page_lists() {
  local name=$1 dir=$2 page=$3 envelope=$4 endpoint=$5
  local more=$dir/embedded.jsonl parent cursor path sep url status has_more n=0
  : >"$more"
  while read -r parent cursor; do
    [[ $cursor == - ]] && cursor=""
    path=${endpoint//\{id\}/$parent}
    if [[ $path == *\?* ]]; then sep='&'; else sep='?'; fi
    : >"$dir/items.jsonl"
    has_more=true
    while [[ $has_more == true ]]; do
      url="$STRIPE_API_BASE$path${sep}limit=$FETCH_PAGE_LIMIT${cursor:+&starting_after=$cursor}"
      status=0
      http_get "$url" "$dir/response" "$name ($parent $envelope)" "$endpoint" || status=$?
      if (( status == 4 )); then
        # the object went away after its page was read: keep the first page it came with
        log "$name: $parent: $(error_message "$dir/response"); its $envelope stay a first page"
        continue 2
      fi
      split_page "$dir/response" "$dir/items.page"
      page_head "$name ($parent $envelope)" "$url"
      has_more=$HAS_MORE
      cat "$dir/items.page" >>"$dir/items.jsonl"
      [[ $LAST == - ]] || cursor=$LAST
    done
    jq -c -s --arg id "$parent" '{id: $id, data: .}' "$dir/items.jsonl" >>"$more"
    n=$(( n + 1 ))
  done < <(page_needs "$page" "$envelope")
  if (( n > 0 )); then
    jq -c --arg envelope "$envelope" --slurpfile more "$more" \
      '($envelope | split(".")) as $e | ($more | map({key: .id, value: .data}) | from_entries) as $m
       | if $m[.id] then setpath($e + ["data"]; getpath($e + ["data"]) + $m[.id])
         | setpath($e + ["has_more"]; false) else . end' "$page" >"$page.tmp" \
      || fatal "$name: cannot merge the pages of $envelope into $page"
    # the needs go first: a page without them is read again, never completed twice
    rm -f "${page%.jsonl}.needs"
    mv "$page.tmp" "$page"
    EMBEDDED_DONE=$(( EMBEDDED_DONE + n ))
  fi
  rm -f "$more" "$dir/items.jsonl" "$dir/items.page" "$dir/response" "$dir/response.headers"
}

# page_needs PAGE ENVELOPE → "id last_item_id" of each ENVELOPE list in PAGE that has more
page_needs() {
  local needs=${1%.jsonl}.needs env id last
  if [[ -f $needs ]]; then
    while read -r env id last; do
      if [[ $env == "$2" ]]; then printf '%s %s\n' "$id" "$last"; fi
    done <"$needs"
    return 0
  fi
  jq -r --arg envelope "$2" \
    '($envelope | split(".")) as $e | select(getpath($e + ["has_more"]) == true)
     | "\(.id) \(getpath($e + ["data"]) | .[-1].id // "-")"' "$1"
}

# ---- writing a resource file ------------------------------------------------------------------

# write_list NAME URL_PATH PAGES OBJECTS SECONDS < objects (one per line): the list envelope and
# its .meta.json, each through a temp file and mv, so a reader never sees half a file.
write_list() {
  local name=$1 list_url=$2 pages=$3 objects=$4 seconds=$5
  local final=$OUT_DIR/$name.json tmp=$OUT_DIR/.$name.json.tmp
  local meta=$OUT_DIR/$name.meta.json meta_tmp=$OUT_DIR/.$name.meta.json.tmp
  {
    printf '{"object": "list", "url": "%s", "has_more": false, "data": [\n' "$list_url"
    sed '1!s/^/,/'
    printf ']}\n'
  } >"$tmp"
  # started_at: when the run (or the interrupted run it resumed) began; every object of the file
  # was read after it, so it is the Stripe time the ingest records for their state
  jq -n --arg resource "$name" --arg version "$STRIPE_API_VERSION" --arg base "$STRIPE_API_BASE" \
    --arg account "$MIRRORED_ACCOUNT" \
    --arg url "$list_url" --arg at "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --arg started "$(cat "$WORK_DIR/run.started")" \
    --argjson objects "$objects" --argjson pages "$pages" --argjson seconds "$seconds" \
    '{resource: $resource, account: $account, stripe_version: $version, started_at: $started, fetched_at: $at,
      objects: $objects, pages: $pages, seconds: $seconds, api_base: $base, url: $url}' >"$meta_tmp"
  mv "$tmp" "$final"
  mv "$meta_tmp" "$meta"
}

closing_line() {  # NAME OBJECTS PAGES SECONDS: the resource's last line, its task ended
  local line
  printf -v line '%-16s %8d objects %6d pages %8s s' "$1:" "$2" "$3" "$4"
  log "$line"
  progress "done" "fetch $1"
}

# fetch_resource NAME PATH QUERY [EMBEDDED]: one global list, every page, with the lists embedded in
# its objects completed, into $OUT_DIR/NAME.json: the chains' pages in range order (the chain
# directories' fixed-width numbers sort in that order).
fetch_resource() {
  local name=$1 path=$2 query=$3 embedded=${4:--} start seconds
  start=$(now_us)
  fetch_pages "$name" "$path" "$query" "$embedded"
  seconds=$(seconds_since "$start")
  cat "$WORK_DIR/$name"/c*/page-*.jsonl 2>/dev/null | write_list "$name" "$path" "$PAGES" "$OBJECTS" "$seconds"
  rm -rf "${WORK_DIR:?}/$name"
  mark_fetched "$name"
  closing_line "$name" "$OBJECTS" "$PAGES" "$seconds"
}

# ---- payment methods, per customer ------------------------------------------------------------

# Is this page body the last one? Most customers have one page, and jq costs more CPU than
# the request itself: a Stripe list ends `"has_more": false, "url": "…"}`, which a builtin regex
# sees at the very end of the body. Anything else goes through jq (always right, just slower).
LAST_PAGE_RE='"has_more":[[:space:]]*false,[[:space:]]*"url":[[:space:]]*"[^"]*"[[:space:]]*[}][[:space:]]*$'

# fetch_methods_batch PATH QUERY CUSTOMER…: every page of these customers' payment methods, each
# customer's raw list bodies back to back in done/<cus>.json (parsed once, at merge time). Each
# round (send_round) sends the next request of every customer not done with one curl.
# Customers with another page, or whose request is to be retried, go to the next round.
# Finished customers are moved into done/ after each round: a stopped run fetches them again
# only if they were not.
fetch_methods_batch() {
  local path=$1 query=$2
  shift 2
  local dir=$WORK_DIR/payment_methods
  local work=$dir/work/$BASHPID
  local -a pending=("$@") retrying finished moves
  local -A cursor=() pages=()
  local cus i
  local -a ROUND_URLS ROUND_OUTS ROUND_KEYS ROUND_WHAT ROUND_AGAIN
  local -A ATTEMPTS=()
  mkdir -p "$work"
  while (( ${#pending[@]} > 0 )); do
    check_abort
    ROUND_URLS=() ROUND_OUTS=() ROUND_KEYS=() ROUND_WHAT=()
    for i in "${!pending[@]}"; do
      cus=${pending[i]}
      ROUND_URLS[i]="$STRIPE_API_BASE${path//\{customer\}/$cus}?limit=$FETCH_PAGE_LIMIT${query:+&$query}${cursor[$cus]:+&starting_after=${cursor[$cus]}}"
      ROUND_OUTS[i]=$work/$cus.page ROUND_KEYS[i]=$cus ROUND_WHAT[i]="payment_methods ($cus)"
    done
    retrying=() finished=()
    send_round "$path" 1 methods_page methods_gone
    for i in "${ROUND_AGAIN[@]}"; do retrying+=("${pending[i]}"); done
    if (( ${#finished[@]} > 0 )); then
      moves=()
      for cus in "${finished[@]}"; do
        printf '%s\n' "${pages[$cus]:-0}" >>"$dir/pages.log"
        moves+=("$work/$cus.json")
      done
      mv -t "$dir/done" -- "${moves[@]}" \
        || fatal "payment_methods: cannot move finished customers into $dir/done"
    fi
    pending=("${retrying[@]}")
    round_pause
  done
  rm -rf "$work"
}

methods_page() {  # I: pending[I]'s answer (in fetch_methods_batch), kept; done, or one more page
  local cus=${pending[$1]} body
  pages[$cus]=$(( ${pages[$cus]:-0} + 1 ))
  body=""
  IFS= read -r -d '' body <"$work/$cus.page" || true
  printf '%s' "$body" >>"$work/$cus.json"
  # most customers have one page, which a builtin regex recognises; others go through jq
  if [[ $body =~ $LAST_PAGE_RE ]]; then
    finished+=("$cus")
    return 0
  fi
  split_page "$work/$cus.page" /dev/null
  page_head "${ROUND_WHAT[$1]}" "${ROUND_URLS[$1]}"
  if [[ $HAS_MORE == true ]]; then
    cursor[$cus]=$LAST
    retrying+=("$cus")
  else
    finished+=("$cus")
  fi
}

methods_gone() {  # I: the customer was deleted after the customer list was read: nothing to fetch
  local cus=${pending[$1]}
  log "payment_methods: $cus: $(error_message "$work/$cus.page"); skipped"
  : >>"$work/$cus.json"
  finished+=("$cus")
}

seconds_to_us() {  # "1.500" or "2" → µs
  local whole=${1%%.*} frac=000000
  [[ $1 == *.* ]] && frac=${1#*.}000000
  printf '%d' $(( 10#${whole:-0} * 1000000 + 10#${frac:0:6} ))
}

# fetch_payment_methods PATH QUERY CUSTOMER_IDS_FILE [follow]: every customer's methods,
# FETCH_CONCURRENCY at a time inside the shared budgets, merged into one payment_methods.json in
# the order of CUSTOMER_IDS_FILE. With `follow` (customers are being fetched by this run) the ids
# are taken from the customers' pages as they are written, so the payment methods — the longest
# listing under an endpoint budget — start with the customers' first page; once customers.json
# is written, its ids are the list (and written to CUSTOMER_IDS_FILE).
fetch_payment_methods() {
  local path=$1 query=$2 ids_file=$3 follow=0 dir=$WORK_DIR/payment_methods start total="" n=0
  local running=0 fingerprint="$STRIPE_API_BASE$path?$query version=$STRIPE_API_VERSION key=$KEY_ID"
  [[ ${4:-} == follow ]] && follow=1
  start=$(now_us)
  if [[ -f $dir/state && $(cat "$dir/state") == "$fingerprint" ]]; then
    log "payment_methods: resuming ($(find "$dir/done" -name '*.json' | wc -l) customers already done)"
  else
    rm -rf "$dir"
    mkdir -p "$dir/done"
    printf '%s\n' "$fingerprint" >"$dir/state"
  fi
  rm -rf "$dir/work"
  mkdir -p "$dir/work"
  local -a todo=() listed
  local -A queued=() read_pages=() size_of=()
  local cus batch next=0 page polled=0 pid
  if (( follow )); then
    log "payment_methods: following the customers as they are listed, $FETCH_CONCURRENCY at a time"
  fi
  while true; do
    check_abort
    if (( follow && ${EPOCHREALTIME//[.,]/} - polled > 200000 )); then
      polled=${EPOCHREALTIME//[.,]/}
      if was_completed customers; then
        jq -r '.data[].id' "$OUT_DIR/customers.json" >"$ids_file.tmp" \
          || fatal "payment_methods: cannot read the customer ids of $OUT_DIR/customers.json"
        mv "$ids_file.tmp" "$ids_file"
        follow=0
      elif (( ${#todo[@]} - next < FETCH_CONCURRENCY * FETCH_BATCH )); then
        # pages are written whole (mv); the customers' folder goes once customers.json is written.
        # One page a poll, while fewer customers wait than fill every worker's batch: reading
        # one takes a jq (~50 ms), and reading every page as it came (25 a second) kept this
        # loop from starting batches until the customers were all listed
        for page in "$WORK_DIR"/customers/c*/page-*.jsonl; do
          [[ -f $page && -z ${read_pages[$page]:-} ]] || continue
          read_pages[$page]=1
          mapfile -t listed < <(jq -r '.id' "$page" 2>/dev/null || true)
          for cus in "${listed[@]}"; do queue_customer "$cus"; done
          break
        done
      fi
    fi
    if (( ! follow )) && [[ -z $total ]]; then
      mapfile -t listed <"$ids_file"
      total=${#listed[@]}
      for cus in "${listed[@]}"; do queue_customer "$cus"; done
      progress total "fetch payment_methods" "$total" customers
      # done by an interrupted run (the batches of this one count themselves as they end)
      progress count "fetch payment_methods" $(( total - ${#todo[@]} )) customers
      n=$(( total - ${#todo[@]} + next ))
      log "payment_methods: $total customers, $FETCH_CONCURRENCY at a time"
    fi
    if (( next >= ${#todo[@]} )); then
      (( follow )) || break
      pause 0.1
      continue
    fi
    # a batch per worker when no budget paces them (the fewer curls the better, but short enough
    # that a killed fetch's workers notice within a second); under a budget, half a second of
    # requests at its pace (round_gap: none holds the budget long, and the next worker's batch
    # is ready when one ends); one request per claimed slot with a curl without --rate
    round_gap "$path"
    if (( ROUND_GAP_US == 0 )); then
      batch=$(( (${#todo[@]} - next + FETCH_CONCURRENCY - 1) / FETCH_CONCURRENCY ))
    elif [[ -n $CURL_RATE_OK ]]; then
      batch=$(( 500000 / ROUND_GAP_US ))
    else
      batch=1
    fi
    if (( batch > FETCH_BATCH )); then batch=$FETCH_BATCH; fi
    # no more than are queued: the rest of the batch would be customers not listed yet
    if (( batch > ${#todo[@]} - next )); then batch=$(( ${#todo[@]} - next )); fi
    if (( batch < 1 )); then batch=1; fi
    fetch_methods_batch "$path" "$query" "${todo[@]:next:batch}" &
    size_of[$!]=$batch
    next=$(( next + batch ))
    running=$(( running + 1 ))
    if (( running >= FETCH_CONCURRENCY )); then
      wait -n -p pid || { check_abort; fatal "payment_methods: a worker failed"; }
      running=$(( running - 1 ))
      methods_progress "${size_of[$pid]:-0}"
    fi
  done
  while (( running > 0 )); do
    wait -n -p pid || { check_abort; fatal "payment_methods: a worker failed"; }
    running=$(( running - 1 ))
    methods_progress "${size_of[$pid]:-0}"
  done
  check_abort
  first_done  # its share of the budget in all goes back to the others
  local pages objects seconds
  pages=$(awk '{ s += $1 } END { print s + 0 }' "$dir/pages.log" 2>/dev/null || echo 0)
  # customers in list order, each one's methods together; a deleted customer has no file
  sed "s|^|$dir/done/|; s|\$|.json|" "$ids_file" | while IFS= read -r f; do
    if [[ -f $f ]]; then printf '%s\n' "$f"; fi; done \
    | xargs -r -d '\n' jq -c '.data[]' >"$dir/all.jsonl" \
    || fatal "payment_methods: a saved page is not a Stripe list (jq failed)"
  objects=$(wc -l <"$dir/all.jsonl")
  seconds=$(seconds_since "$start")
  write_list payment_methods "$path" "$pages" "$objects" "$seconds" <"$dir/all.jsonl"
  rm -rf "${WORK_DIR:?}/payment_methods"
  mark_fetched payment_methods
  closing_line payment_methods "$objects" "$pages" "$seconds"
}

queue_customer() {  # CUSTOMER: to fetch, unless queued already or done by an interrupted run
  if [[ -n $1 && -z ${queued[$1]:-} && ! -f $dir/done/$1.json ]]; then
    queued[$1]=1
    todo+=("$1")
  fi
}

methods_progress() {  # SIZE: a batch of fetch_payment_methods ended (its n, total)
  n=$(( n + $1 ))
  progress count "fetch payment_methods" "$1" customers
  [[ -z ${PROGRESS_FD:-} ]] || return 0
  if (( n / 200 > (n - $1) / 200 )) && [[ $n != "$total" ]]; then
    log "payment_methods: $(( n / 200 * 200 ))${total:+/$total} customers"
  fi
}

# run_payment_methods PATH QUERY FROM: FROM says where the customer ids come from — `follow`:
# the customers this run is fetching, as their pages come; `file`: the customers.json an
# interrupted run wrote; `api`: listed from the API here (ids only, nothing else is written).
run_payment_methods() {
  local ids=$WORK_DIR/customer_ids
  case $3 in
    file) jq -r '.data[].id' "$OUT_DIR/customers.json" >"$ids.tmp" ;;
    api)
      fetch_pages _customer_ids /v1/customers ""
      cat "$WORK_DIR/_customer_ids"/c*/page-*.jsonl 2>/dev/null | jq -r '.id' >"$ids.tmp"
      rm -rf "${WORK_DIR:?}/_customer_ids"
      ;;
  esac
  if [[ $3 != follow ]]; then mv "$ids.tmp" "$ids"; fi
  fetch_payment_methods "$1" "$2" "$ids" "$3"
  rm -f "$ids"
}
