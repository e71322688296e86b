# Sourced by scripts/test, scripts/bench and scripts/pgo: installs the Debian packages among its
# arguments that are not installed yet, refreshing the package lists only when an install from
# the current ones fails (a fresh machine's lists may be missing or stale).
install_missing() {
    local pkg missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || {
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    }
}
