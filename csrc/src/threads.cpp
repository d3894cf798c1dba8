// The thread pool (include/wavis/threads.hpp).
#include "wavis/threads.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>
#include <unistd.h>

namespace wavis {

namespace {
struct Job {
  const std::function<void(std::size_t)>* f;
  std::size_t n;
  std::atomic<std::size_t> next{0}, done{0};
  std::mutex mu;
  std::condition_variable cv;
  std::exception_ptr err;  // the first exception thrown by f (guarded by mu)
  Job(const std::function<void(std::size_t)>* f_, std::size_t n_) : f(f_), n(n_) {}
  void work() {
    std::size_t i;
    while ((i = next.fetch_add(1)) < n) {
      try {
        (*f)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu);
        if (!err) err = std::current_exception();
      }
      if (done.fetch_add(1) + 1 == n) {
        std::lock_guard<std::mutex> lk(mu);
        cv.notify_all();
      }
    }
  }
  void wait() {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return done.load() == n; });
    if (err) std::rethrow_exception(err);
  }
};

class Pool {
 public:
  explicit Pool(std::size_t nthreads) : nthreads_(nthreads) {
    for (std::size_t t = 1; t < nthreads; ++t) workers_.emplace_back([this] { loop(); });
  }
  // Never joined: the pool lives for the process (avoids shutdown-order problems).
  std::size_t size() const { return nthreads_; }
  void run(std::size_t n, const std::function<void(std::size_t)>& f) {
    auto job = std::make_shared<Job>(&f, n);
    {
      std::lock_guard<std::mutex> lk(mu_);
      queue_.push_back(job);
    }
    cv_.notify_all();
    job->work();
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = std::find(queue_.begin(), queue_.end(), job);
      if (it != queue_.end()) queue_.erase(it);
    }
    job->wait();
  }

 private:
  void loop() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return !queue_.empty(); });
        job = queue_.front();
        if (job->next.load() >= job->n) {  // exhausted: drop it and look again
          queue_.pop_front();
          continue;
        }
      }
      job->work();
    }
  }
  std::size_t nthreads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
};

std::size_t env_threads() {
  std::size_t n = std::thread::hardware_concurrency();
  if (const char* s = std::getenv("WAVIS_THREADS")) {
    char* end = nullptr;
    long v = std::strtol(s, &end, 10);
    if (end != s && v >= 1) n = (std::size_t)v;
  }
  return std::max<std::size_t>(1, std::min<std::size_t>(n, 256));
}

Pool* pool() {
  // Re-create after fork (threads do not survive fork); the old pool is leaked on purpose.
  static std::mutex mu;
  static Pool* p = nullptr;
  static pid_t owner = 0;
  std::lock_guard<std::mutex> lk(mu);
  pid_t me = getpid();
  if (!p || owner != me) {
    p = new Pool(env_threads());
    owner = me;
  }
  return p;
}
}  // namespace

std::size_t thread_count() { return pool()->size(); }

void parallel_for(std::size_t n, const std::function<void(std::size_t)>& f) {
  if (n == 0) return;
  Pool* p = n > 1 ? pool() : nullptr;
  if (!p || p->size() <= 1) {
    for (std::size_t i = 0; i < n; ++i) f(i);
    return;
  }
  p->run(n, f);
}

}  // namespace wavis
