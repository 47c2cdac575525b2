// perfmem/vmcu/builder.h: writes valid int8 TFLite models from a JSON spec (random weights,
// sensible quantization), for tests, the demo and the benchmarks on the paper's shapes.
//
//   auto spec = perfmem::read_text_file("net.json");
//   PERFMEM_ASSIGN_OR_RETURN(auto bytes, perfmem::vmcu::build_model_from_json(*spec, "net.json"));
//   PERFMEM_RETURN_IF_ERROR(perfmem::write_binary_file("net.tflite", bytes.data(), bytes.size()));
//
// Spec format (docs/vmcu.md has the full reference):
//   {"seed": 1, "input": [1, 80, 80, 16],
//    "layers": [{"type": "pointwise", "out_channels": 16},
//               {"type": "depthwise", "kernel": 3, "stride": 2, "padding": "same",
//                "depth_multiplier": 1, "activation": "relu6"},
//               {"type": "conv", "kernel": 3, "out_channels": 8, "stride": 1, "padding": "valid"},
//               {"type": "bottleneck", "mid_channels": 48, "out_channels": 16, "kernel": 3,
//                "stride": 1, "residual": true},
//               {"type": "avgpool", "kernel": 2, "stride": 2} | {"type": "global_avgpool"},
//               {"type": "maxpool", "kernel": 2, "stride": 2}, {"type": "mean", "keep_dims": true},
//               {"type": "fully_connected", "units": 10}, {"type": "softmax"}]}
//   or {"mobilenetv2": {"width": 0.35, "resolution": 144, "classes": 10}, "seed": 1}.
// The same spec and seed always give the same bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "perfmem/core/status.h"

namespace perfmem::vmcu {

// `source` names the spec in errors ("net.json: layers[2].kernel: expected ...").
Result<std::vector<uint8_t>> build_model_from_json(const std::string& json_text, const std::string& source);

}  // namespace perfmem::vmcu
