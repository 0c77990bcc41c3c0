// The skip of the NCCL tests (under mpirun) when there is no GPU per rank: NCCL needs one device
// per rank; every rank takes the same decision (tests/gpu/gpu_mpi_util.h).
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "common/mpi_util.h"
#include "gpu/gpu_mpi_util.h"
