// The core's one thread pool (WAVIS_THREADS threads, default all cores; 1 disables it).
// Used by the ring/CKKS kernels (over limbs) and TFHE (over gates); re-created after fork.
#pragma once
#include <cstddef>
#include <algorithm>
#include <functional>

namespace wavis {

// Threads of the pool: WAVIS_THREADS (the one place it is read) or hardware_concurrency, in [1, 256].
std::size_t thread_count();

// Calls f(i) for i in [0, n) on the pool (the caller works too) and returns when all are done.
// Runs inline when n <= 1 or the pool has one thread. An exception thrown by f is rethrown here
// (the first one; the other indices still run).
void parallel_for(std::size_t n, const std::function<void(std::size_t)>& f);

// Run f(r) for r < rows, in parallel when the work (rows * N words) is large enough.
template <class F>
inline void for_rows(std::size_t rows, std::size_t N, F&& f, std::size_t min_words = 1 << 14) {
  if (rows > 1 && rows * N >= min_words) {
    std::function<void(std::size_t)> fn = f;
    parallel_for(rows, fn);
  } else {
    for (std::size_t r = 0; r < rows; ++r) f(r);
  }
}

// fn(begin, end) on up to `threads` contiguous chunks of [0, count) (threads <= 0: the pool's
// size), run on the pool.
template <class F>
void parallel_chunks(std::size_t count, int threads, F&& fn) {
  if (count == 0) return;
  std::size_t T = threads > 0 ? (std::size_t)threads : thread_count();
  T = std::max<std::size_t>(1, std::min(T, count));
  if (T == 1) {
    fn(std::size_t(0), count);
    return;
  }
  const std::size_t chunk = (count + T - 1) / T;
  parallel_for(T, [&](std::size_t w) {
    const std::size_t b = w * chunk, e = std::min(count, b + chunk);
    if (b < e) fn(b, e);
  });
}

}  // namespace wavis
