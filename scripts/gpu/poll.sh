#!/usr/bin/env bash
# On the GPU machine: wait up to N seconds for DIR/DONE, then pack DIR into $OUT.
dir=${1:?dir}; wait=${2:-540}
for _ in $(seq "$wait"); do [ -e "$dir/DONE" ] && break; sleep 1; done
tail -n 4 "$dir"/*.log 2>/dev/null | cut -c1-300
tar czf "$OUT/out.tar.gz" -C "$dir" . 2>/dev/null; ls -la "$OUT"
