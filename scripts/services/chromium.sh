# Installs Debian's headless Chromium for the browser tests (tests/browser/) and exports
# HISTODIFF_CHROMIUM. Playwright (in the venv, scripts/env.sh) drives this binary: it never
# downloads a browser build of its own, which this machine could not fetch anyway.
#
# Sourced by scripts/test.sh; idempotent: apt runs only when the binary is absent. Fails
# loudly: the browser tests never skip.

histodiff_chromium_install() {
  command -v chromium >/dev/null && return 0
  echo "chromium.sh: installing chromium from Debian (first time only)" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq || { echo "chromium.sh: apt-get update failed" >&2; return 1; }
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null ||
    { echo "chromium.sh: apt-get install chromium failed" >&2; return 1; }
}

histodiff_chromium_install
HISTODIFF_CHROMIUM="$(command -v chromium)"
"$HISTODIFF_CHROMIUM" --version >&2 || { echo "chromium.sh: $HISTODIFF_CHROMIUM does not run" >&2; return 1; }
export HISTODIFF_CHROMIUM
