// Tests for the small shared helpers: JSON, files, progress bar, statistics, SVG, CLI.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "perfmem/core/cli.h"
#include "perfmem/core/io.h"
#include "perfmem/core/json.h"
#include "perfmem/core/process.h"
#include "perfmem/core/progress.h"
#include "perfmem/core/stats.h"
#include "perfmem/core/svg.h"

namespace perfmem {
namespace {

namespace fs = std::filesystem;

// A fresh scratch folder per test, removed afterwards.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag)
      : path_(fs::temp_directory_path() / ("perfmem_" + tag + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~ScratchDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  size_t entries() const {
    return static_cast<size_t>(std::distance(fs::directory_iterator(path_), fs::directory_iterator()));
  }

 private:
  fs::path path_;
};

TEST(Json, ParseErrorsGiveLineAndColumn) {
  auto bad = parse_json("{\n  \"a\": 1,\n  \"b\": ]\n}", "cfg.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("cfg.json: line 3, column 8"), std::string::npos) << bad.status().message();
  // The bytes the parser quotes from a corrupt file are shown as escapes, not written raw.
  auto binary = parse_json(std::string("{\"model\xf7\x1b[31m\": 1}"), "model.safetensors");
  ASSERT_FALSE(binary.ok());
  const std::string message = binary.status().message();
  for (const char ch : message)
    ASSERT_TRUE(static_cast<unsigned char>(ch) >= 0x20 && static_cast<unsigned char>(ch) < 0x7f) << message;
  EXPECT_NE(message.find("\\xf7"), std::string::npos) << message;
  auto good = parse_json(R"({"d_model": 768, "name": "x"})", "cfg.json");
  ASSERT_TRUE(good.ok());
  int d = 0;
  EXPECT_TRUE(json_get(*good, "cfg.json", "d_model", &d).ok());
  EXPECT_EQ(d, 768);
  std::string missing_ok = "unchanged";
  EXPECT_TRUE(json_get(*good, "cfg.json", "absent", &missing_ok, /*optional=*/true).ok());
  EXPECT_EQ(missing_ok, "unchanged");
  Status missing = json_get(*good, "cfg.json", "absent", &d);
  EXPECT_NE(missing.message().find("cfg.json: key \"absent\""), std::string::npos);
  Status wrong = json_get(*good, "cfg.json", "name", &d);
  EXPECT_NE(wrong.message().find("found a string"), std::string::npos) << wrong.message();
}

TEST(Io, WriteIsAtomicAndReadBack) {
  ScratchDir dir("io");
  std::string p = dir / "out.txt";
  ASSERT_TRUE(write_text_file(p, "hello\n").ok());
  EXPECT_EQ(dir.entries(), 1u);  // the temporary file was renamed, not left beside it
  auto text = read_text_file(p);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "hello\n");
  fs::remove(p);
  auto gone = read_text_file(p);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.status().code(), StatusCode::kIoError);
  EXPECT_NE(gone.status().message().find(p), std::string::npos);
  Status no_dir = write_text_file("/nonexistent-dir/x.txt", "x");
  EXPECT_FALSE(no_dir.ok());
}

TEST(Io, UncommittedWriterLeavesExistingFileUntouched) {
  ScratchDir dir("aw");
  std::string p = dir / "out.txt";
  ASSERT_TRUE(write_text_file(p, "original").ok());
  {
    auto writer = AtomicFileWriter::create(p);
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE(writer->write("partial", 7).ok());
    EXPECT_EQ(dir.entries(), 2u);  // the file and the temporary one beside it
  }                                // destroyed without commit(), as after a failed write
  EXPECT_EQ(dir.entries(), 1u);
  EXPECT_EQ(*read_text_file(p), "original");
}

TEST(Io, SymlinkStaysALinkAndItsTargetIsReplaced) {
  ScratchDir dir("link");
  ASSERT_TRUE(write_text_file(dir / "real.txt", "old").ok());
  fs::create_symlink("real.txt", dir / "link.txt");  // relative target, as users make them
  ASSERT_TRUE(write_text_file(dir / "link.txt", "new").ok());
  EXPECT_TRUE(fs::is_symlink(dir / "link.txt"));
  EXPECT_EQ(fs::read_symlink(dir / "link.txt"), "real.txt");
  EXPECT_EQ(*read_text_file(dir / "real.txt"), "new");
  EXPECT_EQ(dir.entries(), 2u);  // no temporary file left behind

  fs::create_symlink("missing.txt", dir / "dangling.txt");  // a link to a file not yet made
  ASSERT_TRUE(write_text_file(dir / "dangling.txt", "made").ok());
  EXPECT_TRUE(fs::is_symlink(dir / "dangling.txt"));
  EXPECT_EQ(*read_text_file(dir / "missing.txt"), "made");
}

TEST(Io, FifoAndCharacterDeviceAreWrittenThrough) {
  ScratchDir dir("fifo");
  std::string fifo = dir / "pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::string received;
  std::thread reader([&] { received = *read_text_file(fifo); });
  ASSERT_TRUE(write_text_file(fifo, "through the pipe").ok());
  reader.join();
  EXPECT_EQ(received, "through the pipe");
  EXPECT_TRUE(fs::is_fifo(fifo));
  EXPECT_EQ(dir.entries(), 1u);

  ASSERT_TRUE(write_text_file("/dev/null", "discarded").ok());
  EXPECT_TRUE(fs::is_character_file("/dev/null"));
}

TEST(Io, DirectoryIsRefusedAndNeighboursAreUntouched) {
  ScratchDir dir("refuse");
  fs::create_directories(dir / "sub");
  Status refused = write_text_file(dir / "sub", "x");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("is a directory"), std::string::npos) << refused.message();
  EXPECT_TRUE(fs::is_directory(dir / "sub"));

  // A user's file that happens to be called like a temporary file is never touched.
  ASSERT_TRUE(write_text_file(dir / "out.bin.tmp", "user data").ok());
  ASSERT_TRUE(write_text_file(dir / "out.bin", "output").ok());
  EXPECT_EQ(*read_text_file(dir / "out.bin.tmp"), "user data");
  EXPECT_EQ(*read_text_file(dir / "out.bin"), "output");
}

TEST(Io, ReplacedFileKeepsItsPermissions) {
  ScratchDir dir("mode");
  std::string p = dir / "script.sh";
  ASSERT_TRUE(write_text_file(p, "echo 1\n").ok());
  fs::permissions(p, fs::perms::owner_all | fs::perms::group_read, fs::perm_options::replace);
  ASSERT_TRUE(write_text_file(p, "echo 2\n").ok());
  EXPECT_EQ(fs::status(p).permissions(), fs::perms::owner_all | fs::perms::group_read);
  EXPECT_EQ(*read_text_file(p), "echo 2\n");
}

TEST(Process, RunsWithoutAShellAndCapturesOutput) {
  auto merged = run_process({"sh", "-c", "echo out; echo err >&2; exit 3"}, StderrMode::kMerge);
  ASSERT_TRUE(merged.ok()) << merged.status().to_string();
  EXPECT_EQ(merged->exit_code, 3);
  EXPECT_EQ(merged->output, "out\nerr\n");
  auto discarded = run_process({"sh", "-c", "echo out; echo err >&2"}, StderrMode::kDiscard);
  ASSERT_TRUE(discarded.ok());
  EXPECT_EQ(discarded->output, "out\n");
  // Arguments reach the program as they are: no shell splits or expands them.
  auto literal = run_process({"printf", "%s|", "a b", "$HOME", "*"}, StderrMode::kInherit);
  ASSERT_TRUE(literal.ok());
  EXPECT_EQ(literal->output, "a b|$HOME|*|");
  auto missing = run_process({"perfmem-no-such-program"}, StderrMode::kInherit);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("perfmem-no-such-program"), std::string::npos);
}

TEST(Process, InstalledDataIsFoundBesideTheProgramOrNamed) {
  auto dir = executable_dir();
  ASSERT_TRUE(dir.ok());
  EXPECT_TRUE(fs::exists(*dir + "/core_test")) << *dir;
  auto absent = installed_data_path("no-such/file.txt");
  ASSERT_FALSE(absent.ok());
  EXPECT_NE(absent.status().message().find("share/perfmem/no-such/file.txt"), std::string::npos);
}

TEST(ProgressBar, RenderShowsFractionAndCounts) {
  EXPECT_EQ(ProgressBar::render("load", 5, 10, 10), "load [#####     ] 50% 5/10");
  EXPECT_EQ(ProgressBar::render("x", 0, 0, 4), "x [####] 100% 0/0");
  EXPECT_EQ(ProgressBar::render("x", 20, 10, 4), "x [####] 100% 20/10");
}

TEST(ProgressBar, RenderAppendsTheNote) {
  EXPECT_EQ(ProgressBar::render("train", 1, 4, 4, "loss 0.5"), "train [#   ] 25% 1/4 loss 0.5");
  EXPECT_EQ(ProgressBar::render("train", 1, 4, 4, ""), "train [#   ] 25% 1/4");
}

TEST(ProgressBar, SilentWhenDisabledAndDrawsWhenEnabled) {
  std::FILE* silent = std::tmpfile();
  {
    ProgressBar bar("quiet", 3, silent, /*enabled=*/false);
    bar.advance(3);
  }
  EXPECT_EQ(std::ftell(silent), 0L);
  std::fclose(silent);

  std::FILE* out = std::tmpfile();
  {
    ProgressBar bar("work", 4, out, /*enabled=*/true);
    for (int i = 0; i < 4; ++i) bar.advance();
  }
  std::rewind(out);
  char buf[512] = {};
  size_t n = std::fread(buf, 1, sizeof buf - 1, out);
  std::fclose(out);
  std::string text(buf, n);
  EXPECT_NE(text.find("work ["), std::string::npos);
  EXPECT_NE(text.find("100% 4/4"), std::string::npos) << text;
  EXPECT_EQ(text.back(), '\n');
}

TEST(Stats, PercentilesAndSummary) {
  std::vector<double> v = {5, 1, 4, 2, 3};
  EXPECT_DOUBLE_EQ(percentile(v, 50), 3);
  EXPECT_DOUBLE_EQ(percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(percentile(v, 100), 5);
  EXPECT_DOUBLE_EQ(percentile(v, 25), 2);
  EXPECT_DOUBLE_EQ(percentile({1, 2}, 50), 1.5);
  EXPECT_DOUBLE_EQ(percentile({}, 50), 0);
  Summary s = summarize(v);
  EXPECT_EQ(s.count, 5u);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 5);
  EXPECT_DOUBLE_EQ(s.mean, 3);
  EXPECT_DOUBLE_EQ(s.median, 3);
  EXPECT_NEAR(s.p99, 4.96, 1e-12);
  EXPECT_EQ(to_json(s)["median"].get<double>(), 3);
  EXPECT_EQ(to_string(s, 1), "median 3.0 (min 1.0, p99 5.0, n=5)");
}

TEST(Stats, BytesParsingAndFormatting) {
  size_t b = 0;
  EXPECT_TRUE(parse_bytes("2GiB", &b));
  EXPECT_EQ(b, 2ull << 30);
  EXPECT_TRUE(parse_bytes("512 MiB", &b));
  EXPECT_EQ(b, 512ull << 20);
  EXPECT_TRUE(parse_bytes("100KB", &b));
  EXPECT_EQ(b, 100000u);
  EXPECT_TRUE(parse_bytes("4096", &b));
  EXPECT_EQ(b, 4096u);
  EXPECT_TRUE(parse_bytes("1.5KiB", &b));
  EXPECT_EQ(b, 1536u);
  EXPECT_FALSE(parse_bytes("", &b));
  EXPECT_FALSE(parse_bytes("12 parsecs", &b));
  EXPECT_FALSE(parse_bytes("GiB", &b));
  EXPECT_FALSE(parse_bytes("1.2.3", &b));
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(2.0 * (1ull << 30)), "2.00 GiB");
  EXPECT_GT(peak_rss_bytes(), 0u);
}

TEST(Svg, LineAndBarChartsContainTheirData) {
  LineChart line{"throughput vs budget", "budget (GiB)", "req/s", {}};
  line.series.push_back({"lru", {{2, 1.0}, {4, 2.0}}});
  line.series.push_back({"prefetch <oracle>", {{2, 3.0}, {4, 4.0}}});
  std::string svg = render_svg(line);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("throughput vs budget"), std::string::npos);
  EXPECT_NE(svg.find("prefetch &lt;oracle&gt;"), std::string::npos);  // escaped
  EXPECT_EQ(svg.find("<oracle>"), std::string::npos);
  size_t polylines = 0;
  for (size_t p = svg.find("<polyline"); p != std::string::npos; p = svg.find("<polyline", p + 1)) { ++polylines; }
  EXPECT_EQ(polylines, 2u);

  BarChart bars{"peak RAM", "KB", {"vww", "resnet8"}, {}};
  bars.series.push_back({"greedy", {{0, 90}, {1, 40}}});
  bars.series.push_back({"vmcu", {{0, 20}, {1, 22}}});
  std::string bsvg = render_svg(bars);
  EXPECT_NE(bsvg.find("resnet8"), std::string::npos);
  EXPECT_NE(bsvg.find("greedy / vww: 90"), std::string::npos);
  EXPECT_NE(bsvg.find("vmcu / resnet8: 22"), std::string::npos);
}

TEST(Svg, CanvasRectanglesCarryTooltips) {
  SvgCanvas canvas("ring", "op", "offset", 0, 10, 0, 1000);
  canvas.rect(1, 0, 2, 500, palette_color(0), "tensor 3: 500 B");
  canvas.legend_entry("live", palette_color(0));
  std::string svg = canvas.render();
  EXPECT_NE(svg.find("<title>tensor 3: 500 B</title>"), std::string::npos);
  EXPECT_NE(svg.find(">live</text>"), std::string::npos);
}

int run_app(std::vector<std::string> args, bool* ran) {
  CLI::App app{"demo: test program"};
  app.name("demo");
  int value = 0;
  auto* sub = app.add_subcommand("go", "do it");
  sub->add_option("--value", value, "a number")->required();
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  *ran = false;
  return run_cli(app, static_cast<int>(argv.size()), argv.data(), [&] {
    *ran = true;
    return value == 3 ? kExitOk : kExitFailure;
  });
}

TEST(Cli, ExitCodesFollowConventions) {
  bool ran = false;
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  EXPECT_EQ(run_app({"demo", "--help"}, &ran), kExitOk);
  EXPECT_FALSE(ran);
  EXPECT_EQ(run_app({"demo", "--bogus"}, &ran), kExitUsage);
  EXPECT_FALSE(ran);
  EXPECT_EQ(run_app({"demo", "go"}, &ran), kExitUsage);  // missing required option
  std::string err = testing::internal::GetCapturedStderr();
  std::string out = testing::internal::GetCapturedStdout();
  EXPECT_NE(err.find("--bogus"), std::string::npos) << err;
  EXPECT_NE(err.find("--value"), std::string::npos) << err;  // the subcommand's usage
  EXPECT_NE(out.find("demo: test program"), std::string::npos) << out;
  EXPECT_EQ(run_app({"demo", "go", "--value", "3"}, &ran), kExitOk);
  EXPECT_TRUE(ran);
  EXPECT_EQ(run_app({"demo", "go", "--value", "4"}, &ran), kExitFailure);
}

TEST(Cli, VersionAndSubcommandRules) {
  bool ran = false;
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  EXPECT_EQ(run_app({"demo", "--version"}, &ran), kExitOk);
  std::string version = testing::internal::GetCapturedStdout();
  EXPECT_FALSE(ran);
  EXPECT_NE(version.find("demo (perfmem) "), std::string::npos) << version;

  testing::internal::CaptureStdout();
  EXPECT_EQ(run_app({"demo"}, &ran), kExitUsage);  // no subcommand: usage, not success
  EXPECT_FALSE(ran);
  EXPECT_EQ(run_app({"demo", "deploy", "--help"}, &ran), kExitUsage);  // unknown, even with --help
  EXPECT_FALSE(ran);
  EXPECT_EQ(run_app({"demo", "go", "--help"}, &ran), kExitOk);  // a known one's help still works
  std::string out = testing::internal::GetCapturedStdout();
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("a subcommand is required"), std::string::npos) << err;
  EXPECT_NE(err.find("unknown subcommand 'deploy'"), std::string::npos) << err;
  EXPECT_NE(out.find("--value"), std::string::npos) << out;
}

}  // namespace
}  // namespace perfmem
