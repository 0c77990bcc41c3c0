# The planner (issue 18): the cost model's terms against hand-computed values and enumerations,
# and through the real binary the trainer's memory check, peak_mem_bytes and `switchyard plan`.
sy_gtest(test_plan DIRS plan DEPS sy_plan_io sy_train sy_model)
if(TARGET test_plan)
  target_compile_definitions(test_plan PRIVATE SWITCHYARD_BIN="$<TARGET_FILE:switchyard>"
                                               SWITCHYARD_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  add_dependencies(test_plan switchyard)
endif()
