# Used by fuzz/run.sh as -DCMAKE_PROJECT_cvmconv_INCLUDE=<this file> while the
# top-level CMakeLists.txt does not add_subdirectory(fuzz) itself: includes
# fuzz/CMakeLists.txt once the top-level directory is fully processed (the
# library's targets exist then; a deferred call may not add a subdirectory).
# EVAL bakes the path in: deferred arguments are expanded at call time.
cmake_language(EVAL CODE
  "cmake_language(DEFER DIRECTORY \"${CMAKE_SOURCE_DIR}\" CALL include \"${CMAKE_CURRENT_LIST_DIR}/CMakeLists.txt\")")
