# CTest registrations of the partition-testing harness (jepsen/run, Python
# standard library only). Include this file where the remsd and
# rems-lincheck targets are known and testing is enabled, for example at the
# end of jepsen/CMakeLists.txt: include(${CMAKE_CURRENT_LIST_DIR}/ctest.cmake)
#
#   ctest -L jepsen                 both tests
#   ctest -R jepsen_harness_unit    the harness's own unit tests (seconds)
#
# jepsen_short runs a real 3-node cluster for about 60 s under partitions
# and kills (as root in network namespaces; otherwise on 127.0.0.1 with the
# partitions skipped) and fails when the checkers find the history invalid
# (exit 1) or the harness fails (exit 2). Its artifacts go to
# <build>/jepsen/store/<test>/<time>/ (timeline.html, results.json, logs).

add_test(NAME jepsen_harness_unit
  COMMAND python3 -m unittest discover -s ${PROJECT_SOURCE_DIR}/jepsen/tests)
set_tests_properties(jepsen_harness_unit PROPERTIES LABELS jepsen)

# Sanitizer builds are too slow for the harness's timeouts (1 s elections,
# 3 s client calls); a run there tests the timeouts, not rems.
# On by default: scripts/test.sh (and so CI) runs it in the normal build.
option(REMS_JEPSEN_SHORT "Register the 60 s jepsen_short run in CTest" ON)
if(REMS_JEPSEN_SHORT AND NOT REMS_SANITIZE)
  add_test(NAME jepsen_short
    COMMAND python3 ${PROJECT_SOURCE_DIR}/jepsen/run
      --nodes 3 --time 60 --nemesis partition,kill --workload register
      --concurrency 5 --seed 1
      --remsd $<TARGET_FILE:remsd>
      --lincheck $<TARGET_FILE:rems-lincheck>
      --store ${PROJECT_BINARY_DIR}/jepsen/store)
  # RUN_SERIAL: it needs the machine's two cores for its timing to mean
  # anything, and no other test should be scheduled beside it.
  set_tests_properties(jepsen_short PROPERTIES LABELS jepsen TIMEOUT 400
    RUN_SERIAL TRUE)
endif()
