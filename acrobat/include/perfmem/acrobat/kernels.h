// Batched CPU kernels with fused gather, and their plain reference twins.
//
//   // y[b] = W * x[b] for 64 instances whose inputs live anywhere in memory:
//   const float* xs[64] = {...};  float* ys[64] = {...};
//   perfmem::acrobat::kernels::Scratch scratch;
//   run_batched(sig, 64, args, ys, scratch);     // args[i][b]: operand i of instance b
//   run_reference(sig, 64, args, ys);            // same result, naive loops (tests compare)
//
// Every operand is read through a per-instance pointer array (`args[i][b]`), so operands
// never have to be copied into one block first (gather fusion). An operand the signature
// marks as a shared parameter is read from args[i][0] only: one copy for the whole batch,
// which turns n matrix-vector products by the same weight into ONE sgemm (OpenBLAS). The
// sgemm packs the rows it reads through the pointer array unless they are already adjacent.
// Outputs y[b] are normally one contiguous block (the runtime allocates them so); the kernels
// detect that and write in place, otherwise they go through scratch.
#pragma once

#include <cstdint>
#include <vector>

#include "perfmem/acrobat/ast.h"

namespace perfmem::acrobat::kernels {

// Reusable temporary memory (grows, never shrinks; no allocation once warm).
struct Scratch {
  std::vector<float> a, b;
  std::vector<const float*> ptrs;
};

// Runs operator `sig` (not a group) for n instances. args[i] is the pointer array of operand i.
void run_batched(const KernelSig& sig, int n, const float* const* const* args, float* const* out,
                 Scratch& scratch);

// The same with plain loops and std::exp/std::tanh: the reference the tests compare against.
void run_reference(const KernelSig& sig, int n, const float* const* const* args, float* const* out);

// Elementwise activations used by the batched kernels (exposed for tests).
void sigmoid_inplace(float* x, int64_t size);
void tanh_inplace(float* x, int64_t size);

// Limits BLAS to `threads` threads (1 = single-threaded, like the reference DyNet figures).
void set_blas_threads(int threads);

}  // namespace perfmem::acrobat::kernels
