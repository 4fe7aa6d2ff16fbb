# Shared by scripts/test and scripts/quickstart: install what is missing on a Debian machine
# and start PostgreSQL and RabbitMQ when they are not running. Sourced, not executed.

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_updated=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    if [ "$apt_updated" = 0 ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Chromium and Node.js run the browser test of the creators' page (tests/browser); a Node.js
# that is already installed (with its npm) is kept. Only the test script needs them.
install_browser_deps() {
    apt_install chromium
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm
}

install_deps() {
    # FFmpeg's libraries and headers (ffmpeg-next links them), bindgen's clang, the ffmpeg CLI
    # (sample and test clips), and the services the tests talk to.
    # espeak-ng speaks test sentences for the speech models; python3-venv builds the model pack.
    apt_install ca-certificates curl git pkg-config clang libclang-dev \
        libavformat-dev libavcodec-dev libavutil-dev libswscale-dev libswresample-dev ffmpeg \
        postgresql postgresql-client rabbitmq-server espeak-ng fonts-dejavu-core python3 python3-venv python3-pip
    if ! command -v cargo >/dev/null 2>&1; then
        if [ -x "$HOME/.cargo/bin/cargo" ]; then
            export PATH="$HOME/.cargo/bin:$PATH"
        else
            log "installing the Rust toolchain with rustup"
            curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
            export PATH="$HOME/.cargo/bin:$PATH"
        fi
    fi
}

# rustfmt and clippy, which a minimal rustup profile leaves out.
ensure_lint_tools() {
    if { ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; } && command -v rustup >/dev/null 2>&1; then
        log "adding rustfmt and clippy to the Rust toolchain"
        rustup component add rustfmt clippy
    fi
}

start_postgres() {
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        log "starting PostgreSQL"
        local version
        version="$(ls /etc/postgresql | sort -V | tail -n1)"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || as_root pg_ctlcluster "$version" main start
        for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
    fi
    # Tests and the quick start connect over TCP as `postgres`. A fresh Debian install wants a
    # password there; give the role one so both set-ups work the same way.
    if psql "postgres://postgres@127.0.0.1:5432/postgres" -qtAc 'SELECT 1' >/dev/null 2>&1; then
        export REELQ_PG_BASE="postgres://postgres@127.0.0.1:5432"
    else
        as_root su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
        export REELQ_PG_BASE="postgres://postgres:postgres@127.0.0.1:5432"
    fi
}

start_rabbitmq() {
    if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
        log "starting RabbitMQ"
        as_root rabbitmq-server -detached
        as_root rabbitmqctl -q await_startup --timeout 120
    fi
}
