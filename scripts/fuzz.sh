#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of the two pure parsers every client byte
# goes through: the frame reader (fuzz/fuzz_targets/frame_reader.rs) and the command parser with
# the protocol's limits (command_parser.rs). Each target checks its results against an oracle,
# not only that it does not crash.
#
#   scripts/fuzz.sh [RUNS]      each target for RUNS executions (default 100000: CI's short run)
#   scripts/fuzz.sh 10000000    the long run recorded in reports/fuzz/
#   scripts/fuzz.sh cmin        shrink the committed corpus to the inputs that add coverage
#
# Starts from the committed corpus (fuzz/corpus/<target>/) and adds to it what finds new
# coverage; a failing input is left in fuzz/artifacts/<target>/ and the script fails. libFuzzer's
# instrumentation needs unstable compiler flags: with a nightly toolchain installed it builds
# with it and AddressSanitizer; without one, with stable and RUSTC_BOOTSTRAP=1 and no sanitizer
# (the checks in the targets still run). Installs cargo-fuzz from crates.io if it is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
arg=${1:-100000}
targets=(frame_reader command_parser)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
  flags=()
else
  echo "no nightly toolchain: building with stable, RUSTC_BOOTSTRAP=1, no sanitizer" >&2
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
  flags=(--sanitizer none)
fi

for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  if [ "$arg" = cmin ]; then
    "${fuzz[@]}" cmin "${flags[@]}" "$t"
  else
    # -rss_limit_mb: a leak or a runaway allocation fails the run instead of the machine.
    log=target/fuzz-$t.log
    mkdir -p target
    if ! "${fuzz[@]}" run "${flags[@]}" "$t" -- -runs="$arg" -rss_limit_mb=2048 >"$log" 2>&1; then
      tail -n 40 "$log"
      echo "fuzz: $t failed; its input is in fuzz/artifacts/$t/ (whole log: $log)" >&2
      exit 1
    fi
    echo "$t: $(grep -E '^#[0-9]+\s+DONE' "$log" | tail -n 1)"
  fi
done
