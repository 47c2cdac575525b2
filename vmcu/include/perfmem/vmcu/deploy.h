// perfmem/vmcu/deploy.h: a model compiled for a QEMU Cortex-M board, linked against the user's
// RAM / flash budget, run under qemu-system-arm and compared with the host bit for bit.
//
//   perfmem::vmcu::DeployOptions o;
//   o.board = perfmem::vmcu::Board::kMps2An386;          // Cortex-M4 (mps2-an500: Cortex-M7)
//   o.ram_bytes = 256 * 1024;
//   o.input = "in.bin"; o.output = "out.bin";
//   PERFMEM_ASSIGN_OR_RETURN(auto report, perfmem::vmcu::deploy_model("model.tflite", o));
//   if (!report.fits) ...  // report.planners: the shortfall of every planner, and which fit
//
// Steps: compile_model (codegen.h) for the board's core; arm-none-eabi-gcc -O2 with the board
// support (vmcu/mcu/board: vector table, reset, semihosting, painted stack) and a linker script
// whose RAM and FLASH regions are the budget; when the link overflows a region, every planner
// is linked with the same budget and the report says by how many bytes each misses and which
// fit; otherwise qemu-system-arm runs the program under `timeout` (semihosting reads the input
// file, writes the output file and sets the exit code) and the output is compared with the
// reference executor's. With DeployOptions::icount_plugin, QEMU also counts the instructions
// one inference executes (deterministic). The toolchain and QEMU come from PATH
// (scripts/deps/vmcu.apt).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "perfmem/core/status.h"
#include "perfmem/vmcu/codegen.h"

namespace perfmem::vmcu {

enum class Board { kMps2An386, kMps2An500 };
std::string_view board_name(Board board);  // "mps2-an386" / "mps2-an500"
Result<Board> parse_board(std::string_view name);
CompileTarget board_target(Board board);  // cortex-m4 / cortex-m7

// "256K", "2M", "4096" (K and M are 1024 and 1024^2); errors name `flag`.
Result<size_t> parse_byte_size(std::string_view text, std::string_view flag);

struct DeployOptions {
  Board board = Board::kMps2An386;
  CompilePlanner planner = CompilePlanner::kVmcu;
  KernelChoice kernels = KernelChoice::kOptimized;  // what tensor-level layers call (codegen.h)
  size_t ram_bytes = 256 * 1024;
  size_t flash_bytes = 4 * 1024 * 1024;  // the boards' code memory
  size_t stack_bytes = 4096;             // reserved below .data/.bss, inside ram_bytes
  std::string input, output;             // raw tensor bytes; output written by the board
  int timeout_s = 60;
  std::string work_dir;  // where the library and firmware are built; empty: a temporary folder, removed
  // The instruction-counting QEMU plugin (libvmcu_icount.so, built beside the vmcu program from
  // vmcu/qemu/icount_plugin.c); empty: no count.
  std::string icount_plugin;
};

// One planner's link against the budget.
struct PlannerFit {
  CompilePlanner planner = CompilePlanner::kVmcu;
  bool fits = false;
  size_t ram_shortfall = 0, flash_shortfall = 0;  // bytes missing (0 when it fits)
  size_t arena_bytes = 0;
};

struct DeployReport {
  Board board = Board::kMps2An386;
  CompilePlanner planner = CompilePlanner::kVmcu;
  bool fits = false;                 // linked within the budget
  std::vector<PlannerFit> planners;  // every planner, filled when the chosen one does not fit
  size_t ram_shortfall = 0, flash_shortfall = 0;
  size_t arena_bytes = 0, scratch_bytes = 0;
  size_t static_ram_bytes = 0;  // .stack + .data + .bss: everything the budget holds
  size_t stack_reserved_bytes = 0, stack_high_water_bytes = 0;
  size_t flash_bytes = 0;  // vector table, code, constants, .data's initial image
  size_t ram_budget = 0, flash_budget = 0;
  bool ran = false;
  int exit_code = -1;
  bool bit_exact = false;     // the board's output equals the reference executor's
  bool counted = false;       // instructions is valid (a plugin was given and reported)
  uint64_t instructions = 0;  // executed by vmcu_model_run (the plugin's count between the board's markers)
  std::string console;        // what the board printed
};

Result<DeployReport> deploy_model(const std::string& model_path, const DeployOptions& options);

}  // namespace perfmem::vmcu
