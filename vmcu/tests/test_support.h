// Shared helpers for the vmcu tests: temp files, random inputs, the TFLite oracle.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "perfmem/testing/scratch_dir.h"
#include "perfmem/testing/subprocess.h"
#include "perfmem/vmcu/model.h"

namespace vmcu_test {

// A scratch folder per test process, removed when the process exits (perfmem/testing/scratch_dir.h).
inline std::filesystem::path temp_dir() {
  static const perfmem::testing::ScratchDir dir("vmcu-test");
  return dir.path();
}

inline void write_file(const std::filesystem::path& p, const std::vector<uint8_t>& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline std::vector<uint8_t> read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

inline std::string shared_model(const std::string& name) {
  return std::string(PERFMEM_SHARED_DIR) + "/models/mcu/" + name;
}

// The five real models of ../shared/models/mcu.
inline const std::vector<std::string>& shared_model_names() {
  static const std::vector<std::string> names = {"mcunet-vww1_int8.tflite", "mlperf-tiny-ad01_int8.tflite",
                                                 "mlperf-tiny-dscnn-kws_int8.tflite", "mlperf-tiny-resnet8_int8.tflite",
                                                 "mlperf-tiny-vww_96_int8.tflite"};
  return names;
}

// Random bytes for an int8 input, or uniform [-1, 1) floats for a float32 input.
inline std::vector<uint8_t> random_input(const perfmem::vmcu::Tensor& t, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> bytes(t.bytes());
  if (t.type == perfmem::vmcu::ElementType::kFloat32) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (size_t i = 0; i + 4 <= bytes.size(); i += 4) {
      float v = u(rng);
      std::memcpy(bytes.data() + i, &v, 4);
    }
  } else {
    std::uniform_int_distribution<int> u(0, 255);
    for (auto& b : bytes) b = static_cast<uint8_t>(u(rng));
  }
  return bytes;
}

inline std::string venv_python() { return std::string(PERFMEM_VENV) + "/bin/python"; }

// Empty when the oracle is usable, else the reason it is not.
inline std::string oracle_unavailable() {
  auto r = perfmem::testing::run_command(venv_python() + " -c 'import tflite_runtime.interpreter'");
  if (r.exit_code != 0)
    return "TFLite oracle unavailable (" + venv_python() +
           " cannot import tflite_runtime; run scripts/install-deps.sh): " + r.output.substr(0, 200);
  return {};
}

}  // namespace vmcu_test
