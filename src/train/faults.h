// Test hook of the fault suite (tests/faults): makes one rank misbehave at a chosen point of the
// checkpoint machinery, so that each fault of issue 15 can be reproduced on one machine at a
// known place. Read from the environment once per run (the stop check) and once per checkpoint
// (its stages), never inside a step; without the variable nothing happens.
//
//   SWITCHYARD_CKPT_FAULT="<world rank>:<point>:<action>[:<step>]"
//     point   start           start-up, before the checkpoint to resume from is looked for
//             stop_check      just before the per-step stop-requested all-reduce
//             <stage>         a stage of the checkpoint write, as ckpt::SaveOptions::on_stage
//                             names it: created, "wrote <dataset path>", closed, renamed, latest
//             end             after the last step and the final checkpoint
//     action  stop            raise(SIGSTOP): the rank stops answering (its peers' watchdogs must
//                             end the job)
//             fail            throw "No space left on device (injected ...)": this rank's part of
//                             the write fails (the ranks must agree and stop together)
//             fill            fill the file system of checkpoint.dir with a file `ballast` until it
//                             is full, so the rest of the write fails for real; refused on a file
//                             system larger than 64 MiB (it is meant for a test's small tmpfs)
//     step    only at this step (the step a checkpoint is written for, or the step just done);
//             absent: every time the point is reached (start and end have no step)
//
// The older SWITCHYARD_FAULT="<rank>:<step>:throw|exit|hang" (loop_common.h) acts at a step.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace sy {

struct CheckpointFault {
  int rank = -1;
  std::string point;
  std::string action;
  int64_t step = -1;  // -1: any

  // nullopt when SWITCHYARD_CKPT_FAULT is unset; std::invalid_argument when it is malformed.
  static std::optional<CheckpointFault> from_env();
  // Acts when this is `world_rank`, `point` matches and so does `step` (when both are known).
  // `dir`: checkpoint.dir (for fill).
  void at(int world_rank, const std::string& point, const std::string& dir,
          int64_t at_step = -1) const;
};

}  // namespace sy
