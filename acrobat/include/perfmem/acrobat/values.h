// The runtime's values (shared by the interpreter and compiled programs, aot.h): integers, booleans and tensor ids
// inline, tuples / constructors / list cells as arena objects.
#pragma once

#include <cstdint>

namespace perfmem::acrobat {

struct Obj;
struct Value {
  int64_t i = 0;     // Int, Bool, or tensor id
  Obj* o = nullptr;  // tuple, constructor or list cell (nullptr = Nil)
};
// A tuple (tag 0), constructor (tag = its index) or list cell (tag 1, fields head and tail).
// Allocated with room for n fields: sizeof(Obj) + sizeof(Value) * (n - 1) bytes.
struct Obj {
  int32_t tag;
  int32_t n;
  Value f[1];
};

}  // namespace perfmem::acrobat
