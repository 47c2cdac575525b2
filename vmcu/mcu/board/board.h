/* board.h: bare-metal support for QEMU's MPS2 boards (mps2-an386 = Cortex-M4, mps2-an500 =
 * Cortex-M7) as `vmcu deploy` builds them: vector table and reset (startup.c), ARM semihosting
 * for files, console and the exit code, and a painted stack for its high-water mark.
 *
 *   uint8_t buf[64];
 *   if (vmcu_board_read_file("in.bin", buf, sizeof buf) != 0) vmcu_board_exit(2);
 *   vmcu_board_print("hello\n");
 *   vmcu_board_exit(0);                 // qemu-system-arm exits with this code
 *
 * Memory (link.ld): code and constants in FLASH at 0x0; in RAM at 0x20000000 the reserved stack
 * first (an overflow faults at the start of RAM), then .data and .bss. Both regions are the
 * user's budget, not the board's 4 MB, so a build that needs more fails at link time
 * ("region `RAM' overflowed by N bytes").
 */
#ifndef VMCU_BOARD_H
#define VMCU_BOARD_H

#include <stdint.h>

/* Whole-file semihosting I/O on the host's files; 0 on success, -1 otherwise (a short file
 * is an error: exactly `size` bytes are expected). */
int vmcu_board_read_file(const char* path, void* data, uint32_t size);
int vmcu_board_write_file(const char* path, const void* data, uint32_t size);

/* Writes a NUL-terminated string to the host's console. */
void vmcu_board_print(const char* text);
/* Writes a decimal number. */
void vmcu_board_print_u32(uint32_t value);

/* Ends the program; qemu-system-arm exits with `code`. */
void vmcu_board_exit(int code) __attribute__((noreturn));

/* Markers around the code to measure: vmcu deploy's instruction-counting QEMU plugin counts the
 * instructions executed from the first to the second (never inlined, so each has an address). */
void vmcu_board_count_begin(void) __attribute__((noinline));
void vmcu_board_count_end(void) __attribute__((noinline));

/* Bytes of the reserved stack ever written since reset (painted at reset, scanned now). */
uint32_t vmcu_board_stack_high_water(void);
/* Bytes reserved for the stack by the linker script. */
uint32_t vmcu_board_stack_bytes(void);

#endif /* VMCU_BOARD_H */
