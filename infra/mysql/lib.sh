# shellcheck shell=bash
# Helpers shared by infra/mysql/migrate and infra/mysql/seed. Sourced, not run.
# They talk to MySQL 8.0 or MariaDB 10.11 through the command-line client only,
# so the scripts work the same against the local MariaDB and a compose MySQL.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

die() {
  printf '%s: error: %s\n' "${0##*/}" "$*" >&2
  exit 1
}

# Percent-decoding, because a URL's user or password may hold %40 and the like.
url_decode() {
  local s=${1//\\/\\\\}
  printf '%b' "${s//%/\\x}"
}

# MYSQL_URL from the environment, else the one infra/local/up wrote.
resolve_mysql_url() {
  if [[ -z ${MYSQL_URL:-} && -r $REPO_ROOT/.state/env ]]; then
    local line
    while IFS= read -r line; do
      [[ $line == MYSQL_URL=* ]] && MYSQL_URL=${line#MYSQL_URL=}
    done <"$REPO_ROOT/.state/env"
  fi
  [[ -n ${MYSQL_URL:-} ]] || die "MYSQL_URL is not set and .state/env has none (run infra/local/up)"
  parse_mysql_url "$MYSQL_URL"
}

# Splits mysql://user:pass@host:port/db into DB_USER, DB_PASS, DB_HOST, DB_PORT, DB_NAME.
# The password is never echoed back in an error.
parse_mysql_url() {
  local re='^mysql://(([^:@/]*)(:([^@/]*))?@)?([^:@/?]+)(:([0-9]+))?/([^/?]+)(\?.*)?$'
  [[ $1 =~ $re ]] || die "MYSQL_URL must look like mysql://user:pass@host:port/db"
  DB_USER=$(url_decode "${BASH_REMATCH[2]}")
  DB_PASS=$(url_decode "${BASH_REMATCH[4]}")
  DB_HOST=${BASH_REMATCH[5]}
  DB_PORT=${BASH_REMATCH[7]:-3306}
  DB_NAME=$(url_decode "${BASH_REMATCH[8]}")
  # The name is spliced into SQL (CREATE DATABASE), so allow only plain identifiers.
  [[ $DB_NAME =~ ^[A-Za-z0-9_]+$ ]] || die "database name '$DB_NAME' must match [A-Za-z0-9_]+"
  DB_CLIENT=$(command -v mariadb || command -v mysql) ||
    die "neither the mariadb nor the mysql client is installed (run infra/local/setup)"
}

# The client without a default database. TCP even for 'localhost', so the URL means
# the same thing as it does for the Rust code; the password goes via MYSQL_PWD
# to keep it out of ps. Batch mode stops at the first failing statement.
db_client() {
  MYSQL_PWD=$DB_PASS "$DB_CLIENT" --no-defaults --protocol=TCP \
    --host="$DB_HOST" --port="$DB_PORT" --user="$DB_USER" \
    --default-character-set=utf8mb4 --batch --skip-column-names "$@"
}

db_sql() {
  db_client --database="$DB_NAME" "$@"
}

# Creates the database if it is missing. Checked first because CREATE DATABASE IF
# NOT EXISTS still needs the CREATE privilege when the database already exists.
ensure_database() {
  local found
  found=$(db_client -e "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '$DB_NAME'") ||
    die "cannot connect to MySQL at $DB_HOST:$DB_PORT as '$DB_USER'"
  if [[ -z $found ]]; then
    db_client -e "CREATE DATABASE \`$DB_NAME\` CHARACTER SET utf8mb4" ||
      die "database '$DB_NAME' does not exist and cannot be created"
    printf 'created database %s\n' "$DB_NAME"
  fi
}
