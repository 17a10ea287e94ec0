# Shared helpers for the scripts in tools/.  Source it; do not run it.
#
#   TL_ROOT      absolute path of the repository
#   TL_RUN       $TL_ROOT/.run, where all runtime state lives (git-ignored)
#
# shellcheck shell=bash disable=SC2034

if [[ -n "${_TL_COMMON_SH:-}" ]]; then
    return 0
fi
_TL_COMMON_SH=1

TL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
TL_RUN="$TL_ROOT/.run"

# Kafka version the runtime class path is pinned to (see tools/kafka/pom.xml).
TL_KAFKA_VERSION=3.9.1
TL_KAFKA_POM="$TL_ROOT/tools/kafka/pom.xml"
TL_KAFKA_LIBS="$TL_RUN/kafka/libs"
TL_KAFKA_LIBS_STAMP="$TL_KAFKA_LIBS/.pom.sha256"

TL_PG_BIN=/usr/lib/postgresql/15/bin

tl_prog="$(basename "$0")"

tl_say() { printf '%s: %s\n' "$tl_prog" "$*"; }
tl_warn() { printf '%s: warning: %s\n' "$tl_prog" "$*" >&2; }
tl_die() {
    printf '%s: error: %s\n' "$tl_prog" "$*" >&2
    exit 1
}

# Run a command as root: directly when we are root, through sudo otherwise.
tl_as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    else
        sudo "$@"
    fi
}

# tl_port_free PORT: true when nothing on this machine is bound to
# 127.0.0.1:PORT (or to the wildcard address on PORT).
tl_port_free() {
    local port=$1 py
    py="$(command -v python3 || true)"
    if [[ -n "$py" ]]; then
        "$py" - "$port" <<'EOF'
import socket, sys
port = int(sys.argv[1])
for addr in ("127.0.0.1", "0.0.0.0"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As servers do: connections of an earlier run still in TIME_WAIT do
    # not make the port busy.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((addr, port))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
sys.exit(0)
EOF
        return
    fi
    # Without python: a port something listens on accepts a connection.
    ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# tl_pick_port: print a free TCP port on 127.0.0.1, chosen at random below
# the kernel's ephemeral range so that outgoing connections never take it.
tl_pick_port() {
    local lo=20000 hi=32000 p i
    for ((i = 0; i < 200; i++)); do
        p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo)))
        if tl_port_free "$p"; then
            echo "$p"
            return 0
        fi
    done
    tl_die "no free TCP port found in $lo..$hi"
}

# tl_port_listening PORT: true when something accepts connections on
# 127.0.0.1:PORT.
tl_port_listening() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# tl_alive PID: true when PID is a live process (a zombie that nobody has
# reaped yet counts as dead).
tl_alive() {
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat:0:1}" != Z ]]
}

# tl_sha256 FILE: print the hex sha256 of FILE.
tl_sha256() {
    sha256sum "$1" | cut -d' ' -f1
}
