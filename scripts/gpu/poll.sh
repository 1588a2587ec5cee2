#!/usr/bin/env bash
# On the GPU machine: wait up to N seconds for DIR/DONE, packing DIR into $OUT every 30 s,
# so that a call cut short (the session's device time ran out) still brings the latest back.
# With scripts/gpu/INTERRUPT in the working tree (the device time is nearly spent), the
# running pytest is interrupted first: it still writes its results so far.
dir=${1:?dir}; wait=${2:-540}
pack() { tar czf "$OUT/.out.tar.gz" -C "$dir" . 2>/dev/null && mv "$OUT/.out.tar.gz" "$OUT/out.tar.gz"; }
if [ -e "$(dirname "$0")/INTERRUPT" ]; then
  pkill -f full_baseline.sh  # no later stage starts
  pkill -INT -f "pytest_job.py suites"
  for _ in $(seq 120); do pgrep -f "pytest_job.py suites" >/dev/null || break; sleep 1; done
  touch "$dir/DONE"
fi
for i in $(seq "$wait"); do
  [ -e "$dir/DONE" ] && break
  (( i % 30 == 0 )) && pack
  sleep 1
done
pack
tail -n 4 "$dir"/*.log 2>/dev/null | cut -c1-300
ls -la "$OUT"
[ -e "$dir/DONE" ] && echo "$dir/DONE exists"
