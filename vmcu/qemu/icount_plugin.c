/* icount_plugin.c: a QEMU TCG plugin that counts the guest instructions executed between two
 * marker functions, for `vmcu deploy` (QEMU has no cycle model; the executed-instruction count
 * is the deterministic cost figure: identical run to run).
 *
 *   qemu-system-arm ... -plugin libvmcu_icount.so,begin=0x1234,end=0x1240,out=icount.txt
 *
 * Counting starts when the instruction at `begin` executes and stops at the instruction at
 * `end`, where the count is appended to `out` as one decimal line (the file is emptied when the
 * plugin loads, so a program that passes the markers several times gets one line per interval,
 * in order). Whole translation blocks are
 * counted when they start (the board program takes no interrupts, so every block runs to its
 * end): the count covers the end marker's block and not the begin marker's, a fixed offset of
 * a few instructions.
 *
 * Debian's QEMU loads plugins but ships no qemu-plugin.h, so the few declarations this plugin
 * uses are written out below, as QEMU 7.2's plugin API (version 1) defines them. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t; /* read nothing from it */
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb* tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void* userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb* tb);
struct qemu_plugin_insn* qemu_plugin_tb_get_insn(const struct qemu_plugin_tb* tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn* insn);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb* tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void* userdata);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn* insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void* userdata);

#define EXPORT __attribute__((visibility("default")))
EXPORT int qemu_plugin_version = 1;

/* One vCPU (the MPS2 boards are single-core), so plain variables suffice. */
static uint64_t begin_addr, end_addr;
static int counting;
static uint64_t count;
static char out_path[4096];

static void on_block(unsigned int vcpu, void* insns) {
  (void)vcpu;
  if (counting) count += (uint64_t)(uintptr_t)insns;
}

static void on_begin(unsigned int vcpu, void* unused) {
  (void)vcpu;
  (void)unused;
  counting = 1;
  count = 0;
}

static void on_end(unsigned int vcpu, void* unused) {
  (void)vcpu;
  (void)unused;
  if (!counting) return;
  counting = 0;
  FILE* f = fopen(out_path, "a"); /* one line per counted interval, in order */
  if (!f) return;
  fprintf(f, "%llu\n", (unsigned long long)count);
  fclose(f);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb* tb) {
  (void)id;
  const size_t n = qemu_plugin_tb_n_insns(tb);
  qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, (void*)(uintptr_t)n);
  for (size_t i = 0; i < n; ++i) {
    struct qemu_plugin_insn* insn = qemu_plugin_tb_get_insn(tb, i);
    const uint64_t at = qemu_plugin_insn_vaddr(insn);
    if (at == begin_addr) qemu_plugin_register_vcpu_insn_exec_cb(insn, on_begin, QEMU_PLUGIN_CB_NO_REGS, 0);
    if (at == end_addr) qemu_plugin_register_vcpu_insn_exec_cb(insn, on_end, QEMU_PLUGIN_CB_NO_REGS, 0);
  }
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t* info, int argc, char** argv) {
  (void)info;
  int have = 0;
  for (int i = 0; i < argc; ++i) {
    if (strncmp(argv[i], "begin=", 6) == 0) {
      begin_addr = strtoull(argv[i] + 6, 0, 0) & ~1ull; /* Thumb symbols carry bit 0 */
      have |= 1;
    } else if (strncmp(argv[i], "end=", 4) == 0) {
      end_addr = strtoull(argv[i] + 4, 0, 0) & ~1ull;
      have |= 2;
    } else if (strncmp(argv[i], "out=", 4) == 0 && strlen(argv[i] + 4) < sizeof out_path) {
      strcpy(out_path, argv[i] + 4);
      have |= 4;
    } else {
      fprintf(stderr, "vmcu icount plugin: unknown argument '%s' (expected begin=, end=, out=)\n", argv[i]);
      return -1;
    }
  }
  if (have != 7) {
    fprintf(stderr, "vmcu icount plugin: begin=ADDR, end=ADDR and out=FILE are required\n");
    return -1;
  }
  FILE* f = fopen(out_path, "w"); /* a stale count must not pass for this run's */
  if (!f) {
    fprintf(stderr, "vmcu icount plugin: cannot write '%s'\n", out_path);
    return -1;
  }
  fclose(f);
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  return 0;
}
