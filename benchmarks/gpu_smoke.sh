#!/usr/bin/env bash
# Full-profile smoke of every learned method on a GPU: each builds its `full` preset, trains
# one batch per stage on the accelerator (--fast-dev-run) and times anonymize/recover there;
# its JSON record (after the progress output) in gpu_smoke.log, a failure's last lines on stdout.
#   bash benchmarks/gpu_smoke.sh [METHOD ...]     (default: every learned family)
set -u
out=${OUT:-.}/gpu_smoke.log
methods=${*:-medsem_deid medsem_deid_noprior ciagan deepprivacy2 fit_reversible riddle proface_blur keyed_ddim}
python -c "from data import ensure_mema_synth; ensure_mema_synth()" || exit 1
for m in $methods; do
  if python benchmarks/bench_method.py --method "$m" --profile full --accelerator gpu \
       --fast-dev-run --repeats 3 >> "$out" 2> "/tmp/gpu_smoke-$m.log"; then
    echo "OK   $m"
  else
    echo "FAIL $m"; grep -v "it/s\|img/s" "/tmp/gpu_smoke-$m.log" | tail -12
  fi
done
