# Shared by benchmarks/eeg_tables.sh and benchmarks/eeg_wearable_tables.sh (sourced, not run):
# one thread per process, the data root, DS -> dataset config D and folder F, and
# timed_row NAME ARGS...: one `emodistill benchmark` call into runs/benchmarks/NAME (resumed
# when the folder exists) with its wall time and load appended to $TIMES.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=${R:-../shared/data/eeg_bandpower}
case $DS in
  mahnob) D=mahnob_bandpower; F=MAHNOB-HCI;;
  deap) D=deap_bandpower; F=DEAP;;
  *) echo "DS=$DS: use DS=mahnob or DS=deap" >&2; exit 2;;
esac

timed_row() {
  local name=$1; shift
  local s; s=$(date +%s)
  emodistill benchmark -e eeg_bandpower -d $D --parallel auto --output runs/benchmarks \
    --name $name $( [ -d runs/benchmarks/$name ] && echo --resume ) "$@"
  echo "$name $2 $(( $(date +%s)-s ))s load $(cut -d' ' -f1-3 /proc/loadavg)" >> $TIMES
}
