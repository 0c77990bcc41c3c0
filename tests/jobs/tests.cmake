# The job scripts of issue 14 (jobs/): tests that need neither a GPU nor a cluster.
#   jobs_gpu_compare_metrics  jobs/gpu_compare_metrics.py, gpu_check.sh stage d's verdict, on
#                             hand-made metrics.jsonl files (passes within tolerance, fails
#                             outside it, on a missing step, a NaN, a stray val_loss; with
#                             --strict-steps passes a drift after them that keeps the 10-step
#                             means, fails a moved mean or a strict step outside)
#   jobs_sbatch_gpu           jobs/train.sbatch's GPU handling with a stand-in srun: device=cuda
#                             when SLURM allocated GPUs (not over the user's choice), the GPUs
#                             and NCCL/UCX settings in the start line, the CPU path unchanged;
#                             after exit 75, a requeue only for a job still running (a stand-in
#                             scontrol: an array's sibling lines, scancel, a SLURM requeue)
#   jobs_gpu_check_verdicts   jobs/gpu_check.sh's stage verdicts on a stand-in bundle: SKIP with
#                             the reason without a GPU, FAIL when a test or the ldd check fails,
#                             the sanitizers' chunks in priority order with their filters
#                             (INCOMPLETE naming the chunks not started when one is cut with no
#                             error, FAIL for an error in a later chunk), results kept when
#                             killed; about 70 s, most of it stages run out to their deadlines
#   jobs_local_args           jobs/local.sh with a stand-in switchyard: --help, -n/SY_NP checked,
#                             SY_BIN relative to the caller or on PATH, a start through a symlink,
#                             the quoted start line, the resume hint after a --resume of the user's
#   jobs_sbatch_args          jobs/train.sbatch with a stand-in srun: refused outside SLURM, --help,
#                             a --resume of the user's (auto on a requeue), SY_BIN relative to the
#                             job's starting folder, the quoted start line
#   jobs_tools_args           jobs/deps.sh, quickstart.sh, test.sh, check_format.sh in a stand-in
#                             checkout (stand-in cmake, ctest, dpkg-query): --help, unknown options,
#                             quickstart's --config, test.sh's totals with a disabled test,
#                             check_format without clang-format or with a broken .clang-format
#   jobs_gpu_args             jobs/gpu_check.sh, gpu_bundle.sh, gpu_rehearse.sh's arguments: a
#                             missing value, unknown stages, bad budgets (exit 2), --out never
#                             emptying a folder of someone's files, a start through a symlink
# The bundle itself (jobs/gpu_bundle.sh: the CUDA build and a 100-step CPU run) and its
# rehearsal (jobs/gpu_rehearse.sh: root, mount namespaces) are too heavy for CI: run by hand.
add_test(NAME jobs_gpu_compare_metrics
         COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/jobs/test_gpu_compare_metrics.py
                 ${CMAKE_SOURCE_DIR})
add_test(NAME jobs_sbatch_gpu
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/jobs/sbatch_gpu_test.sh ${CMAKE_SOURCE_DIR})
add_test(NAME jobs_gpu_check_verdicts
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/jobs/gpu_check_test.sh ${CMAKE_SOURCE_DIR})
add_test(NAME jobs_local_args
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/jobs/local_test.sh ${CMAKE_SOURCE_DIR})
add_test(NAME jobs_sbatch_args
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/jobs/sbatch_args_test.sh ${CMAKE_SOURCE_DIR})
add_test(NAME jobs_tools_args
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/jobs/tools_test.sh ${CMAKE_SOURCE_DIR})
add_test(NAME jobs_gpu_args
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/jobs/gpu_args_test.sh ${CMAKE_SOURCE_DIR})
# 300 s: the verdicts test waits out its stages' deadlines, 66 s alone and 81 s under load.
set_tests_properties(jobs_gpu_compare_metrics jobs_sbatch_gpu jobs_gpu_check_verdicts
                     PROPERTIES LABELS jobs TIMEOUT 300)
# The argument checks take about a second each.
set_tests_properties(jobs_local_args jobs_sbatch_args jobs_tools_args jobs_gpu_args
                     PROPERTIES LABELS jobs TIMEOUT 120)
