# The SLURM preemption test (issue 5 item 6): a one-node cluster on localhost started and stopped
# by tests/slurm/run_test.sh (root, Debian's slurm-wlm and munge; skipped otherwise).
#   slurm_requeue_mechanics  jobs/train.sbatch with a stand-in trainer: signal, requeue, resume;
#                            scancel (not requeued); a partition preemption (SLURM requeues)
#   slurm_preempt_resume     the real trainer on configs/tiny.yaml, 4 tasks: the preempted and
#                            requeued job ends with the uninterrupted job's losses, bit for bit
#                            (skipped while `switchyard train --help` lists no --resume)
add_test(NAME slurm_requeue_mechanics
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm/run_test.sh mechanics ${CMAKE_SOURCE_DIR})
add_test(NAME slurm_preempt_resume
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm/run_test.sh train ${CMAKE_SOURCE_DIR}
          $<TARGET_FILE:switchyard>)
# One cluster at a time (each has its own ports and directory, but they share two cores).
set_tests_properties(slurm_requeue_mechanics slurm_preempt_resume PROPERTIES
  LABELS slurm SKIP_RETURN_CODE 77 RESOURCE_LOCK slurm_cluster TIMEOUT 900
  ENVIRONMENT "OPENBLAS_CORETYPE=Haswell")
