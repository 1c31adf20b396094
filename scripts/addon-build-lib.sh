# Sourced by the native addons' build scripts (src/**/addon/build.sh): the steps they share.
# Each addon is optional: where it cannot be built its script prints ONE line saying why
# (addon_skip) and exits 0, and the project uses its fallback.
#
# Before sourcing, set ADDON (the name in messages) and ADDON_FALLBACK (what runs without it).

addon_skip() {
  echo "$ADDON: not built, $ADDON_FALLBACK ($1)"
  exit 0
}

# Linux and g++, or skip.
addon_need_toolchain() {
  [ "$(uname -s)" = Linux ] || addon_skip "it needs Linux, this is $(uname -s)"
  command -v g++ >/dev/null 2>&1 || addon_skip "no C++ compiler: apt-get install g++"
}

# Sets NODE_INCLUDE to Node's include folder holding every header named, or skips.
addon_node_include() {
  local dir header found
  for dir in "$(dirname "$(command -v node)")/../include/node" /usr/include/node /usr/local/include/node; do
    found=1
    for header in "$@"; do [ -f "$dir/$header" ] || found=0; done
    if [ "$found" = 1 ]; then
      NODE_INCLUDE="$dir"
      return
    fi
  done
  addon_skip "Node's headers ($*) not found: apt-get install libnode-dev"
}

# addon_apt_install HEADER LOG PACKAGE...: installs the first PACKAGE apt knows (Debian's and
# Ubuntu's names differ) with apt-get when HEADER is missing and we are root (npm 11 does not
# run unapproved install scripts, so make does this), or skips.
addon_apt_install() {
  local header="$1" log="$2" package="$3" started candidate
  shift 2
  [ -f "$header" ] && return
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    addon_skip "$(basename "$header") missing: apt-get install $package (as root)"
  fi
  for candidate in "$@"; do
    if apt-cache show "$candidate" >/dev/null 2>&1; then
      package="$candidate"
      break
    fi
  done
  echo "$ADDON: installing $package with apt-get"
  mkdir -p "$(dirname "$log")"
  # The project's apt-get lock: make test may be installing its own packages meanwhile.
  local apt
  apt="$(dirname "${BASH_SOURCE[0]}")/apt-get-locked.sh"
  started=$(date +%s)
  if ! { "$apt" update && "$apt" install -y "$package"; } >"$log" 2>&1; then
    addon_skip "apt-get install $package failed (see $log)"
  fi
  echo "$ADDON: $package installed in $(($(date +%s) - started)) s"
}

# addon_up_to_date OUT FILE...: true when OUT exists and is newer than every FILE.
addon_up_to_date() {
  local out="$1" f
  shift
  [ -f "$out" ] || return 1
  for f in "$@"; do [ "$out" -nt "$f" ] || return 1; done
}

# addon_package_of FILE: the Debian package that installed FILE, and its version ('?' when unknown).
addon_package_of() {
  local package
  package="$(dpkg-query -S "$1" 2>/dev/null | head -1 | cut -d: -f1)"
  echo "${package:-?} $(dpkg-query -W -f='${Version}' "$package" 2>/dev/null || echo '?')"
}

# addon_compile OUT LOG DESCRIPTION G++-ARGUMENTS...: compiles into OUT.tmp, then moves it into place.
addon_compile() {
  local out="$1" log="$2" description="$3"
  shift 3
  mkdir -p "$(dirname "$out")"
  if g++ "$@" -o "$out.tmp" >"$log" 2>&1; then
    mv "$out.tmp" "$out"
    echo "$ADDON: built $out$description"
  else
    rm -f "$out.tmp"
    addon_skip "compiling the addon failed (see $log)"
  fi
}
