# The CUDA backend: -DSWITCHYARD_CUDA=ON|OFF|AUTO. Not built yet (the CUDA issue fills this in).
