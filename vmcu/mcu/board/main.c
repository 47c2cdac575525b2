/* The program `vmcu deploy` runs on the board: one inference of the generated model library,
 * input and output through semihosting files, then a report line for the host to parse:
 *   vmcu-board: rc=0 stack=1234 stack_reserved=4096
 * deploy_config.h (written by vmcu deploy) names the files. */
#include "board.h"
#include "deploy_config.h"
#include "model.h"

/* The input is read straight into the arena (vmcu_model_input_buffer), as a camera would write
 * it, so the RAM used is the arena, the output and the stack. */
static uint8_t output[VMCU_MODEL_OUTPUT_BYTES];

int main(void) {
  if (vmcu_board_read_file(VMCU_DEPLOY_INPUT, vmcu_model_input_buffer(), VMCU_MODEL_INPUT_BYTES) != 0) {
    vmcu_board_print("vmcu-board: cannot read the input file\n");
    return 2;
  }
  vmcu_board_count_begin();
  const int rc = vmcu_model_run(0, output);
  vmcu_board_count_end();
  if (vmcu_board_write_file(VMCU_DEPLOY_OUTPUT, output, sizeof output) != 0) {
    vmcu_board_print("vmcu-board: cannot write the output file\n");
    return 3;
  }
  vmcu_board_print("vmcu-board: rc=");
  vmcu_board_print_u32((uint32_t)rc);
  vmcu_board_print(" stack=");
  vmcu_board_print_u32(vmcu_board_stack_high_water());
  vmcu_board_print(" stack_reserved=");
  vmcu_board_print_u32(vmcu_board_stack_bytes());
  vmcu_board_print("\n");
  return rc == 0 ? 0 : 4;
}
