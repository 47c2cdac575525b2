// Internal to the sida library: engine calls whose exceptions become errors.
#pragma once

#include <exception>
#include <new>

#include "perfmem/core/status.h"

namespace perfmem::sida::internal {

// Runs one engine call, turning an exception into an error (the caller names the request): an
// allocation that fails, for a request far too long for memory, must not unwind a serving loop
// past its threads.
template <typename Call>
auto guarded(Call&& call) -> decltype(call()) {
  try {
    return call();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "an allocation failed: it needs more memory than is available");
  } catch (const std::exception& e) { return Status(StatusCode::kInternal, e.what()); }
}

}  // namespace perfmem::sida::internal
