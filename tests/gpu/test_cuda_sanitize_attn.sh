#!/usr/bin/env bash
# compute-sanitizer memcheck and racecheck over the attention tests with the other backward
# forms (test_cuda_sanitize.sh's second set: make test-gpu PART=3).
SW_SAN_SET=variants exec bash "$(dirname "$0")/test_cuda_sanitize.sh"
