#!/usr/bin/env bash
# One entry point for people and CI:
#   ./run.sh demo   set up and run the server on SQLite with demo data (http://127.0.0.1:8080)
#   ./run.sh test   set up everything the tests need (packages, PostgreSQL, Redis, Chromium) and run them all
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY="$VENV/bin/python"

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root for: $*" >&2; return 1; fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

python_env() {
  if [ ! -x "$PY" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$(sha1sum pyproject.toml | cut -c1-12)-$1"
  if [ ! -f "$stamp" ]; then
    log "installing Python packages ($1)"
    local target="."
    [ "$1" = test ] && target=".[test]"
    # Quiet unless something fails: then the whole pip log is shown.
    if ! { "$PY" -m pip install -q --upgrade pip && "$PY" -m pip install -q -e "$target"; } >"$VENV/pip.log" 2>&1; then
      cat "$VENV/pip.log" >&2
      exit 1
    fi
    touch "$stamp"
  fi
}

start_postgres() {
  if ! command -v pg_ctlcluster >/dev/null; then apt_install postgresql; fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting PostgreSQL"
    local ver; ver=$(ls /etc/postgresql | sort -V | tail -1)
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  if [ -z "${TEST_POSTGRES_URL:-}" ]; then
    if psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; then
      export TEST_POSTGRES_URL="postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    else
      # A fresh Debian install asks for passwords over TCP: give the test role one.
      log "preparing PostgreSQL role and database for tests"
      as_root su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
      as_root su postgres -c "psql -Atc \"select 1 from pg_database where datname='test'\" | grep -q 1 || createdb test"
      export TEST_POSTGRES_URL="postgresql+asyncpg://postgres:postgres@127.0.0.1:5432/test"
    fi
  fi
}

start_redis() {
  if ! command -v redis-server >/dev/null; then apt_install redis-server; fi
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    log "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 1 20); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.5; done
  fi
  export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
}

case "${1:-}" in
  demo)
    apt_install espeak-ng  # the telephone's spoken prompts (SIP_LISTEN)
    python_env app
    shift
    exec "$VENV/bin/mediation" serve --demo "$@"
    ;;
  test)
    apt_install chromium firefox-esr pulseaudio fonts-noto-cjk poppler-utils postgresql redis-server coturn iproute2 nftables nginx \
      espeak-ng sip-tester
    start_postgres
    start_redis
    python_env test
    shift
    log "checking the dependency rules (import-linter contracts in pyproject.toml)"
    "$VENV/bin/lint-imports" --no-cache >/dev/null || "$VENV/bin/lint-imports" --no-cache
    set +e
    if [ $# -gt 0 ]; then
      log "running tests: $*"
      "$PY" -m pytest -q -p no:cacheprovider --durations=30 "$@"
      rc=$?
    else
      # Two parts. The in-process suites (HTTP, pages, database, PDF, fuzzing) are CPU-bound and
      # independent: two workers, each with its own PostgreSQL database and SQLite template
      # (tests/conftest.py). The media suites (aiortc peers, browsers, the network lab, Redis
      # clusters) measure timing and run alone, one test at a time. Every directory not named as
      # in-process runs in the second part, so a new one is never left out.
      inproc=(tests/api tests/archive tests/outcome tests/procedure tests/ops tests/fuzz)
      ignore=(); for d in "${inproc[@]}"; do ignore+=("--ignore=$d"); done
      log "running the test suite, part 1 of 2: in-process suites on two workers"
      "$PY" -m pytest -q -p no:cacheprovider --durations=20 -n 2 "${inproc[@]}"
      rc1=$?
      log "running the test suite, part 2 of 2: media, browsers and the network lab, one at a time"
      "$PY" -m pytest -q -p no:cacheprovider --durations=30 tests "${ignore[@]}"
      rc2=$?
      # pytest's 5 means "no tests collected": that is a failure here, not a pass.
      rc=$(( rc1 != 0 ? rc1 : rc2 ))
    fi
    set -e
    exit $rc
    ;;
  *)
    echo "usage: $0 demo [--host H] [--port P] | test [pytest args]" >&2
    exit 2
    ;;
esac
