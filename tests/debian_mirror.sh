#!/usr/bin/env bash
# Prints the Debian archive apt fetches from: the first `…/debian` URL of the apt source
# files given (by default /etc/apt's), for a build from Debian's source packages
# (tests/redis8.sh). Exits 1, printing nothing, when there is none.
# Reads one-line sources, with or without options (`deb [signed-by=…] URL suite …`), and
# deb822 ones (`URIs: URL …`); a `mirror+file:` URL is read through the list it names
# (its first archive). Before (a newcomer's audit of 2026-12-07) only `deb URL` and
# `URIs: URL` were read, and set-up stopped on Debian's own one-line form.
set -euo pipefail
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list)
urls=$({ cat "${files[@]}" 2>/dev/null || true; } | awk '
  $1 == "URIs:" { for (i = 2; i <= NF; i++) print $i; next }
  $1 == "deb" {
    i = 2
    if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
    if (i <= NF) print $i
  }')
for url in $urls; do
  candidates=$url
  case $url in
    mirror+file:*)
      list=${url#mirror+file:}
      candidates=$({ grep -Ev '^[[:space:]]*(#|$)' "$list" 2>/dev/null || true; } | awk '{print $1}')
      ;;
  esac
  for c in $candidates; do
    if [[ $c =~ ^[a-z]+://.*/debian/?$ ]]; then
      echo "$c"
      exit 0
    fi
  done
done
exit 1
