// `vmcu deploy` on QEMU's Cortex-M4 (mps2-an386) and Cortex-M7 (mps2-an500): the shared models
// run on both boards and equal the host bit for bit; a RAM budget that only the vmcu plan fits
// links under vmcu and fails under greedy with the shortfall printed; instruction counts repeat
// exactly. Skipped (failed under
// CI=true) when the cross toolchain or QEMU is missing.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <utility>
#include <string>

#include "perfmem/core/json.h"
#include "perfmem/testing/required.h"
#include "perfmem/vmcu/builder.h"
#include "perfmem/vmcu/deploy.h"
#include "test_support.h"

namespace vm = perfmem::vmcu;
namespace fs = std::filesystem;
using perfmem::testing::run_command;
using vmcu_test::temp_dir;
using vmcu_test::write_file;

namespace {

std::string cli() { return std::string(CLI_PATH); }

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// Empty when arm-none-eabi-gcc, newlib and qemu-system-arm are there, else what is missing.
std::string toolchain_missing() {
  for (const char* tool : {"arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm", "timeout"})
    if (run_command(std::string("command -v ") + tool).exit_code != 0)
      return std::string(tool) + " not found (scripts/deps/vmcu.apt installs the Cortex-M toolchain and QEMU)";
  return {};
}

#define REQUIRE_TOOLCHAIN()                                                              \
  do {                                                                                   \
    if (auto why = toolchain_missing(); !why.empty()) PERFMEM_SKIP_UNLESS_REQUIRED(why); \
  } while (0)

// A random input file for `graph`.
std::string input_file(const vm::Graph& g, const std::string& name, uint32_t seed) {
  const fs::path p = temp_dir() / (name + ".in");
  write_file(p, vmcu_test::random_input(g.tensors[g.inputs[0]], seed));
  return p.string();
}

TEST(Deploy, SharedModelsRunOnBothBoardsBitExact) {
  REQUIRE_TOOLCHAIN();
  int checked = 0;
  for (const std::string& m : vmcu_test::shared_model_names()) {
    const std::string path = vmcu_test::shared_model(m);
    if (!fs::exists(path)) continue;
    auto g = vm::load_tflite(path);
    ASSERT_TRUE(g.ok());
    for (vm::Board board : {vm::Board::kMps2An386, vm::Board::kMps2An500}) {
      vm::DeployOptions o;
      o.board = board;
      o.ram_bytes = 512 * 1024;
      o.input = input_file(*g, m, 3);
      o.output = (temp_dir() / (std::string(m) + ".out")).string();
      auto r = vm::deploy_model(path, o);
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      EXPECT_TRUE(r->fits) << m;
      EXPECT_TRUE(r->ran) << m << " " << r->console;
      EXPECT_EQ(r->exit_code, 0) << m << " " << r->console;
      EXPECT_TRUE(r->bit_exact) << m << " on " << vm::board_name(board);
      // Everything the budget holds is accounted for: the arena and the stack are inside it.
      EXPECT_GE(r->static_ram_bytes, r->arena_bytes + r->stack_reserved_bytes) << m;
      EXPECT_GT(r->stack_high_water_bytes, 0u) << m;
      EXPECT_LT(r->stack_high_water_bytes, r->stack_reserved_bytes) << m;
      EXPECT_GT(r->flash_bytes, 0u) << m;
    }
    ++checked;
  }
  if (checked == 0) PERFMEM_SKIP_UNLESS_REQUIRED("shared models not present under " << PERFMEM_SHARED_DIR);
}

TEST(Deploy, ABudgetOnlyTheVmcuPlanFitsFailsUnderGreedyWithTheShortfall) {
  REQUIRE_TOOLCHAIN();
  const std::string spec = (temp_dir() / "fit.json").string();
  const std::string model = (temp_dir() / "fit.tflite").string();
  std::ofstream(spec) << R"({"seed":5,"input":[1,32,32,8],"layers":[{"type":"pointwise","out_channels":32},
      {"type":"depthwise","kernel":3},{"type":"pointwise","out_channels":8},{"type":"avgpool","kernel":2},
      {"type":"global_avgpool"},{"type":"fully_connected","units":4}]})";
  ASSERT_EQ(run_command(cli() + " build-model " + spec + " -o " + model).exit_code, 0);
  auto g = vm::load_tflite(model);
  ASSERT_TRUE(g.ok());
  vm::DeployOptions o;
  o.ram_bytes = 512 * 1024;
  o.icount_plugin = ICOUNT_PLUGIN;
  o.input = input_file(*g, "fit", 9);
  o.output = (temp_dir() / "fit.out").string();
  // The RAM the vmcu build needs, measured at a generous budget, becomes the budget.
  auto roomy = vm::deploy_model(model, o);
  ASSERT_TRUE(roomy.ok()) << roomy.status().to_string();
  ASSERT_TRUE(roomy->fits && roomy->bit_exact);
  const size_t budget = roomy->static_ram_bytes;

  const std::string common = " --board mps2-an386 --ram " + std::to_string(budget) + " --input " + o.input +
                             " --output " + o.output + " --json";
  auto fits = run_command(cli() + " deploy " + model + " --planner vmcu" + common + " 2>&1");
  ASSERT_EQ(fits.exit_code, 0) << fits.output;
  auto fj = perfmem::parse_json(fits.output, "deploy");
  ASSERT_TRUE(fj.ok()) << fits.output;
  EXPECT_TRUE((*fj)["fits"].get<bool>());
  EXPECT_TRUE((*fj)["bit_exact"].get<bool>());
  EXPECT_EQ((*fj)["static_ram_bytes"].get<size_t>(), budget);
  // The instruction count of one inference is deterministic: the CLI's run (a new build, a new
  // QEMU) counts exactly what the first run counted.
  ASSERT_TRUE(roomy->counted);
  EXPECT_GT(roomy->instructions, 100000u);
  ASSERT_TRUE(fj->contains("instructions")) << fits.output;
  EXPECT_EQ((*fj)["instructions"].get<uint64_t>(), roomy->instructions);

  auto fails = run_command(cli() + " deploy " + model + " --planner greedy" + common + " 2>&1");
  EXPECT_NE(fails.exit_code, 0) << fails.output;
  auto j = perfmem::parse_json(fails.output, "deploy");
  ASSERT_TRUE(j.ok()) << fails.output;
  EXPECT_FALSE((*j)["fits"].get<bool>());
  const size_t shortfall = (*j)["ram_shortfall"].get<size_t>();
  size_t vmcu_arena = 0, greedy_arena = 0;
  for (const auto& p : (*j)["planners"]) {
    const std::string name = p["planner"].get<std::string>();
    if (name == "vmcu") {
      EXPECT_TRUE(p["fits"].get<bool>());
      vmcu_arena = p["arena_bytes"].get<size_t>();
    }
    if (name == "greedy") {
      EXPECT_FALSE(p["fits"].get<bool>());
      EXPECT_EQ(p["ram_shortfall"].get<size_t>(), shortfall);
      greedy_arena = p["arena_bytes"].get<size_t>();
    }
  }
  ASSERT_GT(greedy_arena, vmcu_arena);
  // The linker's count is the difference of what the two libraries allocate, the arena and the
  // optimized kernels' one-pixel stage, up to the alignment of the sections.
  auto allocated = [&](vm::CompilePlanner planner, size_t arena) {
    vm::CompileOptions c;
    c.planner = planner;
    c.target = vm::CompileTarget::kCortexM4;
    auto lib = vm::compile_model(*g, c);
    EXPECT_TRUE(lib.ok()) << lib.status().to_string();
    EXPECT_EQ(lib->plan_bytes, arena);
    return arena + lib->stage_bytes;
  };
  const size_t difference =
      allocated(vm::CompilePlanner::kGreedy, greedy_arena) - allocated(vm::CompilePlanner::kVmcu, vmcu_arena);
  EXPECT_GE(shortfall + 8, difference);
  EXPECT_LE(shortfall, difference + 8);

  // The text report names the shortfall and the planner that fits.
  auto text = run_command(cli() + " deploy " + model + " --planner greedy --board mps2-an386 --ram " +
                          std::to_string(budget) + " --input " + o.input + " --output " + o.output + " 2>&1");
  EXPECT_NE(text.exit_code, 0);
  EXPECT_NE(text.output.find("RAM short by " + std::to_string(shortfall) + " bytes"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("fits with --planner vmcu"), std::string::npos) << text.output;
}

// Every ring kernel against its reference twin on each board, over a sweep of shapes, and the
// same checksum of all outputs on the boards as on the host (one source: tests/board/kernel_sweep.c).
TEST(Deploy, KernelSweepOnBothBoardsEqualsTheHost) {
  REQUIRE_TOOLCHAIN();
  const std::string src = PERFMEM_SOURCE_DIR;
  const std::string mcu = src + "/vmcu/mcu", sweep = src + "/vmcu/tests/board";
  const std::string sources = sweep + "/kernel_sweep.c " + mcu + "/src/*.c";
  const std::string includes = " -I" + mcu + "/board -I" + mcu + "/include ";
  const fs::path dir = temp_dir() / "sweep";
  fs::create_directories(dir);
  auto host = run_command("cc -std=c99 -pedantic -Wall -Wextra -Werror -O2" + includes + sources + " " + sweep +
                          "/host_board.c -o " + (dir / "host").string() + " && " + (dir / "host").string());
  ASSERT_EQ(host.exit_code, 0) << host.output;
  ASSERT_NE(host.output.find("vmcu-kernels: cases="), std::string::npos) << host.output;
  std::string script = read_text(mcu + "/board/link.ld.in");
  for (auto [key, value] : {std::pair<std::string, std::string>{"@FLASH_BYTES@", "4194304"},
                            {"@RAM_BYTES@", "524288"},
                            {"@STACK_BYTES@", "8192"}})
    for (size_t at = script.find(key); at != std::string::npos; at = script.find(key, at))
      script.replace(at, key.size(), value);
  std::ofstream(dir / "link.ld") << script;
  // Each board twice: the DSP kernels (both cores have the extension) and, with VMCU_NO_DSP,
  // the plain forms every other core runs.
  for (const auto& [board, flags] :
       {std::pair<std::string, std::string>{"mps2-an386", "-mcpu=cortex-m4 -mfpu=fpv4-sp-d16"},
        {"mps2-an386", "-mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -DVMCU_NO_DSP"},
        {"mps2-an500", "-mcpu=cortex-m7 -mfpu=fpv5-d16"},
        {"mps2-an500", "-mcpu=cortex-m7 -mfpu=fpv5-d16 -DVMCU_NO_DSP"}}) {
    const std::string elf =
        (dir / (board + (flags.find("NO_DSP") != std::string::npos ? "-plain" : "") + ".elf")).string();
    auto built = run_command("arm-none-eabi-gcc " + flags +
                             " -mthumb -mfloat-abi=hard -std=c99 -O2 -Wall -Wextra "
                             "-Werror -ffunction-sections -fdata-sections" +
                             includes + sources + " " + mcu +
                             "/board/startup.c -nostartfiles --specs=nano.specs -Wl,--gc-sections -T" +
                             (dir / "link.ld").string() + " -o " + elf);
    ASSERT_EQ(built.exit_code, 0) << built.output;
    auto ran = run_command("timeout -k 2 60 qemu-system-arm -M " + board +
                           " -display none -monitor none -serial none "
                           "-semihosting-config enable=on,target=native -kernel " +
                           elf + " < /dev/null");
    EXPECT_EQ(ran.exit_code, 0) << board << " " << flags << ": " << ran.output;
    EXPECT_EQ(ran.output, host.output) << board << " " << flags;
  }
}

TEST(Deploy, BadArgumentsAreNamed) {
  EXPECT_NE(vm::parse_byte_size("12Q", "--ram").status().to_string().find("--ram"), std::string::npos);
  EXPECT_FALSE(vm::parse_byte_size("5M", "--ram").ok());  // beyond the boards' 4 MB
  EXPECT_EQ(*vm::parse_byte_size("256K", "--ram"), 256u * 1024);
  EXPECT_EQ(*vm::parse_byte_size("2M", "--flash"), 2u * 1024 * 1024);
  EXPECT_FALSE(vm::parse_board("lm3s6965evb").ok());
  // An input of the wrong size is refused before anything is built, naming the file.
  const std::string spec = (temp_dir() / "bad.json").string(), model = (temp_dir() / "bad.tflite").string();
  std::ofstream(spec) << R"({"input":[1,4,4,2],"layers":[{"type":"pointwise","out_channels":2}]})";
  ASSERT_EQ(run_command(cli() + " build-model " + spec + " -o " + model).exit_code, 0);
  const std::string in = (temp_dir() / "short.in").string();
  write_file(in, std::vector<uint8_t>(5));
  auto r = run_command(cli() + " deploy " + model + " --board mps2-an386 --input " + in + " --output " +
                       (temp_dir() / "x.out").string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("short.in"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("32 bytes"), std::string::npos) << r.output;
  // vmcu compile names a bad target; a good one writes the library and says what it holds.
  auto bad = run_command(cli() + " compile " + model + " --target cortex-m0 -o " + (temp_dir() / "lib").string());
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("--target"), std::string::npos) << bad.output;
  auto good = run_command(cli() + " compile " + model + " --target cortex-m7 -o " + (temp_dir() / "lib").string());
  EXPECT_EQ(good.exit_code, 0) << good.output;
  EXPECT_NE(good.output.find("target cortex-m7"), std::string::npos) << good.output;
  EXPECT_TRUE(fs::exists(temp_dir() / "lib" / "model.h"));
}

}  // namespace
