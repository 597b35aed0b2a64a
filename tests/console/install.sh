#!/usr/bin/env bash
# Owns: what the browser tests of the web console (tests/console) need on a clean machine: Debian's Chromium (the
# browser they drive; playwright-core downloads none), Node.js and npm if missing, and playwright-core at the version
# package-lock.json pins (`npm ci`). Idempotent: what is there already is left as it is.
#
# Usage: install.sh   -> progress on stderr; needs root (or sudo) only when a Debian package is missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { echo "console install: $*" >&2; }

missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  log "installing ${missing[*]} (apt-get)"
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >&2
fi

# npm ci empties node_modules first: skip it when the lock file is the one node_modules was installed from.
stamp="$here/node_modules/.installed-from-package-lock.json"
if ! cmp -s "$here/package-lock.json" "$stamp" 2>/dev/null; then
  log "npm ci"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
  cp "$here/package-lock.json" "$stamp"
fi
log "chromium $(/usr/bin/chromium --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -n 1), node $(node --version), playwright-core $(node -p "require('$here/node_modules/playwright-core/package.json').version")"
