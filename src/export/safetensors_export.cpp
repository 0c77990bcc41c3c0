#include "src/export/safetensors_export.h"

#include <filesystem>

#include "src/ckpt/safetensors.h"
#include "src/core/durable_file.h"
#include "src/core/error.h"
#include "src/core/paths.h"

namespace sy {

void check_safetensors_output(const std::string& output, const std::string& checkpoint) {
  if (output.empty()) throw UsageError("--output is empty: give the .safetensors file to write");
  if (output.back() == '/')
    throw UsageError("--output '" + output +
                     "' ends in '/': --format safetensors writes one file (give its name)");
  std::error_code ec;
  if (std::filesystem::is_directory(output, ec))
    throw UsageError(
        "--output '" + output +
        "' is a directory: --format safetensors writes one file (give its name, e.g. '" +
        (std::filesystem::path(output) / "model.safetensors").string() +
        "'); --format hf writes a directory");
  if (const std::string problem = files::special_file_problem(output); !problem.empty())
    throw UsageError("--output " + problem);
  if (const std::string problem = files::unwritable_output(output); !problem.empty())
    throw UsageError("--output '" + output + "': " + problem);
  refuse_output_as_input(output, checkpoint, "ckpt export", "the safetensors file");
}

SafetensorsExportReport export_safetensors(MPI_Comm comm, const std::string& checkpoint,
                                           const std::string& output,
                                           const ckpt::ReadProgress& progress) {
  ckpt::TrainState st;
  SafetensorsExportReport r;
  const auto tensors = ckpt::read_model_tensors(comm, checkpoint, &st, &r.notes, progress);
  r.step = st.step;
  int rank = 0;
  MPI_CHECK(MPI_Comm_rank(comm, &rank));
  if (rank != 0) return r;  // rank 0 alone writes
  ckpt::write_safetensors(output, tensors,
                          {{"format", "switchyard"},
                           {"source", checkpoint},
                           {"step", std::to_string(st.step)},
                           {"layout", st.layout},
                           {"config", st.config_yaml}});
  r.tensors = static_cast<int64_t>(tensors.size());
  for (const auto& t : tensors) r.elements += static_cast<int64_t>(t.data.size());
  return r;
}

}  // namespace sy
