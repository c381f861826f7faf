# Resolve UMI_CUDA=ON|OFF|AUTO into UMI_WITH_CUDA.
# AUTO turns CUDA on when a CUDA compiler is found. /usr/local/cuda is the
# toolkit's standard install location, so it is offered as a hint when nvcc is
# not on PATH; an explicit CMAKE_CUDA_COMPILER or CUDACXX always wins.
set(UMI_WITH_CUDA OFF)
if(NOT UMI_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(UMI_WITH_CUDA ON)
  elseif(UMI_CUDA STREQUAL "ON")
    message(FATAL_ERROR "UMI_CUDA=ON but no CUDA compiler was found (set CMAKE_CUDA_COMPILER)")
  endif()
endif()
if(UMI_WITH_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90)
  endif()
  # CMake 3.25 knows no C++20 flag for nvcc; device code needs no more than 17.
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  enable_language(CUDA)
endif()
message(STATUS "umi: CUDA backend ${UMI_WITH_CUDA} (UMI_CUDA=${UMI_CUDA})")
