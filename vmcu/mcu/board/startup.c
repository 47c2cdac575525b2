/* Vector table, reset handler, semihosting and stack painting for the MPS2 boards (board.h). */
#include <stdint.h>
#include <string.h>

#include "board.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sstack, _estack;
int main(void);

enum { kStackPaint = 0x5AC3A55Au };

/* ARM semihosting: BKPT 0xAB with the operation in r0 and its argument block in r1. */
static int32_t semihost(int32_t op, const void* arg) {
  register int32_t r0 __asm__("r0") = op;
  register const void* r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

enum {
  kSysOpen = 0x01,
  kSysClose = 0x02,
  kSysWrite0 = 0x04,
  kSysWrite = 0x05,
  kSysRead = 0x06,
  kSysExitExtended = 0x20
};
enum { kModeReadBinary = 1, kModeWriteBinary = 5 };

static int32_t open_file(const char* path, int32_t mode) {
  const uint32_t args[3] = {(uint32_t)(uintptr_t)path, (uint32_t)mode, (uint32_t)strlen(path)};
  return semihost(kSysOpen, args);
}

static void close_file(int32_t handle) {
  const uint32_t args[1] = {(uint32_t)handle};
  (void)semihost(kSysClose, args);
}

int vmcu_board_read_file(const char* path, void* data, uint32_t size) {
  const int32_t h = open_file(path, kModeReadBinary);
  if (h < 0) return -1;
  const uint32_t args[3] = {(uint32_t)h, (uint32_t)(uintptr_t)data, size};
  const int32_t not_read = semihost(kSysRead, args); /* bytes NOT read */
  close_file(h);
  return not_read == 0 ? 0 : -1;
}

int vmcu_board_write_file(const char* path, const void* data, uint32_t size) {
  const int32_t h = open_file(path, kModeWriteBinary);
  if (h < 0) return -1;
  const uint32_t args[3] = {(uint32_t)h, (uint32_t)(uintptr_t)data, size};
  const int32_t not_written = semihost(kSysWrite, args);
  close_file(h);
  return not_written == 0 ? 0 : -1;
}

void vmcu_board_print(const char* text) { (void)semihost(kSysWrite0, text); }

void vmcu_board_print_u32(uint32_t value) {
  char digits[11];
  int i = 10;
  digits[i] = '\0';
  do {
    digits[--i] = (char)('0' + value % 10u);
    value /= 10u;
  } while (value != 0u);
  vmcu_board_print(digits + i);
}

void vmcu_board_exit(int code) {
  /* ADP_Stopped_ApplicationExit with an exit code (semihosting v2 SYS_EXIT_EXTENDED). */
  const uint32_t args[2] = {0x20026u, (uint32_t)code};
  for (;;) (void)semihost(kSysExitExtended, args);
}

/* The empty asm keeps the calls (and so the marker addresses) in the program. */
void vmcu_board_count_begin(void) { __asm__ volatile("" ::: "memory"); }
void vmcu_board_count_end(void) { __asm__ volatile("" ::: "memory"); }

uint32_t vmcu_board_stack_bytes(void) { return (uint32_t)((uintptr_t)&_estack - (uintptr_t)&_sstack); }

uint32_t vmcu_board_stack_high_water(void) {
  const uint32_t* p = &_sstack;
  while (p < &_estack && *p == kStackPaint) ++p;
  return (uint32_t)((uintptr_t)&_estack - (uintptr_t)p);
}

void Reset_Handler(void) __attribute__((noreturn));
void Reset_Handler(void) {
  /* Full access to CP10/CP11 (the FPU) before any floating-point instruction: both cores are
   * built with -mfloat-abi=hard. */
  volatile uint32_t* const cpacr = (volatile uint32_t*)0xE000ED88u;
  *cpacr |= 0xFu << 20;
  __asm__ volatile("dsb\n\tisb" ::: "memory");
  /* Paint the stack below this frame (a few words of margin), so its high-water mark can be read. */
  for (uint32_t* p = &_sstack; p < (uint32_t*)__builtin_frame_address(0) - 16; ++p) *p = kStackPaint;
  const uint32_t* src = &_sidata;
  for (uint32_t* p = &_sdata; p < &_edata; ++p) *p = *src++;
  for (uint32_t* p = &_sbss; p < &_ebss; ++p) *p = 0u;
  vmcu_board_exit(main());
}

/* Any fault (a stray access, a stack overflow into the guard) ends the run with code 70 rather
 * than leaving QEMU spinning. */
static void Fault_Handler(void) {
  vmcu_board_print("vmcu-board: fault\n");
  vmcu_board_exit(70);
}

typedef void (*vector)(void);
/* Initial stack pointer, then reset, NMI, HardFault, MemManage, BusFault, UsageFault. */
__attribute__((section(".isr_vector"), used)) const vector vmcu_vectors[16] = {(vector)(uintptr_t)&_estack,
                                                                               Reset_Handler,
                                                                               Fault_Handler,
                                                                               Fault_Handler,
                                                                               Fault_Handler,
                                                                               Fault_Handler,
                                                                               Fault_Handler,
                                                                               0,
                                                                               0,
                                                                               0,
                                                                               0,
                                                                               Fault_Handler,
                                                                               Fault_Handler,
                                                                               0,
                                                                               Fault_Handler,
                                                                               Fault_Handler};
