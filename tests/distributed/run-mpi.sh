#!/bin/sh
# run-mpi.sh — runs a program under mpirun with NP processes for ctest (and by hand):
#   tests/mpi/run-mpi.sh NP PROGRAM [ARGS...]
# Exits 77 (ctest's skip code) with a message when mpirun is absent. Settings for containers:
# running as root is allowed, shared-memory and self transports only, no ssh/rsh agent.
np=$1
shift
if ! command -v mpirun >/dev/null 2>&1; then
    echo "SKIP: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)"
    exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl="${OMPI_MCA_btl:-self,vader}"
export OMPI_MCA_plm_rsh_agent="${OMPI_MCA_plm_rsh_agent:-false}"
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism="${OMPI_MCA_btl_vader_single_copy_mechanism:-none}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# under ASan (make test-asan): LeakSanitizer cannot attribute what Open MPI keeps past
# MPI_Finalize (its components are unloaded by then), so leak checking is off here; the test
# harness still checks each test's array memory
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
exec mpirun --oversubscribe -np "$np" "$@"
