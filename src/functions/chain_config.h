// The function chain file given to `edgeloop worker --function FILE` (docs/worker.md):
//
//   functions:
//     - exec: {name: enrich, command: [/usr/bin/python3, enrich.py], timeout_ms: 5000}
//     - compliance: {policy: policies/hub.yaml, audit_log: audit/hub.jsonl}
//     - upload: {destination: hub, url: http://127.0.0.1:8080/api/v1/ingest,
//                token_file: hub.token, compression: zstd, bandwidth_bytes_per_s: 1000000}
//
// Relative paths are resolved against the file's folder. Unknown keys are errors. An upload
// must come after a compliance stage (fail closed).
#ifndef EDGELOOP_FUNCTIONS_CHAIN_CONFIG_H_
#define EDGELOOP_FUNCTIONS_CHAIN_CONFIG_H_

#include <filesystem>
#include <memory>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "common/status.h"
#include "functions/function.h"

namespace edgeloop::functions {

// Builds the chain described by `yaml_text`. kInvalidArgument names the problem.
StatusOr<std::vector<std::unique_ptr<Function>>> ParseChain(std::string_view yaml_text,
                                                            const std::filesystem::path& base_dir,
                                                            Clock* clock,
                                                            metrics::Registry* metrics);
StatusOr<std::vector<std::unique_ptr<Function>>> LoadChain(const std::filesystem::path& path,
                                                           Clock* clock,
                                                           metrics::Registry* metrics);

}  // namespace edgeloop::functions

#endif  // EDGELOOP_FUNCTIONS_CHAIN_CONFIG_H_
