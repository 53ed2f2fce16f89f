#!/usr/bin/env bash
# Whole-machine comparison on the 2-core CPU: whole DEAP LOSO table (32 folds x 4 seeds), unimodal:
# the parallel path with 2 and 1 intra-op threads vs the sequential path as 2 processes x 1
# thread (seeds split 2 + 2), end to end through the CLI. Results: benchmarks/parallel.md.
set -u
cd "$(dirname "$0")/.."   # repository root; run with the project's venv active
C="-e deap_eeg -d deap_bandpower -m unimodal dataset.root=../shared/data/eeg_bandpower/DEAP train.progress_bar=false"
O=${TMPDIR:-/tmp}/parallel_whole_machine; L=$O.logs; mkdir -p $L
for r in 1 2; do
  rm -rf $O; s=$(date +%s.%N)
  OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 emodistill benchmark $C --seeds 1111-1114 --parallel auto --output $O --name par2t > $L/par2t_$r.log 2>&1
  e=$(date +%s.%N); echo "round $r parallel 2 threads: $(echo "$e - $s" | bc) s"
  rm -rf $O; s=$(date +%s.%N)
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 emodistill benchmark $C --seeds 1111-1114 --parallel auto --output $O --name par1t > $L/par1t_$r.log 2>&1
  e=$(date +%s.%N); echo "round $r parallel 1 thread: $(echo "$e - $s" | bc) s"
  rm -rf $O; s=$(date +%s.%N)
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 emodistill benchmark $C --seeds 1111-1112 --parallel off --output $O --name seqA > $L/seqA_$r.log 2>&1 &
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 emodistill benchmark $C --seeds 1113-1114 --parallel off --output $O --name seqB > $L/seqB_$r.log 2>&1 &
  wait
  e=$(date +%s.%N); echo "round $r sequential, 2 processes x 1 thread (seeds 2+2): $(echo "$e - $s" | bc) s"
  uptime
done
