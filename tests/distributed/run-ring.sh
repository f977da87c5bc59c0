#!/bin/sh
# run-ring.sh — runs NP copies of a program on this machine as the ring backend's launchers
# would, for ctest and pytest (and by hand):
#   tests/distributed/run-ring.sh [--hostfile | --nccl] NP PROGRAM [ARGS...]
# Default: torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1, a free MASTER_PORT,
# LOCAL_RANK). --hostfile: MLX's (MLX_RANK, and MLX_HOSTFILE naming a JSON file with one
# "127.0.0.1:port" list per rank). --nccl: mlx.launch --backend nccl's (MLX_RANK,
# MLX_WORLD_SIZE, NCCL_HOST_IP=127.0.0.1, a free NCCL_PORT). PONTE_TEST_DIST_BACKEND=ring (nccl
# with --nccl) tells the programs which backend they test. Exits with the first failing rank's status (0 when every rank passed); ranks that
# are still waiting for a failed peer are stopped by PONTE_DIST_TIMEOUT (60 s here).
mode=torchrun
backend=ring
if [ "$1" = "--hostfile" ]; then mode=hostfile; shift; fi
if [ "$1" = "--nccl" ]; then mode=nccl; backend=nccl; shift; fi
np=$1
shift
# np consecutive ports that nothing listens on now (a race with other programs is unlikely)
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
n = int(sys.argv[1])
for _ in range(200):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    base = s.getsockname()[1]
    s.close()
    if base + n > 65535:
        continue
    ok = True
    for p in range(base, base + n):
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", p))
        except OSError:
            ok = False
        t.close()
    if ok:
        print(base)
        break
PY
}
base=$(free_ports "$np")
[ -n "$base" ] || { echo "run-ring.sh: no free ports"; exit 1; }
export PONTE_TEST_DIST_BACKEND=$backend PONTE_DIST_TIMEOUT="${PONTE_DIST_TIMEOUT:-60}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ "$mode" = hostfile ]; then
    {
        printf '['
        r=0
        while [ $r -lt "$np" ]; do
            [ $r -gt 0 ] && printf ', '
            printf '["127.0.0.1:%d"]' $((base + r))
            r=$((r + 1))
        done
        printf ']\n'
    } >"$tmp/hosts.json"
fi
pids=
r=0
while [ $r -lt "$np" ]; do
    if [ "$mode" = hostfile ]; then
        MLX_RANK=$r MLX_HOSTFILE="$tmp/hosts.json" "$@" &
    elif [ "$mode" = nccl ]; then
        MLX_RANK=$r MLX_WORLD_SIZE=$np NCCL_HOST_IP=127.0.0.1 NCCL_PORT=$base "$@" &
    else
        RANK=$r LOCAL_RANK=$r WORLD_SIZE=$np MASTER_ADDR=127.0.0.1 MASTER_PORT=$base "$@" &
    fi
    pids="$pids $!"
    r=$((r + 1))
done
status=0
for p in $pids; do
    wait "$p" || { s=$?; [ $status -eq 0 ] && status=$s; }
done
exit $status
