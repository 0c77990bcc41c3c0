# Expert placement (issue 17): placement files, the route-group rule, METIS partitions, traffic
# estimates and the co-activation counts (one process). The trainer runs under a placement are in
# tests/train/test_placement_train.cpp, the command line in tests/cli/test_placement_cli.cpp.
sy_gtest(test_placement DIRS placement DEPS sy_placement sy_train)
