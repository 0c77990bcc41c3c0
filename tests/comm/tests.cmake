# Extra CTest entries for the token exchange (comm/alltoall.h). Included by tests/CMakeLists.txt
# (CMAKE_CURRENT_SOURCE_DIR = tests/); test_comm itself (all tests/comm/*.cpp) runs at np 1, 2, 4
# and 8 through sy_mpi_gtest. Emulated nodes are set inside the tests (node = rank / ranks per
# node, and round-robin), so these entries only change the transports:
#   test_comm_ucx_tcp_np{4,8}  the hierarchical exchange with UCX forced onto TCP for the
#                              inter-node stage (UCX_TLS=tcp,self), so it is really exercised
#   test_comm_pml_ucx_np4      MPI itself over UCX/TCP too (the pml flags of MACHINE-NOTES):
#                              flat, hierarchical-over-MPI and hierarchical-over-UCX side by side
#   test_comm_ucx_peer_killed  a rank SIGKILLed mid-exchange: the job must end non-zero within
#                              60 s (tests/comm/ucx_peer_killed.sh checks exit code and time)
#   bench_a2a_np4              `switchyard bench a2a` on 2 emulated nodes x 2, small sizes, two
#                              skews, every algorithm: it checks each row and exits 1 on #wrong
#   bench_a2a_one_rank_defaults     its defaults on one rank, no mpirun
#   bench_a2a_size_rounding_said    a size that is not whole tokens: the size run is said
#   bench_a2a_bad_option_said_once  a bad option at np 3: one message (rank 0's), exit 2
#   bench_a2a_past_host_memory_refused  sizes past host memory at np 2: refused first, exit 2
#   bench_a2a_narrow_rows_counted      --width 1: the per-token bookkeeping counted, exit 2
#   bench_a2a_top_k_past_1024_refused  --top-k 2048: refused, exit 2
#   bench_a2a_ucx_one_segment_size     UCX_TCP_TX_SEG_SIZE alone: the UCX leg still starts
# All carry the labels mpi and test_comm.
if(NOT TARGET test_comm)
  return()
endif()

set(sy_comm_env "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMP_NUM_THREADS=1;OPENBLAS_CORETYPE=Haswell")
set(sy_comm_hier_filter "--gtest_filter=HierExchange.*:UcxFailure.PeerThatLeavesIsNamed")

foreach(np 4 8)
  add_test(NAME test_comm_ucx_tcp_np${np}
    COMMAND ${SY_MPIRUN} -np ${np} $<TARGET_FILE:test_comm> ${sy_comm_hier_filter})
  set_tests_properties(test_comm_ucx_tcp_np${np} PROPERTIES LABELS "mpi;test_comm" TIMEOUT 300
    ENVIRONMENT "${sy_comm_env};UCX_TLS=tcp,self")
endforeach()

add_test(NAME test_comm_pml_ucx_np4
  COMMAND ${SY_MPIRUN} --mca pml ucx --mca pml_ucx_tls any --mca pml_ucx_devices any -np 4
          $<TARGET_FILE:test_comm> "--gtest_filter=HierExchange.*:FlatExchange.*")
set_tests_properties(test_comm_pml_ucx_np4 PROPERTIES LABELS "mpi;test_comm" TIMEOUT 300
  ENVIRONMENT "${sy_comm_env};UCX_TLS=tcp,self")

add_test(NAME test_comm_ucx_peer_killed
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/comm/ucx_peer_killed.sh 60
          ${SY_MPIRUN} -np 4 $<TARGET_FILE:test_comm>
          --gtest_filter=UcxFailure.PeerKilledEndsTheJob)
set_tests_properties(test_comm_ucx_peer_killed PROPERTIES LABELS "mpi;test_comm" TIMEOUT 120
  ENVIRONMENT "${sy_comm_env};UCX_TLS=tcp,self")

if(TARGET switchyard)
  add_test(NAME bench_a2a_np4
    COMMAND ${SY_MPIRUN} -np 4 $<TARGET_FILE:switchyard> bench a2a --ranks-per-node 2
            --min-bytes 64K --max-bytes 256K --width 64 --skew 0,1.5 --iters 3 --warmup 1)
  set_tests_properties(bench_a2a_np4 PROPERTIES LABELS "mpi;test_comm" TIMEOUT 120
    ENVIRONMENT "${sy_comm_env};UCX_TLS=tcp,self")
  # Its defaults run on one rank without mpirun (before: "--top-k=4 must be in [1, experts=2]",
  # the default experts being 2 per rank).
  add_test(NAME bench_a2a_one_rank_defaults
    COMMAND $<TARGET_FILE:switchyard> bench a2a --max-bytes 1M --iters 1 --warmup 0)
  set_tests_properties(bench_a2a_one_rank_defaults PROPERTIES LABELS "mpi;test_comm" TIMEOUT 120
    ENVIRONMENT "${sy_comm_env};UCX_TLS=tcp,self")
  # A size that is not whole tokens of --top-k rows runs another one, and says so (QA: --max-bytes
  # 4 ran 16384 B, shown only in the bytes/rank column). Defaults: top-k 4, rows of 4096 B.
  add_test(NAME bench_a2a_size_rounding_said
    COMMAND bash -c "out=$(\"$@\" 2>&1); rc=$?; echo \"$out\"; n=$(grep -c '4 B asked runs 16384 B' <<<\"$out\"); [ $rc = 0 ] && [ $n = 1 ]"
            bash $<TARGET_FILE:switchyard> bench a2a --min-bytes 4 --max-bytes 4 --iters 1
            --warmup 0)
  set_tests_properties(bench_a2a_size_rounding_said PROPERTIES LABELS "mpi;test_comm"
    TIMEOUT 120 ENVIRONMENT "${sy_comm_env};UCX_TLS=tcp,self")
  # A bad option is said once (by rank 0), not once per rank, and exits 2.
  add_test(NAME bench_a2a_bad_option_said_once
    COMMAND bash -c "out=$(\"$@\" 2>&1); rc=$?; echo \"$out\"; n=$(grep -c 'does not divide the world size 3' <<<\"$out\"); [ $rc = 2 ] && [ $n = 1 ]"
            bash ${SY_MPIRUN} -np 3 $<TARGET_FILE:switchyard> bench a2a --ranks-per-node 2)
  set_tests_properties(bench_a2a_bad_option_said_once PROPERTIES LABELS "mpi;test_comm"
    TIMEOUT 60 ENVIRONMENT "${sy_comm_env}")
  # One UCX segment size given alone sets both (UCX needs RX >= TX): TX 256k alone met UCX's
  # 64 KiB RX and every rank failed ucp_worker_create ("Invalid parameter").
  add_test(NAME bench_a2a_ucx_one_segment_size
    COMMAND ${SY_MPIRUN} -x UCX_TCP_TX_SEG_SIZE -np 4 $<TARGET_FILE:switchyard> bench a2a
            --ranks-per-node 2 --min-bytes 1M --max-bytes 1M --width 64 --iters 2 --warmup 1
            --algos hier --internode ucx)
  set_tests_properties(bench_a2a_ucx_one_segment_size PROPERTIES LABELS "mpi;test_comm"
    TIMEOUT 120 ENVIRONMENT "${sy_comm_env};UCX_TLS=tcp,self;UCX_TCP_TX_SEG_SIZE=256k")
  # Sizes past the ranks' share of host memory are refused before any buffer (the ranks were
  # killed by the kernel's OOM killer, signal 9, no message): exit 2, said once.
  add_test(NAME bench_a2a_past_host_memory_refused
    COMMAND bash -c "out=$(\"$@\" 2>&1); rc=$?; echo \"$out\"; n=$(grep -c 'a rank has (host memory' <<<\"$out\"); [ $rc = 2 ] && [ $n = 1 ]"
            bash ${SY_MPIRUN} -np 2 $<TARGET_FILE:switchyard> bench a2a --min-bytes 100000G
            --max-bytes 100000G)
  set_tests_properties(bench_a2a_past_host_memory_refused PROPERTIES LABELS "mpi;test_comm"
    TIMEOUT 60 ENVIRONMENT "${sy_comm_env}")
  # Narrow rows: the check's own bookkeeping per token (about 200 + 16 K bytes) outweighs the
  # rows; counted, 256 MiB of 4-byte rows is refused under a 3 GB address-space limit (it was
  # taken as 400 MB and failed in std::bad_alloc, exit 1; without the limit it took 3 GB at
  # 64 MiB, QA).
  add_test(NAME bench_a2a_narrow_rows_counted
    COMMAND bash -c "ulimit -v 3000000; out=$(\"$@\" 2>&1); rc=$?; echo \"$out\"; n=$(grep -c 'bookkeeping per token), more than' <<<\"$out\"); [ $rc = 2 ] && [ $n = 1 ]"
            bash ${SY_MPIRUN} -np 2 $<TARGET_FILE:switchyard> bench a2a --ranks-per-node 1
            --iters 1 --warmup 0 --width 1 --min-bytes 256M --max-bytes 256M --algos flat)
  set_tests_properties(bench_a2a_narrow_rows_counted PROPERTIES LABELS "mpi;test_comm"
    TIMEOUT 120 ENVIRONMENT "${sy_comm_env}")
  # --top-k past 1024 is refused: 16 Mi of 16 Mi experts drew each token's experts and laid out
  # the hierarchical exchange for hours (QA); 2048 of 4096 ran here.
  add_test(NAME bench_a2a_top_k_past_1024_refused
    COMMAND bash -c "out=$(\"$@\" 2>&1); rc=$?; echo \"$out\"; n=$(grep -c 'top-k=2048 must be in \\[1, 1024\\]' <<<\"$out\"); [ $rc = 2 ] && [ $n = 1 ]"
            bash ${SY_MPIRUN} -np 2 $<TARGET_FILE:switchyard> bench a2a --experts 4096
            --top-k 2048 --min-bytes 1M --max-bytes 1M --iters 1 --warmup 0)
  set_tests_properties(bench_a2a_top_k_past_1024_refused PROPERTIES LABELS "mpi;test_comm"
    TIMEOUT 120 ENVIRONMENT "${sy_comm_env}")
endif()
