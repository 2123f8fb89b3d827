#!/usr/bin/env bash
# Prints the Debian archive apt fetches from: the first `http(s)://…/debian` URL of the
# apt source files given (by default /etc/apt's), for a build from Debian's source
# packages (tests/redis8.sh). Exits 1, printing nothing, when there is none.
# Reads one-line sources, with or without options (`deb [signed-by=…] URL suite …`), and
# deb822 ones (`URIs: URL …`, continued on indented lines; a stanza with `Enabled: no`
# is left out); a `mirror+file:` URL is read through the list it names (its first
# archive). Before (a newcomer's audit of 2026-12-07) only `deb URL` and `URIs: URL` were
# read, and set-up stopped on Debian's own one-line form.
set -euo pipefail
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list)
readable=()
for f in "${files[@]}"; do [ -r "$f" ] && readable+=("$f"); done
[ ${#readable[@]} -gt 0 ] || exit 1
urls=$(awk '
  function flush(   k) { if (!off) for (k = 1; k <= nu; k++) print u[k]; nu = 0; off = 0; inuris = 0 }
  FNR == 1 { flush() }
  /^[ \t]*#/ { next }
  /^[ \t]*$/ { flush(); next }
  /^[ \t]/ { if (inuris) for (i = 1; i <= NF; i++) u[++nu] = $i; next }
  {
    f = tolower($1)
    inuris = 0
    if (f == "deb") {
      flush()
      i = 2
      if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      if (i <= NF) print $i
    } else if (f == "uris:") {
      inuris = 1
      for (i = 2; i <= NF; i++) u[++nu] = $i
    } else if (f == "enabled:" && tolower($2) == "no") {
      off = 1
    }
  }
  END { flush() }' "${readable[@]}")
for url in $urls; do
  candidates=$url
  case $url in
    mirror+file:*)
      list=${url#mirror+file:}
      candidates=$({ grep -Ev '^[[:space:]]*(#|$)' "$list" 2>/dev/null || true; } | awk '{print $1}')
      ;;
  esac
  for c in $candidates; do
    if [[ $c =~ ^https?://.*/debian/?$ ]]; then
      echo "$c"
      exit 0
    fi
  done
done
exit 1
