// Uses each installed perfmem library once, through its installed headers only.
#include <cstdio>
#include <string>

#include "perfmem/acrobat/ast.h"
#include "perfmem/sida/config.h"
#include "perfmem/vmcu/planner.h"

int main() {
  auto planner = perfmem::vmcu::parse_planner("greedy");
  auto config = perfmem::sida::preset_config("tiny");
  auto program = perfmem::acrobat::parse_program("one.acr", "def main(xs: List[Int]) -> Tensor[4] = zeros(4)\n");
  if (!planner.ok() || !config.ok() || !program.ok()) {
    std::fprintf(stderr, "consumer: a perfmem call failed\n");
    return 1;
  }
  std::printf("consumer: planner %s, sida preset with %lld experts, acrobat program with %zu functions\n",
              std::string(perfmem::vmcu::planner_name(*planner)).c_str(), static_cast<long long>(config->num_experts),
              program->fns.size());
  return 0;
}
