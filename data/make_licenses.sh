#!/usr/bin/env bash
# The default training text: the licence texts under /usr/share/common-licenses. Every Debian
# installs them (package base-files), so the default run needs no download; they are ~240 KB of
# real English prose. Symlinks (GPL -> GPL-3, ...) are skipped so no text appears twice.
# usage: make_licenses.sh <switchyard binary> <output.h5> [data prepare options, e.g.
#        --tokenizer bpe --vocab-size 2048]
set -euo pipefail
bin=$1 out=$2
shift 2
inputs=()
for f in /usr/share/common-licenses/*; do
  [ -f "$f" ] && [ ! -L "$f" ] && inputs+=("$f")
done
"$bin" data prepare --output "$out" "$@" --input "${inputs[@]}"
