// sida-train-predictor: the LibTorch trainer behind `sida train-predictor` (see
// predictor_commands.h for why it is a program of its own).
#include "perfmem/core/cli.h"
#include "predictor_commands.h"

int main(int argc, char** argv) {
  CLI::App app{
      "sida train-predictor: train the expert predictor on `sida collect-routes` output by truncated "
      "knowledge distillation (LibTorch)"};
  app.name("sida train-predictor");
  perfmem::sida::PredictorCommands commands;
  perfmem::sida::add_train_predictor_options(&app, commands);
  return perfmem::run_cli(app, argc, argv, [&]() -> int {
    try {
      return perfmem::sida::run_train_predictor(app, commands);
    } catch (const std::bad_alloc&) {
      return perfmem::report_failure(app, perfmem::Status(perfmem::StatusCode::kOutOfMemory, "out of memory"));
    } catch (const std::exception& e) {
      return perfmem::report_failure(app, perfmem::Status(perfmem::StatusCode::kInternal, e.what()));
    }
  });
}
