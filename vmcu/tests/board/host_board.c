/* board.h on the host (stdio), so that board programs such as kernel_sweep.c also run here. */
#include <stdio.h>
#include <stdlib.h>

#include "board.h"

int main(void);

void vmcu_board_print(const char* text) { fputs(text, stdout); }
void vmcu_board_print_u32(uint32_t value) { printf("%lu", (unsigned long)value); }
void vmcu_board_exit(int code) {
  fflush(stdout);
  exit(code);
}
