// vmcu deploy: compile, link against the budget, run under QEMU, compare with the host.
#include "perfmem/vmcu/deploy.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <charconv>
#include <sstream>

#include "perfmem/core/io.h"
#include "perfmem/core/process.h"
#include "perfmem/vmcu/executor.h"
#include "mcu_sources.h"

namespace perfmem::vmcu {

namespace fs = std::filesystem;

std::string_view board_name(Board board) { return board == Board::kMps2An386 ? "mps2-an386" : "mps2-an500"; }

Result<Board> parse_board(std::string_view name) {
  for (Board b : {Board::kMps2An386, Board::kMps2An500})
    if (board_name(b) == name) return b;
  return input_error("--board", "value", "mps2-an386 (Cortex-M4) or mps2-an500 (Cortex-M7)", std::string(name));
}

CompileTarget board_target(Board board) {
  return board == Board::kMps2An386 ? CompileTarget::kCortexM4 : CompileTarget::kCortexM7;
}

Result<size_t> parse_byte_size(std::string_view text, std::string_view flag) {
  const std::string expected = "a byte count such as 4096, 256K or 2M (at most 4M: the boards' memories)";
  size_t i = 0, value = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9' && value < (size_t{1} << 40))
    value = value * 10 + static_cast<size_t>(text[i++] - '0');
  if (i == 0) return input_error(flag, "value", expected, std::string(text));
  const std::string_view unit = text.substr(i);
  if (unit == "K" || unit == "k" || unit == "KB" || unit == "KiB")
    value *= 1024;
  else if (unit == "M" || unit == "MB" || unit == "MiB")
    value *= 1024 * 1024;
  else if (!unit.empty())
    return input_error(flag, "value", expected, std::string(text));
  if (value == 0 || value > 4 * 1024 * 1024) return input_error(flag, "value", expected, std::string(text));
  return value;
}

namespace {

// The decimal number starting at text[at] (at least one digit, no overflow) into `value`.
bool number_after(const std::string& text, size_t at, size_t& value) {
  if (at >= text.size()) return false;
  const char* first = text.data() + at;
  const auto [end, ec] = std::from_chars(first, text.data() + text.size(), value);
  return ec == std::errc() && end != first;
}

constexpr const char* kCpuM4[] = {"-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"};
constexpr const char* kCpuM7[] = {"-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"};

// A build folder: the one asked for, or a fresh temporary one removed afterwards.
class WorkDir {
 public:
  explicit WorkDir(const std::string& asked) {
    if (!asked.empty()) {
      path_ = asked;
      return;
    }
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() / ("vmcu-deploy-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    temporary_ = true;
  }
  ~WorkDir() {
    std::error_code ignored;
    if (temporary_) fs::remove_all(path_, ignored);
  }
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  bool temporary_ = false;
};

std::string c_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

Status write_text(const fs::path& path, std::string_view text) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  std::ofstream out(path, std::ios::binary);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  if (!out) return Status(StatusCode::kIoError, path.string() + ": cannot write");
  return Status::Ok();
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

// What linking one planner's firmware against the budget gave.
struct Linked {
  bool fits = false;
  size_t ram_shortfall = 0, flash_shortfall = 0;
  size_t arena_bytes = 0, scratch_bytes = 0;
  size_t static_ram = 0, flash = 0, stack_reserved = 0;
  fs::path elf;
};

// Sums of the sections `arm-none-eabi-size -A` lists, by where they live.
Status read_sizes(const fs::path& elf, Linked& l) {
  PERFMEM_ASSIGN_OR_RETURN(auto r, run_process({"arm-none-eabi-size", "-A", elf.string()}, StderrMode::kMerge));
  if (r.exit_code != 0) return Status(StatusCode::kInternal, elf.string() + ": arm-none-eabi-size failed: " + r.output);
  std::istringstream in(r.output);
  std::string name;
  size_t size = 0, addr = 0;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    if (!(fields >> name >> size >> addr)) continue;
    if (name == ".isr_vector" || name == ".text" || name == ".ARM.exidx") l.flash += size;
    if (name == ".data") l.flash += size;
    if (name == ".stack" || name == ".data" || name == ".bss") l.static_ram += size;
    if (name == ".stack") l.stack_reserved = size;
  }
  return Status::Ok();
}

// The addresses of the board's counting markers (board.h), from the symbol table.
Result<std::pair<uint64_t, uint64_t>> marker_addresses(const fs::path& elf) {
  PERFMEM_ASSIGN_OR_RETURN(auto r, run_process({"arm-none-eabi-nm", elf.string()}, StderrMode::kMerge));
  std::istringstream in(r.output);
  std::string line;
  uint64_t begin = 0, end = 0;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string addr, kind, name;
    if (!(f >> addr >> kind >> name)) continue;
    if (name == "vmcu_board_count_begin") begin = std::stoull(addr, nullptr, 16);
    if (name == "vmcu_board_count_end") end = std::stoull(addr, nullptr, 16);
  }
  if (r.exit_code != 0 || begin == 0 || end == 0)
    return Status(StatusCode::kInternal, elf.string() + ": the counting markers are missing from the symbol table");
  return std::make_pair(begin, end);
}

Result<Linked> link_firmware(const Graph& graph, CompilePlanner planner, const DeployOptions& o, const fs::path& dir) {
  CompileOptions co;
  co.planner = planner;
  co.target = board_target(o.board);
  co.kernels = o.kernels;
  PERFMEM_ASSIGN_OR_RETURN(auto lib, compile_model(graph, co));
  Linked l;
  l.arena_bytes = lib.plan_bytes;
  l.scratch_bytes = lib.scratch_bytes;
  const fs::path lib_dir = dir / "lib", board_dir = dir / "board";
  PERFMEM_RETURN_IF_ERROR(write_library(lib, lib_dir.string()));
  std::vector<std::string> argv = {"arm-none-eabi-gcc"};
  for (const char* f : o.board == Board::kMps2An386 ? kCpuM4 : kCpuM7) argv.push_back(f);
  // -Werror: the generated library and the board code are warning-free on the cross compiler.
  for (const char* f : {"-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections"})
    argv.push_back(f);
  argv.push_back("-I" + lib_dir.string());
  argv.push_back("-I" + (lib_dir / "vmcu_kernels" / "include").string());
  argv.push_back("-I" + board_dir.string());
  argv.push_back((lib_dir / "model.c").string());
  for (const GeneratedFile& f : lib.files)
    if (f.path.size() > 2 && f.path.compare(f.path.size() - 2, 2, ".c") == 0 && f.path != "model.c")
      argv.push_back((lib_dir / f.path).string());
  for (const McuSource& s : mcu_sources()) {
    const std::string path(s.path);
    if (path.rfind("board/", 0) != 0) continue;
    const std::string file = path.substr(6);
    if (file == "link.ld.in") {
      std::string script = replace_all(std::string(s.text), "@RAM_BYTES@", std::to_string(o.ram_bytes));
      script = replace_all(script, "@FLASH_BYTES@", std::to_string(o.flash_bytes));
      script = replace_all(script, "@STACK_BYTES@", std::to_string(o.stack_bytes));
      PERFMEM_RETURN_IF_ERROR(write_text(board_dir / "link.ld", script));
      continue;
    }
    PERFMEM_RETURN_IF_ERROR(write_text(board_dir / file, s.text));
    if (file.size() > 2 && file.compare(file.size() - 2, 2, ".c") == 0) argv.push_back((board_dir / file).string());
  }
  PERFMEM_RETURN_IF_ERROR(write_text(board_dir / "deploy_config.h",
                                     "/* Written by vmcu deploy: the files the board reads and writes. */\n"
                                     "#define VMCU_DEPLOY_INPUT " +
                                         c_string(fs::absolute(o.input).string()) + "\n#define VMCU_DEPLOY_OUTPUT " +
                                         c_string(fs::absolute(o.output).string()) + "\n"));
  l.elf = dir / "firmware.elf";
  for (const char* f : {"-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections"}) argv.push_back(f);
  argv.push_back("-T" + (board_dir / "link.ld").string());
  argv.push_back("-o");
  argv.push_back(l.elf.string());
  auto r = run_process(argv, StderrMode::kMerge);
  if (!r.ok())
    return Status(StatusCode::kNotFound,
                  "arm-none-eabi-gcc: cannot run it (install gcc-arm-none-eabi and "
                  "libnewlib-arm-none-eabi, listed in scripts/deps/vmcu.apt): " +
                      r.status().message());
  if (r->exit_code != 0) {
    // GNU ld: "region `RAM' overflowed by N bytes" (and FLASH), once per region that does not fit.
    bool any = false;
    for (const std::string region : {"RAM", "FLASH"}) {
      const std::string key = "region `" + region + "' overflowed by ";
      for (size_t at = r->output.find(key); at != std::string::npos; at = r->output.find(key, at + 1)) {
        size_t n = 0;
        if (!number_after(r->output, at + key.size(), n)) continue;
        (region == "RAM" ? l.ram_shortfall : l.flash_shortfall) = n;
        any = true;
      }
    }
    if (!any) return Status(StatusCode::kInternal, graph.source + ": building the firmware failed:\n" + r->output);
    return l;
  }
  l.fits = true;
  PERFMEM_RETURN_IF_ERROR(read_sizes(l.elf, l));
  return l;
}

}  // namespace

Result<DeployReport> deploy_model(const std::string& model_path, const DeployOptions& o) {
  PERFMEM_ASSIGN_OR_RETURN(auto graph, load_tflite(model_path));
  if (graph.inputs.size() != 1) return unsupported_error(model_path, "subgraph", "models with exactly one input");
  const Tensor& in_t = graph.tensors[graph.inputs[0]];
  PERFMEM_ASSIGN_OR_RETURN(auto input, read_binary_file(o.input));
  if (input.size() != in_t.bytes())
    return input_error(o.input, "size", std::to_string(in_t.bytes()) + " bytes (the input tensor '" + in_t.name + "')",
                       std::to_string(input.size()) + " bytes");
  if (o.stack_bytes < 512 || o.stack_bytes >= o.ram_bytes)
    return input_error("--stack", "value", "at least 512 bytes and less than --ram", std::to_string(o.stack_bytes));
  WorkDir work(o.work_dir);
  DeployReport rep;
  rep.board = o.board;
  rep.planner = o.planner;
  rep.ram_budget = o.ram_bytes;
  rep.flash_budget = o.flash_bytes;
  PERFMEM_ASSIGN_OR_RETURN(auto linked, link_firmware(graph, o.planner, o, work.path() / "firmware"));
  rep.fits = linked.fits;
  rep.arena_bytes = linked.arena_bytes;
  rep.scratch_bytes = linked.scratch_bytes;
  rep.ram_shortfall = linked.ram_shortfall;
  rep.flash_shortfall = linked.flash_shortfall;
  if (!linked.fits) {
    // Which planner would fit this budget, and by how much each misses.
    for (CompilePlanner p : {CompilePlanner::kVmcu, CompilePlanner::kGreedy, CompilePlanner::kTinyEngine}) {
      PlannerFit fit;
      fit.planner = p;
      PERFMEM_ASSIGN_OR_RETURN(
          auto other, p == o.planner ? Result<Linked>(linked)
                                     : link_firmware(graph, p, o, work.path() / std::string(compile_planner_name(p))));
      fit.fits = other.fits;
      fit.ram_shortfall = other.ram_shortfall;
      fit.flash_shortfall = other.flash_shortfall;
      fit.arena_bytes = other.arena_bytes;
      rep.planners.push_back(fit);
    }
    return rep;
  }
  rep.static_ram_bytes = linked.static_ram;
  rep.flash_bytes = linked.flash;
  rep.stack_reserved_bytes = linked.stack_reserved;

  std::error_code ignored;
  fs::remove(o.output, ignored);  // a stale file must not pass for the board's output
  std::vector<std::string> qemu = {"timeout",
                                   "-k",
                                   "2",
                                   std::to_string(o.timeout_s),
                                   "qemu-system-arm",
                                   "-M",
                                   std::string(board_name(o.board)),
                                   "-display",
                                   "none",
                                   "-monitor",
                                   "none",
                                   "-serial",
                                   "none",
                                   "-semihosting-config",
                                   "enable=on,target=native",
                                   "-kernel",
                                   linked.elf.string()};
  const fs::path icount_file = work.path() / "icount.txt";
  if (!o.icount_plugin.empty()) {
    PERFMEM_ASSIGN_OR_RETURN(auto markers, marker_addresses(linked.elf));
    qemu.push_back("-plugin");
    qemu.push_back(o.icount_plugin + ",begin=" + std::to_string(markers.first) +
                   ",end=" + std::to_string(markers.second) + ",out=" + icount_file.string());
  }
  auto run = run_process(qemu, StderrMode::kMerge);
  if (!run.ok())
    return Status(StatusCode::kNotFound,
                  "qemu-system-arm: cannot run it (install qemu-system-arm, listed in scripts/deps/vmcu.apt): " +
                      run.status().message());
  rep.console = run->output;
  rep.exit_code = run->exit_code;
  if (run->exit_code == 124 || run->exit_code == 137)
    return Status(StatusCode::kInternal, model_path + ": the " + std::string(board_name(o.board)) +
                                             " run did not finish within " + std::to_string(o.timeout_s) + " s");
  // The board's last line: "vmcu-board: rc=R stack=S stack_reserved=T".
  const size_t board_line = rep.console.rfind("vmcu-board: rc=");
  if (board_line != std::string::npos) {
    const size_t stack = rep.console.find(" stack=", board_line);
    size_t used = 0;
    if (stack != std::string::npos && number_after(rep.console, stack + 7, used)) {
      rep.ran = true;
      rep.stack_high_water_bytes = used;
    }
  }
  if (run->exit_code != 0 || !rep.ran) return rep;
  if (!o.icount_plugin.empty()) {
    std::ifstream counted(icount_file);
    rep.counted = static_cast<bool>(counted >> rep.instructions);
  }
  PERFMEM_ASSIGN_OR_RETURN(auto exec, Executor::create(graph));
  PERFMEM_ASSIGN_OR_RETURN(auto expected, exec.run(input));
  auto board_out = read_binary_file(o.output);
  rep.bit_exact = board_out.ok() && *board_out == expected;
  return rep;
}

}  // namespace perfmem::vmcu
